"""EfficientFormerV2's space on this host: blocks, LUT fill at a budget, held-out networks, search time.

    python benchmarks/bench_effv2_host.py [--budget 300] [--sample 150] [--fit 10] [--n 20] [--seed 0]

1. the blocks of the space, by type;
2. `python -m profiler.run --serial local --space efficientformerv2 --budget B` into a fresh store (timed);
3. a seeded random sample of the blocks it did not measure, measured the same way into a second store
   (so nothing after this step sees them);
4. the LUT fill (the predictor `predictor.validate` fits: XGBoost on the analytical model, default settings, no
   choice made on this space) from the B measured blocks, scored on the sample: entry within 10% / 5%, MAPE;
5. `python -m predictor.validate --serial local --space efficientformerv2 --fit F --n N` on the first store:
   held-out networks (never used in any fit), with the noise floor of the same run;
6. `nas.search` on the LUT validate wrote, objective mes, at the released S0/S1/S2's predicted latency:
   evolution (ElasticViT's defaults) and greedy slimming, each one command, timed.
Writes benchmarks/results/effv2_host.md and .json.
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.registry import create_space  # noqa: E402
from predictor import metrics  # noqa: E402
from predictor.lut_io import open_lut  # noqa: E402
from predictor.subnet_predictor import SubnetPredictor  # noqa: E402
from predictor.xgb import LatencyPredictor  # noqa: E402
from profiler.session import DeviceSession, ProfileJob, profile_device  # noqa: E402
from profiler.settings import MeasureSettings  # noqa: E402

SPACE = "efficientformerv2"


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return time.perf_counter() - t0, done.stdout


def measured(store: Path) -> dict[str, float]:
    sess = DeviceSession(ProfileJob("local", (), MeasureSettings(), store))
    try:
        return sess.measured()
    finally:
        sess.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--sample", type=int, default=150)
    ap.add_argument("--fit", type=int, default=10)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "measurements" / "effv2_host")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "effv2_host")
    args = ap.parse_args()
    space = create_space(SPACE)
    blocks = space.enumerate_blocks()
    args.work.mkdir(parents=True, exist_ok=True)
    store, sample_store = args.work / "budget.sqlite", args.work / "sample.sqlite"
    doc: dict = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
                 "blocks": len(blocks), "blocks_by_type": dict(collections.Counter(b.type for b in blocks)),
                 "settings": vars(args) | {"work": str(args.work), "out": str(args.out)}}
    py = sys.executable
    doc["profile_s"], _ = timed([py, "-m", "profiler.run", "--serial", "local", "--space", SPACE, "--budget",
                                 str(args.budget), "--store", str(store), "--seed", str(args.seed)])
    train = measured(store)
    rest = [b for b in blocks if b.key not in train]
    sample = random.Random(args.seed).sample(rest, min(args.sample, len(rest)))
    t0 = time.perf_counter()
    profile_device(ProfileJob("local", tuple(sample), MeasureSettings(), sample_store))
    doc["sample_profile_s"] = time.perf_counter() - t0
    truth = measured(sample_store)
    scored = [b for b in sample if b.key in truth]
    fitted = [b for b in blocks if b.key in train]
    model = LatencyPredictor(seed=args.seed).fit(fitted, [train[b.key] for b in fitted])
    y = [truth[b.key] for b in scored]
    doc["fill"] = {"measured": len(fitted), "scored": len(scored),
                   "xgb": metrics.summary(model.predict(scored), y),
                   "analytical": metrics.summary(model.predict_base(scored), y)}
    report, lut = args.work / "validate.json", args.work / "lut.json"
    doc["validate_s"], _ = timed([py, "-m", "predictor.validate", "--serial", "local", "--space", SPACE, "--store",
                                  str(store), "--fit", str(args.fit), "--n", str(args.n), "--seed", str(args.seed),
                                  "--json", str(report), "--plot", str(args.out) + "_validation.png",
                                  "--lut-out", str(lut)])
    v = json.loads(report.read_text())
    doc["validate"] = {k: v.get(k) for k in ("n", "acc10", "acc5", "mape", "rmse_ms", "composed_fit0", "block_sum",
                                             "noise_floor", "noisy")}
    doc["validate"]["fit_networks"] = v["fit"]["networks"]
    pred = SubnetPredictor(open_lut(lut, space), space)
    limits = [round(float(ms), 3) for ms in pred.predict([space.subnet(n) for n in ("S0", "S1", "S2")])]
    doc["search"] = {"limits_ms": limits}
    for strategy in ("evolution", "slimming"):
        out = args.work / f"search_{strategy}.json"
        s, _ = timed([py, "-m", "nas.search", "--lut", str(lut), "--latency-ms", *map(str, limits), "--objective",
                      "mes", "--strategy", strategy, "--json", str(out)])
        res = json.loads(out.read_text())
        doc["search"][strategy] = {"wall_s": s, "evaluated": res["evaluated"],
                                   "best": [{"latency_ms": r["best"][0]["latency_ms"],
                                             "params_m": r["best"][0]["params"] / 1e6,
                                             "score": r["best"][0]["score"]} for r in res["results"] if r.get("best")]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(args.out) + ".json").write_text(json.dumps(doc, indent=1))
    Path(str(args.out) + ".md").write_text(render(doc))
    print(render(doc))
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render(doc: dict) -> str:
    f, v, s = doc["fill"], doc["validate"], doc["search"]
    lines = [
        "# EfficientFormerV2's space on this host (TFLite, 1 thread, XNNPACK)", "",
        f"`python benchmarks/bench_effv2_host.py` (started {doc['started']}, host {doc['host']}; settings "
        f"{json.dumps({k: doc['settings'][k] for k in ('budget', 'sample', 'fit', 'n', 'seed')})}).", "",
        f"**Blocks in the space: {doc['blocks']}** ("
        + ", ".join(f"{t} {n}" for t, n in doc["blocks_by_type"].items()) + ").", "",
        f"## LUT fill at budget {doc['settings']['budget']}",
        f"`profiler.run --budget` measured {f['measured']} blocks in {doc['profile_s'] / 60:.1f} min (conversion "
        f"included). A seeded random sample of {f['scored']} other blocks, measured alike into a second store "
        f"({doc['sample_profile_s'] / 60:.1f} min), scores the fill; no setting was chosen on this space (the "
        "predictor's defaults were chosen on ElasticViT's blocks).", "",
        "| model | entries within 10% | within 5% | MAPE |", "|---|---:|---:|---:|",
        *(f"| {name} | {_pct(m['acc10'])} | {_pct(m['acc5'])} | {_pct(m['mape'])} |"
          for name, m in (("XGBoost on the analytical model (what the LUT uses)", f["xgb"]),
                          ("analytical model alone", f["analytical"]))), "",
        "## Held-out networks (`predictor.validate`)",
        f"{v['n']} networks drawn at random from the space, none used in any fit; the composition refined on "
        f"{v['fit_networks']} other networks ({doc['validate_s'] / 60:.1f} min for the command).", "",
        "| prediction | within 10% | within 5% | MAPE |", "|---|---:|---:|---:|",
        f"| composed, fit {v['fit_networks']} | {_pct(v['acc10'])} | {_pct(v['acc5'])} | {_pct(v['mape'])} |",
        f"| composed, fit 0 (blocks and probes only) | {_pct(v['composed_fit0']['acc10'])} | "
        f"{_pct(v['composed_fit0']['acc5'])} | {_pct(v['composed_fit0']['mape'])} |",
        f"| plain block sum | {_pct(v['block_sum']['acc10'])} | {_pct(v['block_sum']['acc5'])} | "
        f"{_pct(v['block_sum']['mape'])} |", "",
        f"Noise floor of the same run: {json.dumps(v['noise_floor'])}."
        + (f" **Flagged:** {v['noisy']}" if v.get("noisy") else ""), "",
        f"## Search (objective mes, limits = S0/S1/S2's predicted latency {s['limits_ms']} ms)", "",
        "| strategy | command wall time | distinct subnets scored | best per limit (ms, M params) |",
        "|---|---:|---:|---|",
        *(f"| {k} | {s[k]['wall_s']:.1f} s | {s[k]['evaluated']} | "
          + ", ".join(f"{b['latency_ms']:.2f} / {b['params_m']:.2f}" for b in s[k]["best"]) + " |"
          for k in ("evolution", "slimming")), "",
        "Without an accuracy predictor MES's Score is constant, so both strategies end at small, fast subnets; "
        "the times are what a search of this space costs.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
