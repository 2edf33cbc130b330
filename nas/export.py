"""Export blocks and subnets to TFLite (litert-torch) and ONNX, with a content-keyed disk cache.

A cached file's name is a hash of what it contains: the block key or subnet JSON, the format,
the weights (a seed, or a hash of the given module's tensors), a fingerprint of the code that builds
and exports graphs (`nas.codehash`) and the exporter versions, so nothing converts twice and neither
an upgrade nor a code change serves a stale file. Files are
written to a temporary name and renamed, so a crash never leaves a half-written model. The cache is
capped (`nas.export_cache`: least recently used files go first, 20 GB unless `$MOBILEVIT_NAS_CACHE_MAX_GB`).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator, Literal

import torch
from torch import nn

from nas import export_cache, export_speedups
from nas.blocks import BlockCfg
from nas.checkpoint import load_supernet, read_checkpoint
from nas.codehash import graph_code_version
from nas.modules import build_block, example_input, is_channel_last
from nas.probes import WeightStreamProbe
from nas.registry import create_space, list_spaces
from nas.searchspace import SearchSpace
from nas.specs import resolve_subnet
from nas.subnet import Subnet
from nas.supernet import Supernet, build_subnet

log = logging.getLogger(__name__)

Format = Literal["tflite", "onnx"]
FORMATS: tuple[Format, ...] = ("tflite", "onnx")
ONNX_OPSET = 17
CACHE_ENV = "MOBILEVIT_NAS_CACHE"

# Conversions actually run in this process, by format (cache hits do not count).
conversions: dict[str, int] = {f: 0 for f in FORMATS}
export_cache.command_start()  # before any export worker is spawned: they inherit it and spare its files


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "mobilevit-nas" / "export"


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def exporter_versions(fmt: Format) -> dict[str, str]:
    dists = ("torch", "litert-torch") if fmt == "tflite" else ("torch", "onnx")
    return {d: _version(d) for d in dists}


@contextlib.contextmanager
def _quiet_litert() -> Iterator[None]:
    """litert-torch prints a progress tree unless told not to; restore the caller's setting after."""
    key, old = "LITERT_TORCH_SHOW_PROGRESS", os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    if old is None:
        os.environ[key] = "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration; every submodule's own train/eval flag restored after, even on error."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def _publish(tmp: str, path: Path) -> None:
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; cached models are shared (adb push, other users)
    os.replace(tmp, path)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def export_tflite(module: nn.Module, example: torch.Tensor, path: str | Path, channel_last: bool) -> Path:
    """Convert `module` (eval mode) with litert-torch. `example` is in PyTorch layout; with
    `channel_last` the model's input (and a 4-D output) is NHWC and no boundary transposes remain."""
    import litert_torch  # heavy import (TensorFlow runtime): only when converting

    export_speedups.install()
    path = Path(path)
    t0 = time.perf_counter()
    with eval_mode(module), _quiet_litert(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
        if channel_last:
            with torch.no_grad():
                out_4d = module(example).dim() == 4
            module = litert_torch.to_channel_last_io(module, args=[0], outputs=[0] if out_4d else []).eval()
            example = example.permute(0, 2, 3, 1).contiguous()
        data = litert_torch.convert(module, (example,)).model_content()
    _write_atomic(path, data)
    conversions["tflite"] += 1
    log.info("tflite: converted %s in %.2f s", path.name, time.perf_counter() - t0)
    return path


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """TorchScript-based ONNX export (dynamo=False needs no onnxscript); input "input", output "output"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        with eval_mode(module), torch.no_grad(), warnings.catch_warnings():
            # Shapes are static per export: the tracer's "treated as a constant" notes are expected.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # dynamo=False is chosen on purpose (no onnxscript needed): its deprecation notes are noise.
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
            warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
            torch.onnx.export(module, (example,), tmp, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["input"], output_names=["output"])
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    conversions["onnx"] += 1
    log.info("onnx: exported %s in %.2f s", path.name, time.perf_counter() - t0)
    return path


def _export(module: nn.Module, example: torch.Tensor, path: Path, fmt: Format, channel_last: bool) -> Path:
    if fmt == "tflite":
        export_tflite(module, example, path, channel_last)
    elif fmt == "onnx":
        export_onnx(module, example, path)
    else:
        raise ValueError(f"unknown export format {fmt!r}; known: {list(FORMATS)}")
    root = path.parent.parent  # the cache root: <root>/<format>/<file>
    export_cache.after_write([root / f for f in FORMATS])
    return path


def _cached(path: Path) -> bool:
    """Whether `path` is in the cache; a hit is marked as used now (the cap evicts least recently used)."""
    if not path.exists():
        return False
    log.debug("cache hit %s", path)
    export_cache.touch(path)
    return True


def cache_path(what: str, fmt: Format, weights: str, stem: str, cache_dir: str | Path | None = None) -> Path:
    """Cache file for content `what` (a block key or subnet JSON) with `weights` in format `fmt`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {list(FORMATS)}")
    ident = json.dumps({"what": what, "format": fmt, "weights": weights, "code": graph_code_version(),
                        "versions": exporter_versions(fmt)}, sort_keys=True)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return Path(cache_dir or default_cache_dir()) / fmt / f"{stem}-{digest}.{fmt}"


def weights_hash(module: nn.Module) -> str:
    """Hash of every parameter and buffer (names, shapes, values)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return "sha256:" + h.hexdigest()


def export_block(cfg: BlockCfg, fmt: Format, cache_dir: str | Path | None = None, seed: int = 0) -> Path:
    """The block `cfg` (weights from `seed`) in `fmt`, converted once and cached."""
    path = cache_path(cfg.key, fmt, f"seed{seed}", cfg.key, cache_dir)
    if _cached(path):
        return path
    return _export(build_block(cfg, seed), example_input(cfg), path, fmt, is_channel_last(cfg))


def export_probe(probe: WeightStreamProbe, fmt: Format, cache_dir: str | Path | None = None) -> Path:
    """A device probe (`nas.probes`) in `fmt`, converted once and cached."""
    path = cache_path(probe.key, fmt, "seed0", probe.key, cache_dir)
    if _cached(path):
        return path
    return _export(probe.module(), probe.example(), path, fmt, channel_last=False)


def export_subnet(subnet: Subnet, fmt: Format, cache_dir: str | Path | None = None,
                  module: nn.Module | None = None, seed: int = 0) -> Path:
    """A whole subnet in `fmt` (image input; NHWC for TFLite), converted once and cached.

    `module` (e.g. `Supernet.get_active_subnet()`) is exported as given and keyed by a hash of its
    weights; otherwise `build_subnet(subnet, seed=seed)` is."""
    weights = weights_hash(module) if module is not None else f"seed{seed}"
    stem = f"subnet_{subnet.space}_r{subnet.resolution}"
    path = cache_path(subnet.to_json(), fmt, weights, stem, cache_dir)
    if _cached(path):
        return path
    if module is None:
        module = build_subnet(subnet, seed=seed)
    r = subnet.resolution
    example = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(0))
    return _export(module, example, path, fmt, channel_last=True)


def load_supernet_weights(space: SearchSpace, checkpoint: str | Path) -> Supernet:
    """A Supernet of `space` (eval mode) with the weights of a `nas.train` checkpoint, read as tensors only: a
    checkpoint cannot run code. Any failure is a one-line CheckpointError (a ValueError)."""
    return load_supernet(space, read_checkpoint(checkpoint))


def main(argv: list[str] | None = None) -> int:
    """`python -m nas.export --subnet SPEC --format tflite|onnx --out PATH [--checkpoint C]`: write that
    subnet's model, the same graph the profiler and predictor.validate measure (random weights, or a
    trained supernet's)."""
    ap = argparse.ArgumentParser(prog="python -m nas.export", description=main.__doc__.split("\n")[0])
    ap.add_argument("--subnet", required=True, metavar="SPEC", help="released name, min, max, or a subnet JSON")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, help="a nas.train checkpoint: export the subnet with its weights")
    ap.add_argument("--space", default="elasticvit", help=f"one of {list_spaces()}")
    args = ap.parse_args(argv)
    try:
        space = create_space(args.space)
        sub = resolve_subnet(space, args.subnet)
        module = None
        if args.checkpoint is not None:
            net = load_supernet_weights(space, args.checkpoint)
            net.set_active_subnet(sub)
            module = net.get_active_subnet().eval()
        path = export_subnet(sub, args.format, module=module)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, args.out)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.format}, {args.out.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
