"""`python -m predictor.quickstart`: the whole pipeline on this host, in a few minutes.

1. profile a small budget of ElasticViT blocks on this machine's CPU (TFLite, 1 thread),
2. fit the predictor and fill the latency LUT for all 3,073 blocks,
3. export, measure and predict a few whole subnets, print the accuracy and write the plot.

Everything lands in measurements/ (store, filled LUT, report, plot); re-running resumes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from predictor import validate
from profiler import run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.quickstart", description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=60, help="blocks to measure")
    ap.add_argument("--n", type=int, default=8, help="whole subnets to validate on")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per measurement")
    ap.add_argument("--out", type=Path, default=Path("measurements"))
    args = ap.parse_args(argv)
    store = args.out / "quickstart.sqlite"
    print(f"[1/3] profiling {args.budget} blocks on this host into {store}", flush=True)
    rc = run.main(["--serial", "local", "--budget", str(args.budget), "--store", str(store), "--runs", str(args.runs)])
    if rc != 0:
        return rc
    print(f"[2/3] filling the LUT and [3/3] validating on {args.n} whole subnets", flush=True)
    report = args.out / "quickstart_validation.json"
    rc = validate.main(["--serial", "local", "--store", str(store), "--n", str(args.n), "--runs", str(args.runs),
                        "--json", str(report), "--lut-out", str(args.out / "quickstart_lut.json"),
                        "--noise-networks", "2", "--noise-repeats", "3"])
    if rc != 0:
        return rc
    r = json.loads(report.read_text())
    b = r["block_sum"]
    print(f"\n{r['n']} subnets, LUT of {r['lut']['measured']} measured + {r['lut']['predicted']} predicted blocks")
    print(f"  block sum + network correction (cross-validated): within ±10% {100 * r['acc10']:.0f}%, "
          f"±5% {100 * r['acc5']:.0f}%, MAPE {100 * r['mape']:.1f}%, RMSE {r['rmse_ms']:.2f} ms")
    print(f"  plain block sum:                                  within ±10% {100 * b['acc10']:.0f}%, "
          f"±5% {100 * b['acc5']:.0f}%, MAPE {100 * b['mape']:.1f}%")
    if r.get("noise_floor"):
        print(f"noise floor: the same network measured repeatedly varies by {100 * r['noise_floor']['mean_cv']:.1f}% (CV)")
    print(f"plot: {r['plot']}\nreport: {report}\nLUT: {args.out / 'quickstart_lut.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
