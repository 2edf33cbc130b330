"""How long does a family of latency limits take in one `nas.search` run?

    python benchmarks/bench_search_family.py [--lut pixel4] [--limits 8 15 25 40] [--objective macs]

Runs `nas.search.run` (default settings: ElasticViT's population 512, 40 generations) over the limits in
one process, as `python -m nas.search --lut pixel4 --latency-ms 8 15 25 40` does, and prints its wall time;
then times that command itself (Python start-up and imports included). Writes
benchmarks/results/search_family.md (command, time of day, wall time, per-limit best); --plot also draws.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.objectives import ObjectiveConfig, list_objectives  # noqa: E402
from nas.search import SearchJob, run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", default="pixel4")
    ap.add_argument("--limits", nargs="+", type=float, default=[8.0, 15.0, 25.0, 40.0])
    ap.add_argument("--objective", default="macs", choices=list_objectives())
    ap.add_argument("--accuracy-predictor", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_family.md")
    ap.add_argument("--plot", type=Path, help="also draw the family's plot (timed too)")
    args = ap.parse_args()
    plot = args.plot
    job = SearchJob(lut=args.lut, latency_ms=tuple(args.limits), objective=args.objective, seed=args.seed,
                    objective_config=ObjectiveConfig(accuracy_predictor=args.accuracy_predictor), plot=plot)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    doc = run(job)
    wall = time.perf_counter() - t0
    limits = " ".join(f"{x:g}" for x in args.limits)
    cmd = f"python -m nas.search --lut {args.lut} --latency-ms {limits} --objective {args.objective}" + (
        f" --accuracy-predictor {args.accuracy_predictor}" if args.accuracy_predictor else "") + (
        f" --plot {plot}" if plot else "")
    print(f"family of {len(args.limits)} limits on {args.lut}: {wall:.1f} s wall in-process, {doc['evaluated']} "
          "distinct subnets scored", flush=True)
    t0 = time.perf_counter()  # the command as a user types it: Python start-up, imports and printing included
    proc = subprocess.run([sys.executable, *shlex.split(cmd)[1:]], cwd=ROOT, capture_output=True, text=True)
    wall_cli = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    print(f"the command: {wall_cli:.1f} s wall", flush=True)
    unit = 1e6 if args.objective in ("macs", "params") else 1.0
    rows = []
    for r in doc["results"]:
        if "infeasible" in r:
            rows.append(f"| {r['latency_ms']:g} | infeasible | | | |")
            continue
        b = r["best"][0]
        rows.append(f"| {r['latency_ms']:g} | {r['evaluated']} | {b['latency_ms']:.2f} | {b['score'] / unit:.4g} | "
                    f"{', '.join(r['released']) or 'none'} |")
    s = doc["settings"]
    text = "\n".join([
        f"# A family of latency limits in one search run ({doc['device']}, objective {args.objective})", "",
        f"Command: `{cmd}` (timed in-process by `python benchmarks/bench_search_family.py`).", "",
        f"Run at {started:%Y-%m-%d %H:%M} UTC on {platform.node() or 'this host'} ({os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}), seed {args.seed}; settings: population {s['population']}, "
        f"parents {s['parents']}, generations {s['generations']}, mutation prob {s['mutation_prob']}, "
        f"crossover share {s['crossover_share']}.", "",
        f"**Wall time: {wall_cli:.1f} s for the command** (start-up, imports and printing included); "
        f"{wall:.1f} s for `nas.search.run` in-process: the {len(args.limits)} searches, LUT loading and the released "
        f"subnets ({doc['evaluated']} distinct subnets scored, Pareto front of {len(doc['pareto'])}).", "",
        f"| limit ms | subnets considered (latency predicted) | best latency ms | best {args.objective}"
        f"{' (M)' if unit == 1e6 else ''} | released that fit |",
        "|---:|---:|---:|---:|---|", *rows, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
