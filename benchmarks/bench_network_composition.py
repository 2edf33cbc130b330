"""Whole networks from blocks, scored on held-out networks: composed entries refined on 0-30 others.

    python benchmarks/bench_network_composition.py --serial local --store measurements/host.sqlite

Needs the device's block measurements in the store (`profiler.run --budget 300`). Draws a pool of
fitting networks spread over the MACs range and `--n` held-out networks at random (disjoint, seeded),
measures those not yet in the store (paired with a reference network, as validate's default; `--no-paired`:
each alone, the reference re-timed around every chunk), times the weight-stream probes before and after them, and
puts them on the run's level (the reference timed plainly at both ends), and prints, on the held-out networks
only: the plain sum of alone entries, the composed entries from blocks and probes alone (fit 0) and refined on 5,
10, 30 networks, and as the baseline the network correction this project used before (per-type scales, a per-MB,
a per-block and a per-graph term, ridge 0.5; fitted on the same networks).
Writes benchmarks/results/network_composition.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.blocks import BLOCK_TYPES  # noqa: E402
from nas.registry import create_space  # noqa: E402
from predictor import metrics  # noqa: E402
from predictor.composition import weight_mb  # noqa: E402
from predictor.validate import draw_networks, fit_lut, probe_composition, time_networks  # noqa: E402
from profiler.networks import subnet_key  # noqa: E402
from profiler.session import DeviceSession, ProfileJob  # noqa: E402
from profiler.settings import MeasureSettings, ProtocolSettings, RunSettings  # noqa: E402
from profiler.targets import open_target  # noqa: E402


def one_row_curve(probe, nets):
    """Baseline: composition v3 (before 2026-12-05), fit 0: each MB of a network's weights costs the one-row
    probe's whole time per MB at the network's size, T_1(W)/W, whatever the rows of its layers."""
    mb = np.asarray(probe.curve_mb)
    per_mb = np.asarray(probe.curve_ms[probe.tokens.index(1)]) / mb
    w = np.array([sum(weight_mb(c) for c, _ in net) for net in nets])
    return np.array([sum(ms for _, ms in net) for net in nets]) + w * np.interp(np.clip(w, mb[0], mb[-1]), mb, per_mb)


def old_correction(nets, y, ridge: float = 0.5):
    """The network correction used before composition (baseline): returns a predict(nets) function."""
    def feats(ns):
        rows = []
        for net in ns:
            sums = dict.fromkeys(BLOCK_TYPES, 0.0)
            for cfg, ms in net:
                sums[cfg.type] += ms
            rows.append([*sums.values(), sum(weight_mb(c) for c, _ in net), float(len(net)), 1.0])
        return np.array(rows)
    a = feats(nets) / np.asarray(y)[:, None]
    theta0 = np.array([1.0] * len(BLOCK_TYPES) + [0.0] * 3)
    lam = ridge * np.diag(np.maximum((a ** 2).mean(axis=0), 1e-12))
    theta = np.linalg.solve(a.T @ a + lam, a.T @ np.ones(len(y)) + lam @ theta0)
    return lambda ns: feats(ns) @ theta


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serial", default="local")
    ap.add_argument("--store", type=Path, default=ROOT / "measurements" / "host.sqlite")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--fits", type=int, nargs="+", default=[0, 5, 10, 30])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anchors", type=int, default=24, help="measured blocks re-timed around the networks, as validate")
    ap.add_argument("--passes", type=int, default=3, help="each network timed once per pass, median kept; two more "
                    "at a time (up to 7) while the held-out networks' passes disagree, as validate")
    ap.add_argument("--paired", action=argparse.BooleanOptionalAction, default=True,
                    help="as validate: every model timed paired with the reference network; --no-paired: each alone, "
                    "guarded by the reference (the protocol before 2026-12-06)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "network_composition.md")
    args = ap.parse_args()
    space = create_space("elasticvit")
    settings = MeasureSettings(RunSettings(backend=args.backend, threads=args.threads, num_runs=args.runs),
                               ProtocolSettings(seed=args.seed), None, 2)
    target = open_target(args.serial)
    sess = DeviceSession(ProfileJob(target.serial, (), settings, args.store), target)
    try:
        measured = sess.measured()
        stored = fit_lut(space, measured, target.serial, args.backend, args.seed)
        pool, held = draw_networks(space, max(args.fits), args.n, args.seed)  # the pool is sorted by MACs
        timed = time_networks(sess, space, measured, stored, pool, held, args.anchors, args.passes, args.seed,
                              paired=args.paired)
    finally:
        sess.close()
    truth_by_key, drift, noise = timed.truth_ms, timed.drift, timed.pass_noise
    lut = stored.scaled(drift["factor"]) if drift else stored
    probe, shift, probe_report = probe_composition(timed.probes_before, timed.probes_after)
    flat = lut.flat()
    nets = {subnet_key(s): [(b, flat[b.key]) for b in space.blocks_of(s)] for s in pool + held}
    held = [s for s in held if subnet_key(s) in truth_by_key]
    y = np.array([truth_by_key[subnet_key(s)] for s in held])
    held_nets = [nets[subnet_key(s)] for s in held]
    rows = [("plain sum of alone entries", "-", metrics.summary([sum(ms for _, ms in n) for n in held_nets], y))]
    if drift:
        as_stored = stored.flat()
        rows.append(("composed entries (probes only), fit 0, entries as stored (no anchors)", "-", metrics.summary(
            probe.probes_only().predict([[(b, as_stored[b.key]) for b, _ in n] for n in held_nets]), y)))
    if 1 in probe.tokens:
        rows.append(("baseline: one-row probe curve (composition v3), fit 0", "-",
                     metrics.summary(one_row_curve(probe, held_nets), y)))
    for k in sorted(args.fits):
        fit = [pool[i] for i in np.linspace(0, len(pool) - 1, k).round().astype(int)] if k else []
        fit = [s for s in dict.fromkeys(fit) if subnet_key(s) in truth_by_key]
        fy = [truth_by_key[subnet_key(s)] for s in fit]
        comp = probe.fit([nets[subnet_key(s)] for s in fit], fy)
        rows.append((f"composed entries, fit {len(fit)}",
                     f"x{comp.scale:.3f}, weights x{comp.weight_scale:.3f}"
                     + "".join(f", {t} x{v:.2f}" for t, v in comp.type_scales),
                     metrics.summary(comp.predict(held_nets), y)))
        if len(fit) >= 5:
            old = old_correction([nets[subnet_key(s)] for s in fit], fy)
            rows.append((f"baseline: previous network correction, fit {len(fit)}", "9 terms",
                         metrics.summary(old(held_nets), y)))
    if timed.guard:
        g = timed.guard.report()
        protocol = (f"each network timed alone, a reference network (M) re-timed {g['checks']} times through the run, "
                    f"CV {100 * g['cv']:.1f}% ({g['disturbed']} disturbed checks, {g['waited_s']:.0f} s waited, "
                    f"{g['remeasured_chunks']} chunks measured again)")
    else:
        lv = timed.level
        protocol = (f"every model timed paired with the reference network {lv['reference']} and put on the run's level "
                    f"{lv['reference_ms']:.2f} ms (median of its plain timings at both ends; moved "
                    f"{100 * lv['moved']:+.1f}% start to end)")
    extra = probe.extra_ms_per_mb(np.asarray(probe.curve_mb))  # sizes x rows
    curve = "; ".join(f"{t} row(s): " + ", ".join(f"{mb:.0f} MB {1e3 * e:.0f}"
                                                  for mb, e in zip(probe.curve_mb, extra[:, i]))
                      for i, t in enumerate(probe.tokens))
    runtime = "ONNX Runtime" if args.backend == "onnx" else f"TFLite {args.backend}"
    head = (f"# Whole networks from blocks, held-out, {target.serial}, {runtime}, "
            f"{args.threads} thread(s)\n\n"
            f"{len(held)} held-out networks drawn at random (seed {args.seed + 1}), never used in any fit or choice; "
            f"the fitting networks are spread over the MACs range (seed {args.seed}). LUT: {lut.count('measured')} "
            f"measured + {lut.count('predicted')} predicted entries. Protocol: {protocol}"
            + (f"; every network timed in {noise['passes']} passes (its median pass kept): one timing of a held-out "
               f"network varied by CV {100 * noise['pass_cv']:.1f}% between passes" if noise else "")
            + ". In-network cost of "
            f"weights beyond alone, from the weight-stream probes (µs per MB): {curve}; the probes moved "
            f"{100 * shift:.1f}% (mean) between before and after the networks. "
            + (f"Entries rescaled by x{drift['factor']:.3f}: the median drift of {drift['blocks']} measured blocks "
               f"re-timed before and after the networks (10th-90th percentile {drift['p10']:.3f}-{drift['p90']:.3f}, "
               f"moved {100 * drift['shift']:.1f}% between the two).\n\n" if drift else "\n\n"))
    lines = ["| prediction | terms | ±10% | ±5% | MAPE | RMSE ms |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {terms} | {100 * m['acc10']:.0f}% | {100 * m['acc5']:.0f}% | {100 * m['mape']:.1f}% | "
              f"{m['rmse_ms']:.2f} |" for name, terms, m in rows]
    text = head + "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    # the raw data, for analyses the table lacks
    raw = {"probes": probe_report, "composition": probe.get_state(), "anchors": drift, "paired": timed.level,
           "networks": [{"subnet": subnet_key(s), "set": "held-out" if s in held else "fit pool",
                         "measured_ms": truth_by_key[subnet_key(s)],
                         "plain_ms": sum(ms for _, ms in nets[subnet_key(s)]),
                         "fit0_ms": float(probe.probes_only().predict([nets[subnet_key(s)]])[0])}
                        for s in pool + held if subnet_key(s) in truth_by_key]}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
