"""Supernet training checkpoints: their format, safe reading of their weights, and their one-line errors.

Checkpoints hold tensors and plain data only and are read with `torch.load(weights_only=True)`: users share
trained supernets, and a checkpoint from elsewhere must not be able to run code. One reader serves
evaluation, export and verification; `nas.trainer` reads the whole state (optimizer, sampler) for resuming.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nas.searchspace import SearchSpace
from nas.supernet import Supernet

CHECKPOINT_FORMAT = 3  # 2: read with weights_only; no RNG state (dropout is seeded per step and rank). 3: banks
# Formats whose "supernet" entry is the Supernet state dict (3 changed only the sampler state): evaluation and
# export need nothing else, and load_state_dict checks the shapes.
WEIGHTS_FORMATS = range(2, CHECKPOINT_FORMAT + 1)

# torch.load's weights_only errors wrap the reason in advice (load with weights_only=False) that must not be taken
_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, of another format, or of another run or space."""


def why(e: Exception) -> str:
    """One line: the exception's type and its first informative line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith(_ADVICE)]
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def load_state(path: Path, dev: torch.device | str = "cpu") -> object:
    """The file's contents, tensors and plain data only; CheckpointError (one line) otherwise."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=dev, weights_only=True)
    except Exception as e:  # noqa: BLE001 - the weights-only unpickler runs no code, so any failure (a torn zip,
        # struct.error on junk bytes, a refused global) means the same: not a checkpoint this can read
        raise CheckpointError(f"checkpoint {path} is not readable as tensors ({why(e)})") from e


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    weights: dict[str, torch.Tensor]
    step: int
    resolution_scale: float = 1.0  # the run's: its subnets were trained, and are evaluated, at resolution x this
    space: str | None = None  # the search space it was trained for (None: written before checkpoints said)


def read_checkpoint(path: str | Path, dev: torch.device | str = "cpu") -> Checkpoint:
    """The supernet weights of a training checkpoint of any run's settings; CheckpointError (one line) otherwise."""
    path = Path(path)
    state = load_state(path, dev)
    weights = state.get("supernet") if isinstance(state, dict) else None
    if (not isinstance(state, dict) or state.get("format") not in WEIGHTS_FORMATS or not isinstance(weights, dict)
            or not weights or not all(isinstance(v, torch.Tensor) for v in weights.values())):
        raise CheckpointError(f"checkpoint {path} is not a supernet training checkpoint of format "
                              f"{WEIGHTS_FORMATS[0]} to {WEIGHTS_FORMATS[-1]} (one written by python -m nas.train)")
    step = state.get("step")
    settings = state.get("settings") if isinstance(state.get("settings"), dict) else {}
    scale = settings.get("resolution_scale", 1.0)
    space = state.get("space")
    return Checkpoint(path, weights, step if isinstance(step, int) else -1,
                      float(scale) if isinstance(scale, (int, float)) and 0 < scale <= 1 else 1.0,
                      space if isinstance(space, str) else None)


def load_supernet(space: SearchSpace, ckpt: Checkpoint, dev: torch.device | str = "cpu") -> Supernet:
    """A Supernet of `space` in eval mode with the checkpoint's weights."""
    if ckpt.space is not None and ckpt.space != space.name:
        raise CheckpointError(f"checkpoint {ckpt.path} was trained for space {ckpt.space!r}, not {space.name!r} "
                              f"(pass --space {ckpt.space})")
    net = Supernet(space).to(dev)
    try:
        net.load_state_dict(ckpt.weights)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ckpt.path}: its weights do not fit the {space.name!r} supernet "
                              f"({why(e)})") from e
    return net.eval()
