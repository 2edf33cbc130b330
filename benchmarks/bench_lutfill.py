"""LUT filling from a small budget: ours vs baselines on the published phone LUTs.

    python benchmarks/bench_lutfill.py [--lut-dir DIR] [--devices pixel4 xiaomi11] [--seeds 0 1 2]

Per device and seed, `budget` blocks are measured (read from the full LUT) and the rest predicted.
Ours = predictor.lutfill (adaptive sampler + analytical base + XGBoost). Baselines are fitted on
the same budget twice: on the keys our sampler chose and on uniformly random keys (their native
setting). Ours alone also at the smaller `--budgets`. Transfer: another phone's full LUT as prior +
`--transfer-budgets` measurements, vs no prior and per-type rescaling; and this host's LUT (x86, filled
from its measured blocks in `--host-store`) as a prior that does not fit a phone, alone and beside the
other phone. Metrics: entry level on the unmeasured reachable keys, subnet level on 2,000 random
subnets drawn with the seed. Writes the markdown table to benchmarks/results/lutfill.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.registry import create_space  # noqa: E402
from predictor.analytical import AnalyticalModel  # noqa: E402
from predictor.baselines import FlopsLinear, NnMeterRF, PlainXGB, TypeRescale  # noqa: E402
from predictor.lut import fill_lut  # noqa: E402
from predictor.lut_io import load_flat  # noqa: E402
from predictor.lutfill import evaluate, fill  # noqa: E402
from predictor.transfer import fit_prior_model  # noqa: E402
from predictor.xgb import LatencyPredictor  # noqa: E402
from profiler.store import Store  # noqa: E402

TARGETS = {"entry_acc10": 0.90, "subnet_acc10": 0.995, "subnet_acc5": 0.95}
TRANSFER_TARGET = {"subnet_acc5": 0.95}
COLS = [("entry_acc10", "entry ±10%"), ("entry_acc5", "entry ±5%"), ("subnet_acc10", "subnet ±10%"),
        ("subnet_acc5", "subnet ±5%"), ("subnet_mape", "subnet MAPE")]


def flat_scores(rep: dict) -> dict[str, float]:
    return {"entry_acc10": rep["entry"]["acc10"], "entry_acc5": rep["entry"]["acc5"],
            "subnet_acc10": rep["subnet"]["acc10"], "subnet_acc5": rep["subnet"]["acc5"],
            "subnet_mape": rep["subnet"]["mape"]}


def score(space, blocks, full, model, keys, seed) -> dict[str, float]:
    """Fit `model` on `keys` of `full`, fill the LUT, score it."""
    train = [b for b in blocks if b.key in set(keys)]
    model.fit(train, [full[b.key] for b in train])
    lut = fill_lut("bench", "bench", space, blocks, {k: full[k] for k in keys}, model)
    return flat_scores(evaluate(space, lut, full, list(keys), seed))


class PerTypeXGB:
    """Ablation: the same ratio-to-analytical XGBoost, one model per block type (shared base)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def fit(self, cfgs, latency_ms):
        y = np.asarray(latency_ms, dtype=float)
        base = AnalyticalModel().fit(cfgs, y)
        types = np.array([c.type for c in cfgs])
        self.models_ = {}
        for t in np.unique(types):
            idx = np.flatnonzero(types == t)
            self.models_[t] = LatencyPredictor(seed=self.seed, min_samples_xgb=10).fit(
                [cfgs[i] for i in idx], y[idx], base=base)
        self.base_ = base
        return self

    def predict(self, cfgs):
        out = self.base_.predict(cfgs)
        types = np.array([c.type for c in cfgs])
        for t, m in self.models_.items():
            idx = np.flatnonzero(types == t)
            if len(idx):
                out[idx] = m.predict([cfgs[i] for i in idx])
        return out


def random_keys(blocks, n: int, seed: int) -> list[str]:
    # A stream apart from the sampler's and the evaluation subnets' (same seed, different purpose).
    rng = np.random.default_rng([seed, 1])
    return [blocks[i].key for i in rng.choice(len(blocks), n, replace=False)]


def host_prior(store: str, space, blocks) -> dict[str, float]:
    """This host's LUT (TFLite CPU, 1 thread): its measured blocks (a store, or the JSON export the repo ships),
    the rest predicted from them."""
    if store.endswith(".json"):
        measured = json.loads(Path(store).read_text())["latency_ms"]
    else:
        with Store(store, read_only=True) as st:
            measured = st.latencies(st.devices()[0]["id"], backend="cpu", threads=1)
    train = [b for b in blocks if b.key in measured]
    model = LatencyPredictor(seed=0).fit(train, [measured[b.key] for b in train])
    return fill_lut("host", "cpu", space, blocks, {b.key: measured[b.key] for b in train}, model).flat()


def fmt_row(name: str, vals: list[dict[str, float]]) -> str:
    cells = []
    for col, _ in COLS:
        xs = np.array([v[col] for v in vals])
        pct = 100 * xs
        cells.append(f"{pct.mean():.1f}" + (f" ({pct.min():.1f})" if col == "subnet_acc5" else ""))
    return f"| {name} | " + " | ".join(cells) + " |"


def transfer_rows(space, blocks, luts, models, src: str, dst: str, budget: int, seeds) -> list[str]:
    """`luts`/`models`: full LUTs and their analytical models by name ("host" when there is one)."""
    rows: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        cases = [(f"**ours** {src} → {dst}", [src]), (f"no prior, {dst}", [])]
        if "host" in luts:
            cases += [(f"ours, host (x86, mismatched) → {dst}", ["host"]),
                      (f"ours, {src} + host → {dst}", [src, "host"])]
        for name, names in cases:
            res = fill(space, luts[dst], budget, seed, prior=[luts[n] for n in names] or None,
                       prior_models=[models[n] for n in names] or None)
            rows.setdefault(name, []).append(flat_scores(evaluate(space, res.lut, luts[dst], res.train_keys, seed)))
            if name.startswith("**ours**"):
                ours_keys = res.train_keys
        rnd = random_keys(blocks, budget, seed)
        for tag, keys in (("random keys", rnd), ("ours keys", ours_keys)):
            rows.setdefault(f"per-type rescaling {src} → {dst}, {tag}", []).append(
                score(space, blocks, luts[dst], TypeRescale(luts[src]), keys, seed))
    return [fmt_row(n, v) for n, v in rows.items()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut-dir", default=None, help="a folder of <device>.json LUTs (default: the shipped ones)")
    ap.add_argument("--devices", nargs="+", default=["pixel4", "xiaomi11"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--budgets", nargs="+", type=int, default=[30, 100],
                    help="smaller budgets, ours alone (no prior)")
    ap.add_argument("--transfer-budgets", nargs="+", type=int, default=[10, 30])
    ap.add_argument("--transfer-seeds", nargs="+", type=int, default=list(range(8)),
                    help="seeds of the transfer rows (a few measurements vary more from seed to seed)")
    ap.add_argument("--host-store", default=str(ROOT / "tests" / "data" / "host_blocks_tflite_cpu1.json"),
                    help="this host's measurements (a store, or the shipped JSON export): its LUT is the "
                    "mismatched prior ('' to skip)")
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lutfill.md"))
    ap.add_argument("--no-ablation", dest="ablation", action="store_false",
                    help="skip the model ablations (target transform, per-type models)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    space = create_space(args.space)
    blocks = space.enumerate_blocks()
    luts = {d: load_flat(Path(args.lut_dir) / f"{d}.json" if args.lut_dir else d, space) for d in args.devices}
    header = "| method | " + " | ".join(h for _, h in COLS) + " |\n|---|" + "---:|" * len(COLS)
    lines = [f"# LUT filling, budget {args.budget}, seeds {args.seeds}, space {args.space}", "",
             "Mean over seeds, percent; subnet ±5% also shows the worst seed in brackets. Entry level: the "
             "unmeasured reachable keys; subnet level: 2,000 random subnets per seed (measured entries exact).",
             "Baselines marked *ours keys* are fitted on the blocks our sampler chose, *random keys* on a "
             "uniform random draw of the same size.",
             "Few-shot choices (predictor/fewshot.py: misfit test, rival ratio, importance power; transfer ridge; "
             "allocation below the per-type floors; ranking several priors across types below MIN_SCORED "
             "within-type points; a type's single pick at its typical block, predictor/sampler.py; the prior-free "
             "analytical model's sum form and attention-projection constants, predictor/analytical.py) were made "
             "on Xiaomi 11 → Pixel 4 (+ this host's LUT) and Pixel 4 without a "
             "prior (seeds 0-7) and on this host's measured blocks; Pixel 4 → Xiaomi 11 and Xiaomi 11 without a "
             "prior are held out.", ""]
    t_start = time.perf_counter()
    small: dict[str, list[dict[str, float]]] = {}
    for dev in args.devices:
        full = luts[dev]
        rows: dict[str, list[dict[str, float]]] = {}
        for seed in args.seeds:
            t0 = time.perf_counter()
            res = fill(space, full, args.budget, seed)
            ours = flat_scores(evaluate(space, res.lut, full, res.train_keys, seed))
            rows.setdefault("**ours** (sampler + analytical + XGBoost)", []).append(ours)
            small.setdefault(f"{dev}, budget {args.budget}", []).append(ours)
            for b in args.budgets:
                r = fill(space, full, b, seed)
                small.setdefault(f"{dev}, budget {b}", []).append(
                    flat_scores(evaluate(space, r.lut, full, r.train_keys, seed)))
            rnd = random_keys(blocks, args.budget, seed)
            rows.setdefault("ours, model only, random keys", []).append(
                score(space, blocks, full, LatencyPredictor(seed=seed), rnd, seed))
            if args.ablation:
                for name, model in (("ablation: analytical model alone, random keys", AnalyticalModel()),
                                    ("ablation: XGB on log latency (+ analytical estimate), random keys",
                                     LatencyPredictor(seed=seed, target="log")),
                                    ("ablation: XGB ratio, one model per type, random keys", PerTypeXGB(seed))):
                    rows.setdefault(name, []).append(score(space, blocks, full, model, rnd, seed))
            for name, make in (("FLOPs-linear per type", FlopsLinear),
                               ("nn-Meter RF per type", lambda s=seed: NnMeterRF(seed=s, n_jobs=1)),
                               ("plain XGBoost on config", lambda s=seed: PlainXGB(seed=s, n_jobs=1))):
                for tag, keys in (("random keys", rnd), ("ours keys", res.train_keys)):
                    rows.setdefault(f"{name}, {tag}", []).append(score(space, blocks, full, make(), keys, seed))
            print(f"{dev} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        lines += [f"## {dev}", "", header]
        lines += [fmt_row(n, v) for n, v in rows.items()]
        lines.append("| target | " + " | ".join(
            f"≥ {100 * TARGETS[c]:g}" if c in TARGETS else "" for c, _ in COLS) + " |")
        lines.append("")
    lines += ["## Without a prior, ours at smaller budgets", "", header.replace("| method |", "| device, budget |")]
    lines += [fmt_row(n, small[n]) for n in sorted(small, key=lambda n: (n.split(",")[0], int(n.split()[-1])))]
    lines.append("| target (budget 30: entry ±10% ≥ 90, subnet ±5% ≥ 95) | " + " | ".join(
        f"≥ {100 * TARGETS[c]:g}" if c in TARGETS else "" for c, _ in COLS) + " |")
    lines.append("")
    # Each prior's analytical model fitted once (seed 0) for all runs; the command line fits it per run.
    priors = dict(luts)
    if args.host_store:
        priors["host"] = host_prior(args.host_store, space, blocks)
    models = {n: fit_prior_model({b.key: lut[b.key] for b in blocks}, seed=0) for n, lut in priors.items()}
    if len(args.devices) >= 2:
        for tb in args.transfer_budgets:
            lines += [f"## Transfer: prior = another device's full LUT, {tb} measurements, seeds {args.transfer_seeds}",
                      "", header]
            for src in args.devices:
                for dst in args.devices:
                    if src != dst:
                        lines += transfer_rows(space, blocks, priors, models, src, dst, tb, args.transfer_seeds)
            goal = TRANSFER_TARGET if tb >= 30 else {"subnet_acc5": 0.90}  # the issue's: 95% at 30, 90% at 10
            lines.append(f"| target ({tb} measurements) | " + " | ".join(
                f"≥ {100 * goal[c]:g}" if c in goal else "" for c, _ in COLS) + " |")
            lines.append("")
    lines.append(f"Total time {time.perf_counter() - t_start:.0f} s on this machine.")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
