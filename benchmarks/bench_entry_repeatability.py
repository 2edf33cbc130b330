"""How well a device's block entries repeat between measuring runs (stores of the same device).

    python benchmarks/bench_entry_repeatability.py --reference FULL.sqlite STORE.sqlite [STORE.sqlite ...]
        [--repeats R1.sqlite R2.sqlite R3.sqlite R4.sqlite] [--out benchmarks/results/entry_repeatability.md]

Every store must hold the same device (fingerprint). Per store, its block entries (runner, backend, threads as
given) are compared with the reference store's on the keys both hold: the level (median ratio) and the share of
entries within ±5% and ±10% of the reference, overall and per block type. With `--repeats` (four or more stores
that measured the same keys minutes apart, e.g. `profiler.run --budget 40 --pick random --seed 5` run four times),
it also compares one run against another with the lower of two runs against the lower of two others: a run
that was slowed (a disturbed period, a slow measuring process) weighs less in the lower of two.
"""
from __future__ import annotations

import argparse
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.blocks import parse_key  # noqa: E402
from profiler.store import Store  # noqa: E402


def entries(path: str, runner: str, backend: str, threads: int, device: str | None = None,
            ) -> tuple[str, dict[str, float]]:
    """(fingerprint hash, key -> ms) of the one device in a store; `device`: the fingerprint it must have."""
    with Store(path, read_only=True) as s:
        devices = s.devices()
        if len(devices) != 1:
            raise SystemExit(f"error: {path} holds {len(devices)} devices; give stores of one device")
        fp = devices[0]["fingerprint_hash"]
        if device is not None and fp != device:
            raise SystemExit(f"error: {path} is device {fp}, the reference is {device}")
        return fp, s.latencies(devices[0]["id"], runner, backend, threads)


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(median a/b, share within ±5%, share within ±10%)."""
    r = a / b
    return float(np.median(r)), float(np.mean(np.abs(r - 1) <= 0.05)), float(np.mean(np.abs(r - 1) <= 0.10))


def row(name: str, n: int, agr: tuple[float, float, float]) -> str:
    return f"| {name} | {n} | {agr[0]:.3f} | {100 * agr[1]:.1f} | {100 * agr[2]:.1f} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, help="store to compare against (e.g. a full LUT's)")
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--repeats", nargs="*", default=[], help="stores of the same keys measured minutes apart")
    ap.add_argument("--runner", default="linux-python")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "entry_repeatability.md"))
    args = ap.parse_args(argv)
    fp, ref = entries(args.reference, args.runner, args.backend, args.threads)
    lines = ["# Block entries measured again: how well they repeat", "",
             f"Device {fp}; reference store `{Path(args.reference).name}` ({len(ref)} entries); "
             f"{args.runner}, {args.backend}, {args.threads} thread(s).", "",
             "Command: `python benchmarks/bench_entry_repeatability.py " + " ".join(
                 Path(a).name if a.endswith(".sqlite") else a for a in (argv if argv is not None else sys.argv[1:]))
             + "` (store names without their folders).", "",
             "## Each store against the reference (keys both hold)", "",
             "| store | keys | median ratio | within ±5% | within ±10% |", "|---|---:|---:|---:|---:|"]
    by_type: dict[str, list[float]] = {}
    for path in args.stores:
        _, e = entries(path, args.runner, args.backend, args.threads, fp)
        keys = [k for k in e if k in ref]
        if not keys:
            raise SystemExit(f"error: {path} shares no block key with the reference")
        a, b = np.array([e[k] for k in keys]), np.array([ref[k] for k in keys])
        lines.append(row(Path(path).name, len(keys), agreement(a, b)))
        for k, r in zip(keys, a / b):
            by_type.setdefault(parse_key(k).type, []).append(float(r))
    lines += ["", "## Per block type (all stores pooled)", "",
              "| type | entries | median ratio | within ±5% | within ±10% |", "|---|---:|---:|---:|---:|"]
    for t, rs in sorted(by_type.items()):
        r = np.array(rs)
        lines.append(row(t, len(r), agreement(r, np.ones_like(r))))
    if len(args.repeats) >= 4:
        reps = [entries(p, args.runner, args.backend, args.threads, fp)[1] for p in args.repeats]
        keys = sorted(set.intersection(*(set(r) for r in reps)))
        m = np.array([[r[k] for k in keys] for r in reps])
        rel = m / m.min(0)  # each entry against the lowest any run got for that key
        singles = [agreement(m[i], m[j]) for i, j in combinations(range(len(m)), 2)]
        # lower of two runs against the lower of two others (each split of four runs once)
        lows = [agreement(np.minimum(m[a], m[b]), np.minimum(m[c], m[d]))
                for a, b, c, d in combinations(range(len(m)), 4)]
        lines += ["", f"## Repeats minutes apart ({len(m)} runs, {len(keys)} keys)", "",
                  "Per run, in measuring order: its level (median of each entry over the lowest any run got for the "
                  "key) and the share of its entries more than 8% above that lowest.", "",
                  "| run | level | entries > +8% |", "|---|---:|---:|"]
        lines += [f"| {Path(p).name} | {np.median(r):.3f} | {100 * np.mean(r > 1.08):.0f}% |"
                  for p, r in zip(args.repeats, rel)]
        lines += ["", "| compared | pairs | median ratio | within ±5% | within ±10% |", "|---|---:|---:|---:|---:|",
                  row("one run against another", len(singles), tuple(np.mean(singles, 0))),
                  row("lower of two runs against lower of two others", len(lows), tuple(np.mean(lows, 0)))]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
