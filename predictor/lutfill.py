"""Fill a device's LUT from a small measurement budget, scored against a full LUT.

    python -m predictor.lutfill --lut FULL.json --budget 300 --seed S [--prior OTHER.json ...] --out FILLED.json \
        [--plot FILL.png]

FULL.json (flat key -> ms) plays the device: it is only read through the sampler's `measure`
callback, at most `budget` times. Writes FILLED.json (every reachable block key of the space -> ms;
measured keys exact), FILLED.train_keys.json (the measured keys, in order) and prints one JSON line
of metrics: entry-level on the unmeasured reachable keys and subnet-level on 2,000 random subnets
drawn with the seed (`--plot`: both drawn against the full LUT). `--prior` may be repeated: every
prior is weighed by how well it explains the measured blocks and one that does not fit is dropped
(`predictor.fewshot`).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from nas.blocks import BlockCfg
from nas.registry import create_space
from nas.searchspace import SearchSpace
from predictor import metrics
from predictor.analytical import AnalyticalModel
from predictor.fewshot import as_list
from predictor.lut import Lut, fill_lut
from predictor.lut_io import LutFormatError, export_nnmeter, open_lut, save_lut
from predictor.plots import fill_plot
from predictor.sampler import choose
from predictor.subnet_predictor import SubnetPredictor
from predictor.transfer import fit_prior_model
from predictor.xgb import LatencyPredictor

log = logging.getLogger(__name__)

N_EVAL_SUBNETS = 2000
N_WEIGHT_SUBNETS = 5000


class LutFillError(RuntimeError):
    """Expected failure with a one-line message (bad input file, missing keys)."""


@dataclass
class FillResult:
    lut: Lut
    train_keys: list[str]
    predictor: LatencyPredictor


def subnet_weights(space: SearchSpace, blocks: list[BlockCfg], rng: random.Random,
                   n: int = N_WEIGHT_SUBNETS) -> dict[str, float]:
    """How often each block occurs in random subnets: its weight in network latency."""
    pos = {b.key: i for i, b in enumerate(blocks)}
    sp = SubnetPredictor(dict.fromkeys(pos, 1.0), space)
    freq = sp.indexer.block_counts(sp.indexer.encode([space.sample(rng) for _ in range(n)]))
    return {b.key: float(freq[i]) for i, b in enumerate(blocks)}


def fill(space: SearchSpace, full: Mapping[str, float], budget: int, seed: int,
         prior: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None, device: str = "device",
         backend: str = "unknown", prior_models: Sequence[AnalyticalModel] | None = None) -> FillResult:
    """Measure `budget` blocks of `full` through the sampler, predict the rest (`prior`: one LUT or a list;
    `prior_models`: their analytical models if already fitted, in the same order, else fitted here)."""
    blocks = space.enumerate_blocks()
    missing = [b.key for b in blocks if b.key not in full]
    if missing:
        raise LutFillError(f"the full LUT lacks {len(missing)} reachable keys of space {space.name!r}, "
                           f"e.g. {missing[0]}")
    calls = {"n": 0}

    def measure(batch: list[BlockCfg]) -> list[float]:
        calls["n"] += len(batch)
        if calls["n"] > budget:
            raise AssertionError(f"sampler asked for {calls['n']} measurements, budget {budget}")
        return [float(full[b.key]) for b in batch]

    seq = np.random.SeedSequence(seed)
    s_sampler, s_weights, s_model = seq.spawn(3)
    weights = subnet_weights(space, blocks, random.Random(int(s_weights.generate_state(1)[0])))
    # A prior matters where we predict: keep its entries for this space's blocks.
    priors = [q for q in ({b.key: float(p[b.key]) for b in blocks if b.key in p} for p in as_list(prior)) if q]
    model_seed = int(s_model.generate_state(1)[0])
    if prior_models is None:
        prior_models = [fit_prior_model(p, seed=model_seed) for p in priors]
    elif len(prior_models) != len(priors):
        raise ValueError(f"{len(prior_models)} prior models for {len(priors)} priors with keys of this space")
    t0 = time.perf_counter()
    measured = choose(blocks, budget, measure, np.random.default_rng(s_sampler), priors or None, weights=weights,
                      prior_model=prior_models or None)
    log.info("sampled %d blocks in %.1f s", len(measured), time.perf_counter() - t0)
    train = [b for b in blocks if b.key in measured]
    model = LatencyPredictor(prior=priors or None, prior_model=prior_models or None, seed=seed, block_weights=weights)
    model.fit(train, [measured[b.key] for b in train])
    meta = {"budget": budget, "seed": seed, "prior": bool(priors), "n_priors": len(priors),
            "n_measured": len(measured)}
    lut = fill_lut(device, backend, space, blocks, measured, model, meta)
    return FillResult(lut, list(measured), model)


@dataclass(frozen=True)
class Comparison:
    """A filled LUT against the full one: its unmeasured entries and random subnets, predicted and true (ms)."""

    entry_pred: np.ndarray
    entry_true: np.ndarray
    subnet_pred: np.ndarray
    subnet_true: np.ndarray


def compare(space: SearchSpace, lut: Lut, full: Mapping[str, float], train_keys: list[str], seed: int,
            n_subnets: int = N_EVAL_SUBNETS) -> Comparison:
    """The unmeasured keys of `lut` and `n_subnets` random subnets drawn with `seed`, from `lut` and from `full`."""
    trained = set(train_keys)
    keys = [k for k in lut.entries if k not in trained]
    rng = random.Random(seed)
    subnets = [space.sample(rng) for _ in range(n_subnets)]
    return Comparison(np.array([lut.entries[k].latency_ms for k in keys], dtype=float),
                      np.array([full[k] for k in keys], dtype=float),
                      np.asarray(SubnetPredictor(lut, space).predict(subnets), dtype=float),
                      np.asarray(SubnetPredictor(dict(full), space).predict(subnets), dtype=float))


def evaluate(space: SearchSpace, lut: Lut, full: Mapping[str, float], train_keys: list[str], seed: int,
             n_subnets: int = N_EVAL_SUBNETS) -> dict[str, dict[str, float]]:
    """Entry-level on unmeasured keys of `lut`, subnet-level on random subnets drawn with `seed`."""
    return summarise(compare(space, lut, full, train_keys, seed, n_subnets))


def summarise(c: Comparison) -> dict[str, dict[str, float]]:
    entry = metrics.summary(c.entry_pred, c.entry_true) if len(c.entry_true) else {}
    return {"entry": entry, "subnet": metrics.summary(c.subnet_pred, c.subnet_true)}


def _read_flat(lut: str, space: str) -> tuple[str, dict[str, float]]:
    """(device name, key -> ms) of a shipped LUT name or a LUT file in any format `open_lut` reads.
    Raises LutFormatError / OSError, both naming the file."""
    full = open_lut(lut, space)
    return full.device, full.flat()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.lutfill", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", required=True, help="full LUT of the device: flat JSON key -> ms, or a shipped name "
                    "(pixel4, xiaomi11)")
    ap.add_argument("--budget", type=int, required=True, help="number of blocks that may be measured")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--prior", action="append", help="another device's full LUT (file or shipped name), known "
                    "in advance; repeat for several")
    ap.add_argument("--out", required=True, help="filled LUT, flat JSON key -> ms")
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--save-lut", help="also write the LUT with per-entry source (measured/predicted)")
    ap.add_argument("--save-model", help="also write the fitted predictor (JSON)")
    ap.add_argument("--plot", help="also draw the filled LUT against the full one (PNG): entries and subnets")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.budget < 0:
            raise LutFillError(f"--budget must be >= 0, got {args.budget}")
        space = create_space(args.space)
        device, full = _read_flat(args.lut, space.name)
        prior = [_read_flat(p, space.name)[1] for p in args.prior or []] or None
        res = fill(space, full, args.budget, args.seed, prior, device=device)
        out = Path(args.out)
        export_nnmeter(res.lut, out)
        train_path = out.with_name(out.stem + ".train_keys.json")
        train_path.write_text(json.dumps(res.train_keys, indent=1))
        if args.save_lut:
            save_lut(res.lut, args.save_lut)
        if args.save_model:
            res.predictor.save(args.save_model)
        comparison = compare(space, res.lut, full, res.train_keys, args.seed)
        report = summarise(comparison)
        if args.plot:
            fill_plot(comparison.entry_pred, comparison.entry_true, comparison.subnet_pred, comparison.subnet_true,
                      f"{device}: {len(res.train_keys)} of {len(res.lut.entries)} blocks measured (seed {args.seed}"
                      f"{', with a prior' if args.prior else ''})", Path(args.plot))
    except (LutFillError, LutFormatError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"budget": args.budget, "seed": args.seed, "prior": bool(args.prior),
                      "n_measured": len(res.train_keys), "n_keys": len(res.lut.entries), **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
