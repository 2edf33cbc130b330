"""`python -m profiler.export --store PATH --csv OUT.csv`: one row per measurement, by device fingerprint."""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from profiler.errors import StoreError
from profiler.store import DEFAULT_STORE, Store

COLUMNS = ["fingerprint", "serials", "runner", "backend", "threads", "kind", "key", "latency_ms", "mean_ms", "std_ms",
           "min_ms", "max_ms", "spread", "n_samples", "attempts", "started_at", "finished_at"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiler.export", description=__doc__)
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE)
    ap.add_argument("--csv", type=Path, required=True, help="output CSV ('-' for stdout)")
    ap.add_argument("--kind", choices=["block", "network"], help="only blocks or only whole networks")
    ap.add_argument("--samples", action="store_true", help="add the raw samples (µs, JSON list) as a column")
    args = ap.parse_args(argv)
    cols = COLUMNS + (["samples_us"] if args.samples else [])
    try:
        with Store(args.store, read_only=True) as store:  # an export never writes the store
            out = sys.stdout if str(args.csv) == "-" else open(args.csv, "w", newline="")
            try:
                w = csv.writer(out)
                w.writerow(cols)
                n = 0
                for r in store.rows(args.kind):
                    r["fingerprint"], r["samples_us"] = r["fingerprint_hash"], r["samples_us_json"]
                    w.writerow([r[c] for c in cols])
                    n += 1
            finally:
                if out is not sys.stdout:
                    out.close()
    except (StoreError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if out is not sys.stdout:
        print(f"wrote {n} measurements to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
