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
    ap.add_argument("--n", type=positive_int, default=8, help="held-out whole subnets to score the prediction on")
    ap.add_argument("--fit", type=int, default=4, help="other whole subnets to refine the composition on")
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
        print(f"[2/4] filling the LUT and [3/4] validating on {args.n} held-out whole subnets "
              f"({args.fit} more to refine the composition)", flush=True)
        lut_out = args.out / "quickstart_lut.json"
        r = validate(ValidateConfig("local", settings, store, n=args.n, fit=args.fit, lut_out=lut_out,
                                    noise_networks=2, noise_repeats=3,
                                    json_out=args.out / "quickstart_validation.json"))
    except (ProfilerError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def line(name: str, m: dict) -> str:
        return (f"  {name:44s} within ±10% {100 * m['acc10']:3.0f}%, ±5% {100 * m['acc5']:3.0f}%, "
                f"MAPE {100 * m['mape']:4.1f}%")

    print(f"\n{r['n']} held-out subnets (never fitted on), LUT of {r['lut']['measured']} measured + "
          f"{r['lut']['predicted']} predicted blocks:")
    print(line(f"composed entries, refined on {r['fit']['networks']} networks", r))
    print(line("composed entries, blocks + probes only (fit 0)", r["composed_fit0"]))
    print(line("plain sum of alone entries", r["block_sum"]))
    if r.get("noise_floor"):
        guard = r["noise_floor_reference"]
        around = (f"reference re-timed through the run: {100 * guard['cv']:.1f}%" if guard else
                  f"each timed paired with {r['paired']['reference']} (level {r['paired']['reference_ms']:.2f} ms)")
        print(f"noise floor: the same network measured repeatedly varies by {100 * r['noise_floor']['mean_cv']:.1f}% "
              f"(CV); {around}")
    if r.get("noise_floor_passes"):
        p = r["noise_floor_passes"]
        print(f"the held-out subnets timed in {p['passes']} passes: one timing varies by {100 * p['pass_cv']:.1f}% "
              f"(CV), their median pass by about {100 * p['scored_cv']:.1f}%")
    if r["noisy"]:
        print(f"warning: {r['noisy']}")
    print(f"plot: {r['plot']}\nreport: {args.out / 'quickstart_validation.json'}\n"
          f"LUT: {lut_out} (with its composition)")
    limit = args.latency_ms or statistics.median(p["measured_ms"] for p in r["pairs"])
    print(f"\n[4/4] searching the most MACs under {limit:.2f} ms (python -m nas.search --lut {lut_out} ...)",
          flush=True)
    job = SearchJob(lut=lut_out, latency_ms=round(limit, 3), top=3, json_out=args.out / "quickstart_search.json",
                    plot=args.out / "quickstart_search.png")
    return run_search(job)


if __name__ == "__main__":
    sys.exit(main())
