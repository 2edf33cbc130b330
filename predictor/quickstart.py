"""`python -m predictor.quickstart`: the whole pipeline on this host, in a few minutes.

1. profile a small budget of ElasticViT blocks on this machine's CPU (TFLite, 1 thread),
2. fit the predictor and fill the latency LUT for all 3,073 blocks,
3. export, measure and predict a few whole subnets, print the accuracy and write the plot,
4. search the subnet with the most MACs under a latency limit (default: the median measured subnet's).

Everything lands in measurements/ (store, filled LUT, report, plot); re-running resumes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from nas import search_cli
from predictor import validate
from profiler import run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.quickstart", description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=60, help="blocks to measure")
    ap.add_argument("--n", type=int, default=8, help="whole subnets to validate on")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per measurement")
    ap.add_argument("--out", type=Path, default=Path("measurements"))
    ap.add_argument("--latency-ms", type=float, help="search limit (default: the median measured subnet's latency)")
    args = ap.parse_args(argv)
    store = args.out / "quickstart.sqlite"
    print(f"[1/4] profiling {args.budget} blocks on this host into {store}", flush=True)
    rc = run.main(["--serial", "local", "--budget", str(args.budget), "--store", str(store), "--runs", str(args.runs)])
    if rc != 0:
        return rc
    print(f"[2/4] filling the LUT and [3/4] validating on {args.n} whole subnets", flush=True)
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
    full_lut = args.out / "quickstart_lut.sources.json"
    print(f"plot: {r['plot']}\nreport: {report}\nLUT: {args.out / 'quickstart_lut.json'} (with sources and the "
          f"network correction: {full_lut})")
    limit = args.latency_ms or statistics.median(p["measured_ms"] for p in r["pairs"])
    print(f"\n[4/4] searching the most MACs under {limit:.2f} ms (python -m nas.search --lut {full_lut} ...)",
          flush=True)
    return search_cli.main(["--lut", str(full_lut), "--latency-ms", f"{limit:.3f}", "--top", "3",
                            "--json", str(args.out / "quickstart_search.json"),
                            "--plot", str(args.out / "quickstart_search.png")])


if __name__ == "__main__":
    sys.exit(main())
