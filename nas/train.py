"""`python -m nas.train --data DIR|synthetic --steps N --checkpoint PATH`: train the supernet.

DIR is an ImageFolder tree (`DIR/<class>/<image>`), `digits:train` scikit-learn's digits (a small real set,
shipped in the scikit-learn wheel), `synthetic[:N[:CLASSES]]` learnable generated images for a smoke run.
Training images get the random-resized crop, flip (and with flags RandAugment, mixup); evaluation and BN
re-calibration images the resize + centre crop. --resolution-scale < 1 trains every subnet at that
fraction of its resolution (CPU-scale runs; the report says so). Re-running the same command resumes from
the checkpoint. At the end the given subnets (default: min, max and the released ones) are evaluated on --val (after BN
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
from nas.trainer import DISTILLATIONS, TrainSettings, input_size, top1, train
from nas.transforms import TrainTransform

HELP = {"batch_size": "the global batch, split evenly over the torchrun ranks",
        "sandwich": "train the min subnet every step, besides the max and the sampled ones",
        "distill": "kl: KL(max || subnet); alpha: AlphaNet's adaptive alpha-divergence (alpha in -1, 1)",
        "sampler": "uniform; complexity: ElasticViT's MACs levels and windows; performance: plus per-level banks "
                   "of low-loss subnets",
        "bank_size": "performance sampler: subnets kept per MACs level",
        "bank_prob_start": "performance sampler: probability of drawing from the bank at the start",
        "bank_prob_increment": "performance sampler: added to that probability after each sixth of the run",
        "workers": "DataLoader worker processes per rank (-1: cores / ranks - 1, at most 8)",
        "amp": "bfloat16 autocast of the forward passes (for CUDA)",
        "mixup": "mixup's Beta(a, a) parameter (0: off)",
        "resolution_scale": "train and evaluate each subnet at its resolution x this (CPU-scale demos)",
        "crop_scale_min": "random-resized crop: least share of the image area",
        "randaugment_ops": "RandAugment's number of ops per image (0: off; ElasticViT's config: 1)",
        "randaugment_magnitude": "RandAugment's magnitude, of 10"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nas.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="ImageFolder directory, digits:train, or synthetic[:N[:CLASSES]]")
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
    ranks = Ranks()
    try:
        settings = TrainSettings(**{f.name: getattr(args, f.name) for f in fields(TrainSettings)})
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
        print(f"error: {where}{one_line(e)}", file=sys.stderr)
        return 2
    if report is not None:
        print(json.dumps({k: v for k, v in report.items() if k != "log"}))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))
    return 0


def one_line(e: BaseException) -> str:
    """The message of `e` on one line. An error raised in a DataLoader worker arrives re-raised with the
    worker's traceback in its message: its last line is the original `module.Error: message`."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if len(lines) > 1 and "Traceback" in str(e):
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


def _run(args: argparse.Namespace, settings: TrainSettings, ranks: Ranks) -> dict | None:
    """Train, then (rank 0 only) evaluate; the report, or None on the other ranks."""
    space = create_space(args.space)
    size = input_size(max(space.resolutions), settings.resolution_scale)
    data = open_dataset(args.data, size, settings.seed, TrainTransform(size, settings.augment))
    calibration = open_dataset(args.data, size, settings.seed)  # the training images, evaluation transform
    val = open_dataset(args.val, size, settings.seed + 1) if args.val else calibration
    subnets = {s: resolve_subnet(space, s) for s in (args.eval if args.eval is not None
                                                      else ["min", "max", *space.released])}
    if args.checkpoint is not None:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    net, log = train(space, data, settings, args.checkpoint, progress=sys.stderr.isatty(), stop_after=args.stop_after,
                     ranks=ranks)
    if not ranks.leader:
        return None
    acc = {name: top1(net, sub, val, calibration=calibration, scale=settings.resolution_scale)
           for name, sub in subnets.items()}
    seconds = log.seconds[1:] or log.seconds  # the first step pays for worker start-up and allocation
    return {"settings": asdict(settings), "world_size": ranks.world_size,
            "images_per_s": round(settings.batch_size * len(seconds) / sum(seconds), 2) if seconds else None,
            "skipped_images_rank0": log.skipped_images,
            "steps_done": log.steps[-1] if log.steps else 0, "ce_max_last": log.ce_max[-1] if log.ce_max else None,
            "kd_sampled_last": log.kd_sampled[-1] if log.kd_sampled else None, "top1": acc, "log": asdict(log)}


if __name__ == "__main__":
    sys.exit(main())
