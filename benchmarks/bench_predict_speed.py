"""Network latency prediction speed: subnets per second from a filled LUT.

    python benchmarks/bench_predict_speed.py [--n 200000] [--repeats 5]

Times `SubnetPredictor.predict` on Subnet objects (encoding included) and `predict_codes` on pre-encoded
stage-id arrays (what a search loop that keeps its population encoded pays), with an in-network composition
(the full prediction a LUT from `predictor.validate` gives), against the plain Python sum over
`space.blocks_of`. Targets (issue 16): >= 1,000,000 subnets/s pre-encoded, >= 300,000/s from objects.
"""
from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.registry import create_space  # noqa: E402
from predictor.composition import Composition  # noqa: E402
from predictor.subnet_predictor import SubnetPredictor  # noqa: E402

TARGET_CODES_PER_S = 1_000_000
TARGET_OBJECTS_PER_S = 300_000


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
    sizes, rows = (8, 32, 64, 128), (1, 4, 16, 64)  # the default probe grid's shape (values: any will do)
    composition = Composition.from_probes({(t, mb): mb * (0.04 + 0.01 * t) for t in rows for mb in sizes},
                                          {t: 0.01 * t for t in rows})
    r = random.Random(args.seed)
    subnets = [space.sample(r) for _ in range(args.n)]
    t0 = time.perf_counter()
    pred = SubnetPredictor(lut, space, composition)
    build_s = time.perf_counter() - t0
    codes = pred.indexer.encode(subnets)
    pred.predict_codes(codes)  # the stage sums, made once per new stage id, are not what is timed
    rate_obj = best_rate(lambda: pred.predict(subnets), args.n, args.repeats)
    fresh = [space.sample(r) for _ in range(args.n)]  # other subnets, a fresh index: every stage id made anew
    rate_first = best_rate(lambda: SubnetPredictor(lut, space, composition).predict(fresh), args.n, 1)
    rate_codes = best_rate(lambda: pred.predict_codes(codes), args.n, args.repeats)
    n_plain = min(args.n, 5000)
    rate_plain = best_rate(lambda: [sum(lut[b.key] for b in space.blocks_of(s)) for s in subnets[:n_plain]],
                           n_plain, 1)
    text = "\n".join([
        f"# Subnet latency prediction speed ({args.n:,} subnets, best of {args.repeats})", "",
        f"`python benchmarks/bench_predict_speed.py --n {args.n} --repeats {args.repeats}` on {platform.node()}, "
        f"{datetime.now(timezone.utc).isoformat(timespec='minutes')}; random subnets of {args.space}, latency with "
        "an in-network composition. Index build: "
        f"{build_s * 1e3:.0f} ms (once per LUT).", "",
        "| path | subnets/s |", "|---|---:|",
        f"| Subnet objects (encode + sum) | {rate_obj:,.0f} |",
        f"| pre-encoded arrays (sum only) | {rate_codes:,.0f} |",
        f"| Subnet objects, fresh index (every stage id made on first sight; one call) | {rate_first:,.0f} |",
        f"| plain Python sum over blocks_of | {rate_plain:,.0f} |", "",
        f"Targets: pre-encoded >= {TARGET_CODES_PER_S:,}/s "
        f"{'met' if rate_codes >= TARGET_CODES_PER_S else 'MISSED'}; objects >= {TARGET_OBJECTS_PER_S:,}/s "
        f"{'met' if rate_obj >= TARGET_OBJECTS_PER_S else 'MISSED'}. The first call on new stage choices also "
        "computes their sums (once per distinct (stage, resolution, previous width, choice)); the first two rows "
        "time repeats, as in a search where most stage choices recur, the third a fresh index.", ""])
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
