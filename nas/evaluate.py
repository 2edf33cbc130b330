"""`python -m nas.evaluate --checkpoint C --data VAL --subnet SPEC [--subnet SPEC ...] [--sample K]`: top-1 of subnets.

Loads the supernet weights of a `python -m nas.train` checkpoint (tensors only: a checkpoint cannot run
code), re-calibrates BN for each subnet (on --calib, default the evaluation data) and reports its top-1
on --data (an ImageFolder tree or synthetic[:N[:CLASSES]], as nas.train takes). SPEC is a released
name, min, max or a JSON file/string; --sample K adds K distinct random subnets drawn with --seed.

Every result goes to a SQLite store (--store) keyed by the weights' hash, the subnet, the data's
identity and the calibration settings: a repeated question is answered from the store, not evaluated
again. `--fit-predictor OUT.json` fits an accuracy predictor (nas.accuracy) on this command's subnets
(--subnet, --sample; without any, on every result the store holds for this checkpoint, data and
calibration), and reports its Spearman and Kendall rank correlation on a seeded hold-out of them that it
was not fitted on. The report is printed as JSON.
"""
from __future__ import annotations

import argparse
import inspect
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from nas.accuracy import (
    DEFAULT_STORE,
    MODELS,
    AccuracyPredictor,
    AccuracyStore,
    Context,
    Result,
    data_identity,
    fit_and_test,
    subnet_key,
    weights_sha256,
)
from nas.checkpoint import Checkpoint, load_supernet, read_checkpoint
from nas.costs import subnet_costs
from nas.data import open_dataset
from nas.registry import create_space, list_spaces
from nas.searchspace import SearchSpace
from nas.specs import resolve_subnet
from nas.subnet import Subnet
from nas.supernet import Supernet
from nas.trainer import input_size, recalibrate_bn, top1

MAX_SAMPLE_DRAWS = 100  # per requested subnet: a space smaller than --sample K ends the draws, not a hang


def calibration_settings(calib: str | None, size: int, data_seed: int) -> dict[str, Any]:
    """What BN re-calibration depends on: its images (None: the evaluation data) and how many of them
    `nas.trainer.top1` feeds (recalibrate_bn's defaults, read from it so the key follows a change there)."""
    params = inspect.signature(recalibrate_bn).parameters
    return {"data": data_identity(calib, size, data_seed) if calib else None,
            "batches": params["batches"].default, "batch_size": params["batch_size"].default}


def choose_subnets(space: SearchSpace, specs: list[str], sample: int, seed: int) -> dict[str, Subnet]:
    """Name -> subnet: the --subnet SPECs, then `sample` distinct random subnets (`sample-i`), none twice."""
    chosen: dict[str, Subnet] = {}
    for spec in specs:
        sub = resolve_subnet(space, spec)
        if sub not in chosen.values():
            chosen[spec] = sub
    named, rng = len(chosen), random.Random(seed)
    for _ in range(sample * MAX_SAMPLE_DRAWS):
        if len(chosen) == named + sample:
            break
        sub = space.sample(rng)
        if sub not in chosen.values():
            chosen[f"sample-{len(chosen) - named}"] = sub
    return chosen


class _Evaluator:
    """The supernet and the datasets, built on the first subnet the store cannot answer (none, often)."""

    def __init__(self, space: SearchSpace, ckpt: Checkpoint, args: argparse.Namespace, dev: torch.device) -> None:
        self.space, self.ckpt, self.args, self.dev = space, ckpt, args, dev
        self.net: Supernet | None = None
        self.val: Dataset | None = None
        self.calib: Dataset | None = None

    def __call__(self, sub: Subnet) -> tuple[float, float]:
        """(top-1, seconds)."""
        if self.net is None:
            size = input_size(max(self.space.resolutions), self.ckpt.resolution_scale)
            self.net = load_supernet(self.space, self.ckpt, self.dev)
            self.val = open_dataset(self.args.data, size, self.args.data_seed)
            self.calib = open_dataset(self.args.calib, size, self.args.data_seed) if self.args.calib else None
        assert self.val is not None
        start = time.perf_counter()
        acc = top1(self.net, sub, self.val, calibration=self.calib, batch_size=self.args.batch_size,
                   scale=self.ckpt.resolution_scale)
        return acc, time.perf_counter() - start


def _row(space: SearchSpace, name: str, sub: Subnet, res: Result, cached: bool) -> dict[str, Any]:
    costs = subnet_costs(space, sub)
    return {"name": name, "top1": res.top1, "cached": cached, "seconds": round(res.seconds, 3), "id": res.id,
            "mmacs": round(costs["macs"] / 1e6, 3), "params_m": round(costs["params"] / 1e6, 4),
            "subnet": sub.to_dict(space.stage_names)}


def evaluate_all(space: SearchSpace, subnets: dict[str, Subnet], ctx: Context, store: AccuracyStore,
                 evaluate: _Evaluator, info: dict[str, Any]) -> list[dict[str, Any]]:
    """Each subnet's result: from the store when it has one, else evaluated now and stored."""
    stored = {name: store.get(ctx, subnet_key(space, sub)) for name, sub in subnets.items()}
    todo = [name for name, res in stored.items() if res is None]
    for name in tqdm(todo, desc="evaluate", unit="subnet", disable=not (todo and sys.stderr.isatty())):
        acc, seconds = evaluate(subnets[name])
        stored[name] = store.add(ctx, subnet_key(space, subnets[name]), acc, seconds, info)
    return [_row(space, name, sub, stored[name], name not in todo)  # type: ignore[arg-type]
            for name, sub in subnets.items()]


def fit_predictor(space: SearchSpace, store: AccuracyStore, ctx: Context, args: argparse.Namespace,
                  provenance: dict[str, Any], only: set[int] | None = None) -> dict[str, Any]:
    """Fit on the store's results for `ctx` (those with ids in `only`, when given), hold a seeded share out."""
    results = [r for r in store.results(ctx) if only is None or r.id in only]
    subs = [space.from_dict(json.loads(r.subnet)) for r in results]
    predictor, report = fit_and_test(space, subs, [r.top1 for r in results], [r.id for r in results],
                                     AccuracyPredictor(model=args.model, seed=args.seed), args.holdout, args.seed)
    predictor.save(args.fit_predictor, {**provenance, "holdout": {"fraction": report.fraction, "seed": report.seed,
                                                                  "fit_ids": report.fit_ids,
                                                                  "test_ids": report.test_ids}})
    return {"path": str(args.fit_predictor), "n_fit": len(report.fit_ids), "n_test": len(report.test_ids),
            **report.to_dict()}


def _run(args: argparse.Namespace) -> dict[str, Any]:
    space = create_space(args.space)
    subnets = choose_subnets(space, args.subnet, args.sample, args.seed)
    if not subnets and args.fit_predictor is None:
        raise ValueError("nothing to do: give --subnet SPEC, --sample K or --fit-predictor OUT.json")
    dev = torch.device(args.device)
    ckpt = read_checkpoint(args.checkpoint, dev)
    size = input_size(max(space.resolutions), ckpt.resolution_scale)
    data, calib = data_identity(args.data, size, args.data_seed), calibration_settings(args.calib, size,
                                                                                       args.data_seed)
    ctx = Context.of(weights_sha256(ckpt.weights), data, calib)
    provenance = {"checkpoint": {"path": str(args.checkpoint), "sha256": ctx.checkpoint, "step": ckpt.step,
                                 "resolution_scale": ckpt.resolution_scale},
                  "space": space.name, "data": data, "calibration": calib}
    info = {"checkpoint": str(args.checkpoint), "step": ckpt.step, "device": str(dev), "batch_size": args.batch_size}
    with AccuracyStore(args.store) as store:
        results = evaluate_all(space, subnets, ctx, store, _Evaluator(space, ckpt, args, dev), info)
        report: dict[str, Any] = {**provenance, "store": str(args.store),
                                  "evaluated": sum(not r["cached"] for r in results),
                                  "cached": sum(r["cached"] for r in results), "results": results}
        if args.fit_predictor is not None:
            # this command's subnets when it names any, so the same command fits on the same set whatever else
            # the store holds (e.g. subnets a search found and evaluated later); else the whole store
            only = {r["id"] for r in results} if results else None
            report["predictor"] = fit_predictor(space, store, ctx, args, provenance, only)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nas.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="a python -m nas.train checkpoint")
    ap.add_argument("--data", required=True, help="evaluation data: ImageFolder directory, digits:val or "
                    "synthetic[:N[:CLASSES]]")
    ap.add_argument("--calib", help="BN re-calibration data (same forms; default: --data)")
    ap.add_argument("--subnet", action="append", default=[], help="a released name, min, max or a JSON file/string "
                    "(repeatable)")
    ap.add_argument("--sample", type=int, default=0, metavar="K", help="also evaluate K random subnets (--seed)")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE, help="the SQLite store of evaluated subnets")
    ap.add_argument("--space", default="elasticvit", help=f"one of {list_spaces()}")
    ap.add_argument("--seed", type=int, default=0, help="seeds --sample and the predictor's hold-out split")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of synthetic data (nas.train's --seed for --data)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64, help="evaluation batch size (does not change a top-1)")
    ap.add_argument("--fit-predictor", type=Path, metavar="OUT.json", help="fit an accuracy predictor on the "
                    "store's results for this checkpoint and data, save it here, report its hold-out rank quality")
    ap.add_argument("--holdout", type=float, default=0.3, help="share of evaluated subnets held out of the fit")
    ap.add_argument("--model", choices=MODELS, default="auto", help="the predictor's model")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    try:
        if args.sample < 0 or args.batch_size < 1:
            raise ValueError("--sample must be >= 0 and --batch-size >= 1")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: no CUDA device here (torch {torch.__version__})")
        report = _run(args)
    except (ValueError, OSError, RuntimeError) as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        print(f"error: {lines[0]}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
