"""`python -m profiler.import_lut LUT --device NAME --store PATH`: a published LUT as measurements.

LUT is a `.json` / `.json.gz` file or the name of a shipped LUT (`pixel4`, `xiaomi11`; see
`measurements/published/`). The nn-Meter LUT format is a flat JSON object, block key -> milliseconds
(TFLite benchmark_model, CPU).
Each entry becomes one measurement of device NAME (runner `published-lut`); keys are checked against
the block catalogue, and re-importing skips what is already there.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from predictor.lut_io import LutFormatError, load_flat, lut_path
from profiler.errors import StoreError
from profiler.store import DEFAULT_STORE, MeasurementRow, Store

RUNNER = "published-lut"


def import_lut(lut: str | Path, device: str, store_path: Path, backend: str = "cpu", threads: int = 1,
                space: str = "elasticvit") -> tuple[int, int]:
    """Returns (imported, already present). Raises LutFormatError on a malformed file (keys and latencies
    are checked by `load_flat` before the store is opened), FileNotFoundError on a missing one."""
    path = lut_path(lut, space)
    data = load_flat(lut, space)
    with Store(store_path) as store:
        return _store_entries(data, path, device, store, backend, threads)


def _store_entries(data: dict[str, float], path: Path, device: str, store: Store, backend: str,
                   threads: int) -> tuple[int, int]:
    fingerprint = {"name": device, "source": str(path.name), "format": "nn-Meter LUT"}
    # NAME is its address too; a schema-1 store kept the same import under the hash "lut-NAME"
    device_id = store.register_device(fingerprint, f"lut-{device}", device, legacy_hash=f"lut-{device}").id
    settings = {"runner": RUNNER, "backend": backend, "threads": threads, "source": str(path)}
    run_id = store.start_run(device_id, settings)
    now = time.time()
    added = 0
    store.conn.execute("BEGIN")
    try:
        for key, ms in data.items():
            stats = {"mean_ms": ms, "min_ms": ms, "max_ms": ms}
            row = MeasurementRow(device_id, RUNNER, backend, threads, "block", key, float(ms), (ms * 1e3,), stats, 1,
                                 settings, {"imported_from": path.name}, now, now)
            added += store.add(row, run_id)
        store.conn.execute("COMMIT")
    except BaseException:
        store.conn.execute("ROLLBACK")
        raise
    store.finish_run(run_id)
    return added, len(data) - added


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiler.import_lut", description=__doc__)
    ap.add_argument("lut", help="a .json/.json.gz LUT file or a shipped LUT's name (pixel4, xiaomi11)")
    ap.add_argument("--device", required=True, help="name the device's measurements are stored under")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--space", default="elasticvit", help="search space whose blocks the keys must be")
    args = ap.parse_args(argv)
    try:
        added, present = import_lut(args.lut, args.device, args.store, args.backend, args.threads, args.space)
    except (LutFormatError, ValueError, OSError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"imported {added} entries of {args.lut} as device {args.device!r} ({present} already in {args.store})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
