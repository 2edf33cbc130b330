"""Network latency prediction speed: subnets per second from a filled LUT.

    python benchmarks/bench_predict_speed.py [--n 200000] [--repeats 5]

Times `SubnetPredictor.predict` on Subnet objects (encoding included) and on pre-encoded option
arrays (what a search loop that keeps its population encoded pays), against the plain Python sum
over `space.blocks_of`. Target: >= 100,000 subnets/s.
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

from nas.registry import create_space  # noqa: E402
from predictor.subnet_predictor import SubnetPredictor  # noqa: E402

TARGET_PER_S = 100_000


def best_rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "predict_speed.md"))
    args = ap.parse_args()
    space = create_space(args.space)
    blocks = space.enumerate_blocks()
    # Any LUT values will do for timing; a seeded random one keeps the script self-contained.
    rng = np.random.default_rng(args.seed)
    lut = {b.key: float(v) for b, v in zip(blocks, rng.uniform(0.05, 5.0, len(blocks)))}
    r = random.Random(args.seed)
    subnets = [space.sample(r) for _ in range(args.n)]
    t0 = time.perf_counter()
    pred = SubnetPredictor(lut, space)
    build_s = time.perf_counter() - t0
    codes = pred.indexer.encode(subnets)
    rate_obj = best_rate(lambda: pred.predict(subnets), args.n, args.repeats)
    rate_codes = best_rate(lambda: pred.predict_codes(codes), args.n, args.repeats)
    n_plain = min(args.n, 5000)
    rate_plain = best_rate(lambda: [sum(lut[b.key] for b in space.blocks_of(s)) for s in subnets[:n_plain]],
                           n_plain, 1)
    text = "\n".join([
        f"# Subnet latency prediction speed ({args.n:,} subnets, best of {args.repeats})", "",
        f"Index build: {build_s * 1e3:.0f} ms (once per LUT).", "",
        "| path | subnets/s |", "|---|---:|",
        f"| Subnet objects (encode + sum) | {rate_obj:,.0f} |",
        f"| pre-encoded arrays (sum only) | {rate_codes:,.0f} |",
        f"| plain Python sum over blocks_of | {rate_plain:,.0f} |", "",
        f"Target >= {TARGET_PER_S:,}/s: {'met' if rate_obj >= TARGET_PER_S else 'MISSED'}.", ""])
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
