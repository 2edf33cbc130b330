"""A full LUT on this host: every block of a space measured, conversion included, from an empty export cache.

    python benchmarks/bench_full_lut.py [--space elasticvit] [--runs 50]

Runs the real command a user runs (`python -m profiler.run --serial local`, no --budget) into a fresh
store with a fresh export cache, and reports its wall time split into the conversion phase (start to
the first stored measurement: process start, imports, converting every block in the pool) and the
measuring phase (first to last stored measurement), the per-block rates and what the measurements
recorded. Writes benchmarks/results/full_lut.md. Run it on a quiet machine: it takes ~30 minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per block (the profiler's default)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "full_lut.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-full-lut-"))
    store = tmp / "m.sqlite"
    env = {**os.environ, "MOBILEVIT_NAS_CACHE": str(tmp / "cache")}
    cmd = [sys.executable, "-m", "profiler.run", "--serial", "local", "--space", args.space, "--store", str(store),
           "--runs", str(args.runs)]
    load_before = os.getloadavg()
    t0 = time.time()
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    wall_s = time.time() - t0
    with sqlite3.connect(store) as c:
        rows = c.execute("SELECT key, started_at, finished_at, attempts, info_json FROM measurements "
                         "WHERE kind='block'").fetchall()
        failed = c.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
    n = len(rows)
    first = min(r[1] for r in rows)
    last = max(r[2] for r in rows)
    convert_s, measure_s = first - t0, last - first
    attempts = Counter(r[3] for r in rows)
    process = Counter(json.loads(r[4]).get("process", "?") for r in rows)
    cores = os.cpu_count()
    lines = [
        f"# A full LUT on this host ({args.space}, `profiler.run --serial local`, empty export cache)", "",
        f"Command: `{' '.join(['python', '-m', 'profiler.run', '--serial', 'local', '--space', args.space])}` "
        f"(defaults: TFLite, 1 thread, {args.runs} runs, export workers = cores = {cores}); exit code {rc}.", "",
        "| | value |", "|---|---:|",
        f"| blocks measured | {n} (failed {failed}) |",
        f"| **wall time** | **{wall_s / 60:.1f} min** |",
        f"| conversion phase (start to first stored block) | {convert_s / 60:.1f} min "
        f"({convert_s / max(n, 1):.3f} s/block wall) |",
        f"| measuring phase (first to last stored block) | {measure_s / 60:.1f} min "
        f"({measure_s / max(n, 1):.3f} s/block) |",
        f"| attempts per block | {dict(sorted(attempts.items()))} |",
        f"| measuring process | {dict(process)} |",
        f"| load average before (1/5/15 min) | {' / '.join(f'{x:.2f}' for x in load_before)} |",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0 if rc == 0 else rc


if __name__ == "__main__":
    sys.exit(main())
