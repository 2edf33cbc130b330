"""Does the evolutionary search beat random search at the same number of evaluations?

    python benchmarks/bench_search.py [--lut pixel4] [--limits 8 15 25 40] [--seeds 0 1 2]

For each latency limit and seed: the best objective (MACs) found by `nas.evolution.search` (default,
ElasticViT's settings) and by uniform random sampling of as many subnets as the search considered, plus
the best released subnet under the limit. The family of limits in one run: bench_search_family.py.
Latency from the LUT (shipped published LUTs by name). Writes benchmarks/results/search.md.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.evolution import Constraints, Evaluator, feasible, search  # noqa: E402
from nas.objectives import create_objective, list_objectives  # noqa: E402
from nas.registry import create_space  # noqa: E402
from predictor.lut_io import open_lut  # noqa: E402
from predictor.subnet_predictor import SubnetPredictor  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", default="pixel4")
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--objective", default="macs", choices=list_objectives())
    ap.add_argument("--limits", nargs="+", type=float, default=[8.0, 15.0, 25.0, 40.0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search.md")
    args = ap.parse_args()
    space = create_space(args.space)
    lut = open_lut(args.lut, space.name)
    predictor = SubnetPredictor(lut, space)
    score = create_objective(args.objective, space)
    rows = []
    for limit in args.limits:
        limits = Constraints(limit)
        evo, rnd, evals, secs = [], [], [], []
        for seed in args.seeds:
            t0 = time.perf_counter()
            res = search(space, predictor.predict, limits, score, rng=random.Random(seed))
            secs.append(time.perf_counter() - t0)
            evo.append(res.best[0].score)
            evals.append(res.evaluated)
            rng = random.Random(seed + 1000)
            ev = Evaluator(space, predictor.predict, score)
            cands = ev([space.sample(rng) for _ in range(res.evaluated)], limits)
            rnd.append(max((c.score for c in cands if feasible(c, limits)), default=float("nan")))
        released = [c for c in Evaluator(space, predictor.predict, score)(list(space.released.values()), limits)
                    if feasible(c, limits)]
        best_rel = max(released, key=lambda c: c.score, default=None)
        rel = "none" if best_rel is None else (
            f"{next(n for n, s in space.released.items() if s == best_rel.subnet)} {best_rel.score / 1e6:.0f}")
        rows.append(f"| {limit:g} | {np.mean(evals):.0f} | {np.mean(evo) / 1e6:.1f} ({np.min(evo) / 1e6:.1f}) | "
                    f"{np.nanmean(rnd) / 1e6:.1f} ({np.nanmin(rnd) / 1e6:.1f}) | {rel} | {np.mean(secs):.1f} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        f"# Search vs random at equal evaluations, {lut.device}, objective {args.objective} (M), seeds {args.seeds}",
        "", "| limit ms | evaluations | evolution mean (worst) | random mean (worst) | best released | search s |",
        "|---:|---:|---:|---:|---|---:|", *rows, ""])
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
