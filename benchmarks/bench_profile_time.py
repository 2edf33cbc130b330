"""Where profiling time goes per block: export (PyTorch -> TFLite), push, run.

    python benchmarks/bench_profile_time.py --serial local --budget 20 [--fresh-cache]

Profiles `budget` blocks into a temporary store (through the real profiler), then prints the mean
seconds per block type for each phase and the share of the total. Also writes the table as markdown
to benchmarks/results/profile_time.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ("export_s", "push_s", "run_s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serial", default="local")
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fresh-cache", action="store_true", help="convert every block anew (empty export cache)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "profile_time.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    if args.fresh_cache:
        os.environ["MOBILEVIT_NAS_CACHE"] = str(tmp / "cache")
    from profiler.run import main as run_main

    store = tmp / "m.sqlite"
    rc = run_main(["--serial", args.serial, "--budget", str(args.budget), "--store", str(store),
                   "--runs", str(args.runs), "--seed", str(args.seed), "--pick", "random",
                   # convert as we go, so each block's conversion time is measured on its own
                   "--export-workers", "1"])
    if rc != 0:
        return rc
    per_type: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with sqlite3.connect(store) as c:
        for key, info in c.execute("SELECT key, info_json FROM measurements"):
            t = json.loads(info)["timings_s"]
            for p in PHASES:
                per_type[key.split("_")[0]][p].append(t[p])
    total = {p: sum(sum(v[p]) for v in per_type.values()) for p in PHASES}
    grand = sum(total.values())
    lines = [f"Profiling time per block on `{args.serial}` ({args.budget} blocks, {args.runs} runs each, "
             f"{'fresh' if args.fresh_cache else 'warm'} export cache)", "",
             "| block type | n | export s | push s | run s |", "|---|---:|---:|---:|---:|"]
    for t, v in sorted(per_type.items()):
        n = len(v["run_s"])
        lines.append(f"| {t} | {n} | " + " | ".join(f"{sum(v[p]) / n:.3f}" for p in PHASES) + " |")
    lines.append(f"| **share of total** | {sum(len(v['run_s']) for v in per_type.values())} | "
                 + " | ".join(f"{100 * total[p] / grand:.0f}%" for p in PHASES) + " |")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
