"""Where the remaining network-prediction error comes from: the filled LUT or the composition?

    python benchmarks/bench_error_sources.py --store measurements/host.sqlite \
        --lut benchmarks/results/host_lut.sources.json [--n 100 --every 5]

Takes every `every`-th of the `n` subnets `predictor.validate --n N` measured (same seed, same pick),
measures every block they run that the LUT only predicted (`profiler.run --subnet`, into a copy of the
store, so the original keeps its budget), then compares (1) the predicted entries with their
measurements, (2) the networks' plain block sums from the filled LUT and from all-measured entries,
and (3) the cross-validated corrected prediction with either set of entries. Writes
benchmarks/results/error_sources.md.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.registry import create_space  # noqa: E402
from predictor import metrics  # noqa: E402
from predictor.lut_io import open_lut  # noqa: E402
from predictor.validate import cross_validated_correction, spread_over_macs  # noqa: E402
from profiler.networks import subnet_key  # noqa: E402
from profiler.run import main as run_main  # noqa: E402
from profiler.store import Store  # noqa: E402


def corrected_cv(nets: list, truth: np.ndarray, splits: int = 5) -> dict[str, float]:
    runs = [metrics.summary(cross_validated_correction(nets, truth, 5, np.random.default_rng(k)), truth)
            for k in range(splits)]
    return {m: float(np.mean([r[m] for r in runs])) for m in ("acc10", "acc5", "mape")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT / "measurements" / "host.sqlite")
    ap.add_argument("--lut", default=str(ROOT / "benchmarks" / "results" / "host_lut.sources.json"))
    ap.add_argument("--serial", default="local")
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--n", type=int, default=100, help="the --n that predictor.validate used")
    ap.add_argument("--seed", type=int, default=0, help="the --seed that predictor.validate used")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "error_sources.md")
    args = ap.parse_args()
    space = create_space(args.space)
    lut = open_lut(args.lut, space.name)
    subs = spread_over_macs(space, args.n, random.Random(args.seed))[:: args.every]
    tmp = Path(tempfile.mkdtemp(prefix="bench-error-"))
    store = tmp / "full.sqlite"
    shutil.copy(args.store, store)
    specs = []
    for i, s in enumerate(subs):
        (tmp / f"sub{i}.json").write_text(s.to_json(space.stage_names))
        specs += ["--subnet", str(tmp / f"sub{i}.json")]
    if run_main(["--serial", args.serial, "--store", str(store), *specs]) != 0:
        print("error: profiling the subnets' blocks failed", file=sys.stderr)
        return 1
    with Store(store) as st:
        # the device is its fingerprint: the serial must name exactly one device of the store
        measured = st.latencies(st.find_device(args.serial), "linux-python", "cpu", 1)
    with sqlite3.connect(store) as c:
        nets_ms = dict(c.execute("SELECT key, latency_ms FROM measurements WHERE kind='network'").fetchall())
    subs = [s for s in subs if subnet_key(s) in nets_ms]
    truth = np.array([nets_ms[subnet_key(s)] for s in subs])
    filled = lut.flat()
    keys = sorted({b.key for s in subs for b in space.blocks_of(s)})
    predicted = [k for k in keys if lut.entries[k].source == "predicted"]
    entry = metrics.summary(np.array([filled[k] for k in predicted]), np.array([measured[k] for k in predicted]))
    rows = []
    for name, flat in (("filled LUT (as validated)", filled), ("every entry measured", measured)):
        nets = [[(b, flat[b.key]) for b in space.blocks_of(s)] for s in subs]
        plain = metrics.summary(np.array([sum(ms for _, ms in n) for n in nets]), truth)
        cv = corrected_cv(nets, truth)
        rows.append(f"| {name} | {100 * plain['mape']:.1f}% | {100 * cv['acc10']:.0f}% | {100 * cv['acc5']:.0f}% "
                    f"| {100 * cv['mape']:.1f}% |")
    text = "\n".join([
        f"# Error sources, {len(subs)} measured networks (every {args.every}th of validate's {args.n}), "
        f"{args.serial}", "",
        f"Predicted LUT entries these networks use, against their measurements ({len(predicted)} blocks): "
        f"±10% {100 * entry['acc10']:.0f}%, ±5% {100 * entry['acc5']:.0f}%, MAPE {100 * entry['mape']:.1f}%.", "",
        "| entries | plain sum MAPE | corrected ±10% | corrected ±5% | corrected MAPE |",
        "|---|---:|---:|---:|---:|", *rows, "",
        f"Corrected: 5-fold cross-validated on these {len(subs)} networks, mean of 5 fold splits.", ""])
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
