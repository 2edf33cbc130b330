"""`python -m predictor.quickstart`: the whole pipeline on this host, in a few minutes.

1. profile a small budget of ElasticViT blocks on this machine's CPU (TFLite, 1 thread),
2. fit the predictor and fill the latency LUT for all 3,073 blocks,
3. export, measure and predict a few whole subnets, print the accuracy and write the plot,
4. search the subnet with the most MACs under a latency limit (default: the median measured subnet's).

Everything lands in measurements/ (store, filled LUT, report, plot); re-running resumes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from nas.search import SearchJob, run_search
from predictor.validate import ValidateConfig, validate
from profiler.errors import ProfilerError
from profiler.measure_args import positive_int
from profiler.prefetch import default_workers
from profiler.run import ProfileRequest, profile, report
from profiler.settings import MeasureSettings, ProtocolSettings, RunSettings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.quickstart", description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=positive_int, default=60, help="blocks to measure")
    ap.add_argument("--n", type=positive_int, default=8, help="whole subnets to validate on")
    ap.add_argument("--runs", type=positive_int, default=30, help="timed runs per measurement")
    ap.add_argument("--out", type=Path, default=Path("measurements"))
    ap.add_argument("--latency-ms", type=float, help="search limit (default: the median measured subnet's latency)")
    args = ap.parse_args(argv)
    store = args.out / "quickstart.sqlite"
    settings = MeasureSettings(RunSettings(num_runs=args.runs), ProtocolSettings(), None, default_workers())
    try:
        print(f"[1/4] profiling {args.budget} blocks on this host into {store}", flush=True)
        rc = report(profile(ProfileRequest(("local",), "elasticvit", settings, store, args.budget)))
        if rc != 0:
            return rc
        print(f"[2/4] filling the LUT and [3/4] validating on {args.n} whole subnets", flush=True)
        lut_out = args.out / "quickstart_lut.json"
        r = validate(ValidateConfig("local", settings, store, n=args.n, lut_out=lut_out, noise_networks=2,
                                    noise_repeats=3, json_out=args.out / "quickstart_validation.json"))
    except (ProfilerError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    b = r["block_sum"]
    print(f"\n{r['n']} subnets, LUT of {r['lut']['measured']} measured + {r['lut']['predicted']} predicted blocks")
    print(f"  block sum + network correction (cross-validated): within ±10% {100 * r['acc10']:.0f}%, "
          f"±5% {100 * r['acc5']:.0f}%, MAPE {100 * r['mape']:.1f}%, RMSE {r['rmse_ms']:.2f} ms")
    print(f"  plain block sum:                                  within ±10% {100 * b['acc10']:.0f}%, "
          f"±5% {100 * b['acc5']:.0f}%, MAPE {100 * b['mape']:.1f}%")
    if r.get("noise_floor"):
        cv = 100 * r["noise_floor"]["mean_cv"]
        print(f"noise floor: the same network measured repeatedly varies by {cv:.1f}% (CV)")
    full_lut = lut_out.with_suffix(".sources.json")
    print(f"plot: {r['plot']}\nreport: {args.out / 'quickstart_validation.json'}\nLUT: {lut_out} (with sources and the "
          f"network correction: {full_lut})")
    limit = args.latency_ms or statistics.median(p["measured_ms"] for p in r["pairs"])
    print(f"\n[4/4] searching the most MACs under {limit:.2f} ms (python -m nas.search --lut {full_lut} ...)",
          flush=True)
    job = SearchJob(lut=full_lut, latency_ms=round(limit, 3), top=3, json_out=args.out / "quickstart_search.json",
                    plot=args.out / "quickstart_search.png")
    return run_search(job)


if __name__ == "__main__":
    sys.exit(main())
