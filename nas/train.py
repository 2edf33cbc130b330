"""`python -m nas.train --data DIR|synthetic --steps N --checkpoint PATH`: train the supernet.

DIR is an ImageFolder tree (`DIR/<class>/<image>`); `synthetic[:N[:CLASSES]]` generates learnable
images for a smoke run. Re-running the same command resumes from the checkpoint. At the end the
given subnets (default: min, max and the released ones) are evaluated on --val (after BN
re-calibration) and the report is printed as JSON.

Distributed: `torchrun --nproc_per_node=N -m nas.train ...` (several nodes: torchrun's --nnodes,
--node-rank, --rdzv-endpoint) trains on N ranks, gloo on CPU, NCCL with --device cuda (rank r on
cuda:LOCAL_RANK). --batch-size is the global batch, split evenly over the ranks, so the result does not
depend on N. Rank 0 writes the checkpoint (put it on storage every node sees, to resume), evaluates
and reports; an interrupted job resumes with the same command, on any number of ranks.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

import torch

from nas.data import open_dataset
from nas.distributed import Ranks, process_group, rank_device, ranks_from_env
from nas.registry import create_space, list_spaces
from nas.sampling import SAMPLERS
from nas.specs import resolve_subnet
from nas.trainer import DISTILLATIONS, TrainSettings, top1, train

HELP = {"batch_size": "the global batch, split evenly over the torchrun ranks",
        "sandwich": "train the min subnet every step, besides the max and the sampled ones",
        "distill": "kl: KL(max || subnet); alpha: AlphaNet's adaptive alpha-divergence (alpha in -1, 1)",
        "sampler": "uniform; complexity: ElasticViT's MACs levels and windows; performance: plus per-level banks "
                   "of low-loss subnets",
        "bank_size": "performance sampler: subnets kept per MACs level",
        "bank_prob_start": "performance sampler: probability of drawing from the bank at the start",
        "bank_prob_increment": "performance sampler: added to that probability after each sixth of the run"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nas.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="ImageFolder directory, or synthetic[:N[:CLASSES]]")
    ap.add_argument("--val", help="evaluation data (same forms; default: --data)")
    ap.add_argument("--space", default="elasticvit", help=f"one of {list_spaces()}")
    ap.add_argument("--checkpoint", type=Path, help="resume from / save to this file")
    ap.add_argument("--stop-after", type=int, help="end after this many more steps, with a checkpoint (slices of "
                    "a run under a scheduler's time limit: the same command continues)")
    ap.add_argument("--eval", nargs="*", help="subnets to evaluate at the end (names, min, max, JSON files)")
    ap.add_argument("--json", type=Path, help="write the report here")
    defaults = TrainSettings()
    choices = {"sampler": sorted(SAMPLERS), "distill": list(DISTILLATIONS)}
    for f in fields(TrainSettings):
        default = getattr(defaults, f.name)
        # a bool is a --flag / --no-flag pair: type=bool would read "False" as true
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(default, bool) else {"type": type(default)}
        extra = {"choices": choices[f.name]} if f.name in choices else {}
        ap.add_argument("--" + f.name.replace("_", "-"), default=default, help=HELP.get(f.name), **kind, **extra)
    args = ap.parse_args(argv)
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in fields(TrainSettings)})
    ranks = Ranks()
    try:
        ranks = ranks_from_env()
        if settings.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {settings.device}: no CUDA device here (torch {torch.__version__})")
        if settings.steps < 1 or settings.batch_size < 1 or settings.subnets_per_step < 0 or settings.bank_size < 0:
            raise ValueError("--steps and --batch-size must be >= 1, --subnets-per-step and --bank-size >= 0")
        if args.stop_after is not None and args.stop_after < 1:
            raise ValueError("--stop-after must be >= 1")
        with process_group(ranks, rank_device(settings.device, ranks)):
            report = _run(args, settings, ranks)
    except (ValueError, OSError, RuntimeError) as e:
        where = f"[rank {ranks.rank}] " if ranks.distributed else ""
        print(f"error: {where}{e}", file=sys.stderr)
        return 2
    if report is not None:
        print(json.dumps({k: v for k, v in report.items() if k != "log"}))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))
    return 0


def _run(args: argparse.Namespace, settings: TrainSettings, ranks: Ranks) -> dict | None:
    """Train, then (rank 0 only) evaluate; the report, or None on the other ranks."""
    space = create_space(args.space)
    size = max(space.resolutions)
    data = open_dataset(args.data, size, settings.seed)
    val = open_dataset(args.val, size, settings.seed + 1) if args.val else data
    subnets = {s: resolve_subnet(space, s) for s in (args.eval if args.eval is not None
                                                      else ["min", "max", *space.released])}
    if args.checkpoint is not None:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    net, log = train(space, data, settings, args.checkpoint, progress=sys.stderr.isatty(), stop_after=args.stop_after,
                     ranks=ranks)
    if not ranks.leader:
        return None
    acc = {name: top1(net, sub, val, calibration=data) for name, sub in subnets.items()}
    return {"settings": asdict(settings), "world_size": ranks.world_size,
            "steps_done": log.steps[-1] if log.steps else 0, "ce_max_last": log.ce_max[-1] if log.ce_max else None,
            "kd_sampled_last": log.kd_sampled[-1] if log.kd_sampled else None, "top1": acc, "log": asdict(log)}


if __name__ == "__main__":
    sys.exit(main())
