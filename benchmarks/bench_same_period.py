"""Small networks and random networks timed in one period, to tell a model effect from the period's.

    python benchmarks/bench_same_period.py --store measurements/host_dev.sqlite --seed 141 [--small-seeds 21 22]
    python benchmarks/bench_same_period.py --store measurements/host_dev.sqlite --seed 141 --report-only

Runs `predictor.validate --serial local --fit 10 --n 25` on the store (its blocks must be measured: use a dev
store, never one whose figures are reported) with 10 complexity-sampler networks per `--small-seeds` (the
independent check's kind, ElasticViT's lowest MACs windows) added to the held-out networks, all interleaved and
timed with the same protocol. Then prints, for random and small networks apart, the composition from the probes
alone (fit 0) and fitted on validate's 10 networks, with and without each block's own footprint. Writes
`<store>.same_period.json` (validate's report), `<store>.small.json` (the small networks) and `<store>.lut.json`
(git-ignored beside the store). A dev tool: the table in `benchmarks/results/network_composition_choice.md`
(2026-12-06) came from it.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import predictor.composition as composition  # noqa: E402
import predictor.validate as validate  # noqa: E402
from nas.registry import create_space  # noqa: E402
from nas.sampling import create_sampler  # noqa: E402
from predictor import metrics  # noqa: E402
from predictor.lut_io import open_lut  # noqa: E402
from profiler.networks import subnet_key  # noqa: E402

FIT, N_RANDOM = 10, 25  # validate's fitted and random held-out networks


def run(store: Path, seed: int, small_seeds: list[int], report: Path, small: Path, lut: Path) -> None:
    draw = validate.draw_networks

    def with_small(space, fit, n, s):
        fitting, held = draw(space, fit, n, s)
        seen = set(fitting) | set(held)
        sampler = create_sampler("complexity", space)
        extra = [x for k in small_seeds for x in sampler.sample_step(random.Random(k), 10, 0.5) if x not in seen]
        small.write_text(json.dumps([x.to_dict(space.stage_names) for x in extra]))
        return fitting, held + extra

    validate.draw_networks = with_small
    rc = validate.main(["--serial", "local", "--store", str(store), "--fit", str(FIT), "--n", str(N_RANDOM),
                        "--seed", str(seed), "--json", str(report), "--lut-out", str(lut)])
    if rc:
        raise SystemExit(rc)


def table(seed: int, report: Path, small: Path, lut_path: Path) -> None:
    space = create_space("elasticvit")
    lut = open_lut(str(lut_path))
    rep = json.loads(report.read_text())
    # the networks as `run` drew them, by their store key (validate's report names them by it)
    fitting, held_random = validate.draw_networks(space, FIT, N_RANDOM, seed)
    small_nets = [space.from_dict(d) for d in json.loads(small.read_text())]
    by_key = {subnet_key(s): s for s in fitting + held_random + small_nets}
    held = [by_key[p["subnet"]] for p in rep["pairs"]]
    y = np.array([p["measured_ms"] for p in rep["pairs"]])
    fit = [by_key[p["subnet"]] for p in rep["fit_pairs"]]
    yf = np.array([p["measured_ms"] for p in rep["fit_pairs"]])
    is_small = np.array([s in set(small_nets) for s in held])
    nets = partial(validate._networks, space, lut)
    stored = composition.Composition.from_state(lut.meta[composition.META_KEY])
    probe = replace(stored, scale=1.0, weight_scale=1.0, ms_per_op=0.0, type_scales=(), fitted_networks=0,
                    own_footprint=False)

    def cell(pred: np.ndarray, m: np.ndarray) -> str:
        s = metrics.summary(pred[m], y[m])
        level = 100 * np.mean(np.log(y[m] / pred[m]))
        return f"{100 * s['acc10']:.0f}/{100 * s['acc5']:.0f}/{100 * s['mape']:.1f}, {level:+.1f}%"

    print("| composition | fit 0, random | fit 0, small | fit 10, random | fit 10, small |\n|---|---|---|---|---|")
    for name, own in (("no own footprint", False), ("own footprint", True)):
        base = replace(probe, own_footprint=own)
        # Composition.fit turns the own footprint on (FIT_OWN_FOOTPRINT): fit the formula under test as it is
        keep, composition.FIT_OWN_FOOTPRINT = composition.FIT_OWN_FOOTPRINT, own
        try:
            fitted = base.fit(nets(fit), yf)
        finally:
            composition.FIT_OWN_FOOTPRINT = keep
        f0, f10 = base.predict(nets(held)), fitted.predict(nets(held))
        cells = [cell(f0, ~is_small), cell(f0, is_small), cell(f10, ~is_small), cell(f10, is_small)]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=141)
    ap.add_argument("--small-seeds", type=int, nargs="+", default=[21, 22])
    ap.add_argument("--report-only", action="store_true", help="only print the table of an earlier run")
    args = ap.parse_args()
    report, small, lut = (Path(f"{args.store}{s}") for s in (".same_period.json", ".small.json", ".lut.json"))
    if not args.report_only:
        run(args.store, args.seed, args.small_seeds, report, small, lut)
    table(args.seed, report, small, lut)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
