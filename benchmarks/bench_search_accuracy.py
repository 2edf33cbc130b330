"""Does searching for predicted accuracy find better subnets than the released ones, and does it hold when measured?

    python benchmarks/bench_search_accuracy.py [--luts benchmarks/results/host_lut.json pixel4] [--seeds 0]
        [--population N --generations G] [--checkpoint C --predictor P --store S]

Issue 14, point 5. For each LUT and each released subnet R of the space, the limit is R's predicted latency on
that LUT (`SubnetPredictor` over `open_lut`, composed entries where the LUT has them, as `nas.search` does), and
`nas.search.run` searches under it twice: with objective `accuracy` (the demonstration's accuracy predictor)
and with objective `macs`; all of a LUT's limits form one family (one search per limit, each seeded alike).
Per row: R's predicted top-1, the accuracy winner's predicted top-1 and latency, the macs winner's predicted
top-1 (scored by the same predictor) and MMACs, and the measured top-1 of all three on --data after BN
re-calibration on --calib: measured by `python -m nas.evaluate` with the demonstration's flags and store, so
a subnet evaluated before is read back, not evaluated again. The predictor was fitted on evaluated random
subnets (its provenance names their store ids); the winners are new subnets, and the check that none of them
was among the fitted or held-out ones is printed. Writes benchmarks/results/search_accuracy.md, .json, .png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.accuracy import AccuracyStore, Context, data_identity, subnet_key, weights_sha256  # noqa: E402
from nas.checkpoint import read_checkpoint  # noqa: E402
from nas.data import open_dataset  # noqa: E402
from nas.evaluate import calibration_settings  # noqa: E402
from nas.evolution import SearchSettings  # noqa: E402
from nas.objectives import ObjectiveConfig, load_accuracy_predictor  # noqa: E402
from nas.registry import create_space  # noqa: E402
from nas.search import SearchJob, run  # noqa: E402
from nas.searchspace import SearchSpace  # noqa: E402
from nas.subnet import Subnet  # noqa: E402
from nas.trainer import input_size  # noqa: E402
from predictor.lut_io import open_lut  # noqa: E402
from predictor.subnet_predictor import SubnetPredictor  # noqa: E402

DEMO = ROOT / "measurements" / "demo"
RESULTS = ROOT / "benchmarks" / "results"
OBJECTIVES = ("accuracy", "macs")


def _rel(p: Path | str) -> str:
    p = Path(p)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def lut_label(lut: str) -> str:
    return Path(lut).stem if lut.endswith(".json") else lut


def released_latency(space: SearchSpace, lut: str) -> dict[str, float]:
    """Each released subnet's predicted latency on `lut`, exactly as nas.search predicts (composition if any)."""
    pred = SubnetPredictor(open_lut(lut, space.name), space)
    lat = pred.predict(list(space.released.values()))
    return {name: float(x) for name, x in zip(space.released, lat)}


def search_rows(space: SearchSpace, lut: str, objective: str, limits: dict[str, float], args: argparse.Namespace,
                seed: int) -> tuple[dict[str, dict], dict]:
    """One family (a search per released subnet's latency): the best entry per released name, and the run's
    summary (wall time, settings)."""
    config = ObjectiveConfig(accuracy_predictor=args.predictor if objective == "accuracy" else None)
    job = SearchJob(lut=lut, latency_ms=tuple(limits.values()), space=space.name, objective=objective,
                    objective_config=config, population=args.population, generations=args.generations, seed=seed,
                    top=1)
    t0 = time.perf_counter()
    doc = run(job)
    wall = time.perf_counter() - t0
    by_limit = {r["latency_ms"]: r for r in doc["results"]}
    best = {}
    for name, ms in limits.items():
        r = by_limit[float(ms)]
        if "infeasible" in r:  # cannot happen (R itself meets its own latency), but say so if it does
            raise RuntimeError(f"{lut}: the search under {name}'s latency {ms:.3f} ms found nothing: {r['infeasible']}")
        best[name] = r["best"][0]
        if abs(doc["released"][name]["latency_ms"] - ms) > 1e-9 * ms:
            raise RuntimeError(f"{lut}: nas.search predicts {name} at {doc['released'][name]['latency_ms']} ms, "
                               f"this benchmark at {ms} ms")
    return best, {"wall_s": round(wall, 2), "evaluated": doc["evaluated"], "settings": doc["settings"],
                  "latency": doc["latency"], "device": doc["device"]}


def evaluate(space: SearchSpace, specs: dict[str, Subnet], args: argparse.Namespace) -> tuple[dict[str, dict], list,
                                                                                                float]:
    """Measured top-1 of each subnet (by key) through `python -m nas.evaluate` with the demonstration's flags and
    store: what the store holds is read back, the rest evaluated and stored. Returns rows by subnet key, the
    command (subnets elided) and its wall time."""
    cmd = [sys.executable, "-m", "nas.evaluate", "--checkpoint", str(args.checkpoint), "--data", args.data,
           "--calib", args.calib, "--store", str(args.store), "--space", space.name, "--data-seed",
           str(args.data_seed), "--batch-size", str(args.batch_size)]
    with tempfile.TemporaryDirectory() as tmp:  # as files: nas.specs takes a long JSON string for a file name
        subnets = []
        for i, (spec, sub) in enumerate(specs.items()):
            if spec not in space.released:
                spec = str(Path(tmp) / f"subnet-{i}.json")
                Path(spec).write_text(json.dumps(sub.to_dict(space.stage_names)))
            subnets += ["--subnet", spec]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + subnets, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"nas.evaluate failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {subnet_key(space, space.from_dict(r["subnet"])): r for r in report["results"]}
    shown = ["python" if c == sys.executable else _rel(c) if c in (str(args.checkpoint), str(args.store)) else c
             for c in cmd]
    return rows, shown + ["--subnet ..."], wall


def store_context(space: SearchSpace, args: argparse.Namespace) -> tuple[Context, dict]:
    """The accuracy store's context of this checkpoint, data and calibration (as nas.evaluate builds it)."""
    ckpt = read_checkpoint(args.checkpoint)
    size = input_size(max(space.resolutions), ckpt.resolution_scale)
    data = data_identity(args.data, size, args.data_seed)
    calib = calibration_settings(args.calib, size, args.data_seed)
    return Context.of(weights_sha256(ckpt.weights), data, calib), {"step": ckpt.step, "image_size": size,
                                                                   "resolution_scale": ckpt.resolution_scale}


def provenance_check(store_path: Path, ctx: Context, prov: dict, keys: dict[str, str]) -> dict[str, Any]:
    """Which of `keys` (label -> subnet key) the predictor was fitted on or held out, by their ids in the store
    (the ids the predictor's provenance lists)."""
    hold = prov.get("holdout", {})
    fit_ids, test_ids = set(hold.get("fit_ids", ())), set(hold.get("test_ids", ()))
    with AccuracyStore(store_path) as store:
        ids = {label: (r.id if (r := store.get(ctx, key)) is not None else None) for label, key in keys.items()}
        fitted = {r.subnet for r in store.results(ctx) if r.id in fit_ids | test_ids}
    return {"same_checkpoint": prov.get("checkpoint", {}).get("sha256") == ctx.checkpoint, "fitted_keys": fitted,
            "n_fit": len(fit_ids), "n_test": len(test_ids), "ids": ids,
            "in_fit": sorted(label for label, i in ids.items() if i in fit_ids),
            "in_test": sorted(label for label, i in ids.items() if i in test_ids)}


def initial_draws_overlap(space: SearchSpace, fitted: set[str], seed: int, population: int) -> int:
    """How many of the predictor's subnets (fitted or held out) are among a search's first random draws: the
    search seeds `random.Random(seed)` and draws `space.sample` `population` times, as `nas.evaluate --sample`
    does with its --seed."""
    rng = random.Random(seed)
    return len(fitted & {subnet_key(space, space.sample(rng)) for _ in range(population)})


def se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def plot(rows: list[dict], luts: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, len(luts), figsize=(6.5 * len(luts), 5), dpi=120, squeeze=False)
    for ax, lut in zip(axes[0], luts):
        mine = [r for r in rows if r["lut"] == lut]
        for key, label, marker, color in (("released", "released", "o", "tab:blue"),
                                          ("accuracy", "accuracy-objective winner", "*", "tab:red"),
                                          ("macs", "macs-objective winner", "^", "tab:green")):
            ax.scatter([r[key]["latency_ms"] for r in mine], [100 * r[key]["measured_top1"] for r in mine],
                       marker=marker, s=80 if marker == "*" else 36, color=color, edgecolor="black", lw=0.4,
                       label=label, zorder=3)
        for r in mine:
            if r["seed"] == mine[0]["seed"]:
                ax.annotate(r["released_name"], (r["released"]["latency_ms"], 100 * r["released"]["measured_top1"]),
                            textcoords="offset points", xytext=(4, -10), fontsize=8)
            for key in ("accuracy", "macs"):
                ax.plot([r["released"]["latency_ms"], r[key]["latency_ms"]],
                        [100 * r["released"]["measured_top1"], 100 * r[key]["measured_top1"]], color="0.8", lw=0.6,
                        zorder=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}" if f"{x:g}"[0] in "2357" else ""))
        ax.set(xlabel=f"predicted latency on {lut} (ms, log)", ylabel="measured top-1 on digits:val (%)",
               title=f"{lut}: search under each released subnet's latency")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=DEMO / "supernet.pt")
    ap.add_argument("--predictor", type=Path, default=DEMO / "accuracy_predictor.json")
    ap.add_argument("--store", type=Path, default=DEMO / "accuracy.sqlite")
    ap.add_argument("--luts", nargs="+", default=[str(RESULTS / "host_lut.json"), "pixel4"],
                    help="LUTs (a LUT file or a published name)")
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--population", type=int, default=SearchSettings().population)
    ap.add_argument("--generations", type=int, default=SearchSettings().generations)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", default="digits:val")
    ap.add_argument("--calib", default="digits:train")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "search_accuracy.md", help="also writes .json and .png")
    args = ap.parse_args()
    started = datetime.now(timezone.utc)
    command = "python benchmarks/bench_search_accuracy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    args.checkpoint, args.predictor, args.store = (p.resolve() for p in (args.checkpoint, args.predictor, args.store))
    args.luts = [str(Path(x).resolve()) if Path(x).is_file() else x for x in args.luts]  # nas.evaluate runs in ROOT
    space = create_space(args.space)
    try:
        predictor = load_accuracy_predictor(args.predictor, space)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    prov = json.loads(args.predictor.read_text()).get("provenance", {})

    # 1. the searches
    found: dict[tuple[str, int, str], dict[str, dict]] = {}
    limits: dict[str, dict[str, float]] = {}
    runs = []
    for lut in args.luts:
        limits[lut] = released_latency(space, lut)
        for seed in args.seeds:
            for objective in OBJECTIVES:
                best, summary = search_rows(space, lut, objective, limits[lut], args, seed)
                found[(lut, seed, objective)] = best
                runs.append({"lut": _rel(lut), "seed": seed, "objective": objective, **summary})
                print(f"{lut_label(lut)} seed {seed} {objective}: {len(best)} limits, {summary['evaluated']} "
                      f"distinct subnets scored, {summary['wall_s']:.1f} s", flush=True)

    # 2. measured top-1 of the released and every winner, through the demonstration's store
    specs: dict[str, Subnet] = dict(space.released)
    for best in found.values():
        for e in best.values():
            sub = space.from_dict(e["subnet"])
            if sub not in specs.values():
                specs[f"winner-{len(specs)}"] = sub
    ctx, ck = store_context(space, args)
    with AccuracyStore(args.store) as store:
        before = {subnet_key(space, s) for s in specs.values() if store.get(ctx, subnet_key(space, s)) is not None}
    print(f"measuring {len(specs)} distinct subnets ({len(before)} already in {_rel(args.store)})", flush=True)
    measured, eval_cmd, eval_s = evaluate(space, specs, args)
    n_val = len(open_dataset(args.data, ck["image_size"], args.data_seed))

    # 3. the rows
    rows = []
    for lut in args.luts:
        for seed in args.seeds:
            for name, ms in limits[lut].items():
                r_sub = space.released[name]
                wins = {o: space.from_dict(found[(lut, seed, o)][name]["subnet"]) for o in OBJECTIVES}
                subs = [r_sub, wins["accuracy"], wins["macs"]]
                pred = [float(x) for x in predictor.predict(space, subs)]
                row: dict[str, Any] = {"lut": lut_label(lut), "seed": seed, "released_name": name, "limit_ms": ms}
                for key, sub, p in zip(("released", "accuracy", "macs"), subs, pred):
                    m = measured[subnet_key(space, sub)]
                    lat = ms if key == "released" else found[(lut, seed, key)][name]["latency_ms"]
                    row[key] = {"subnet": sub.to_dict(space.stage_names), "latency_ms": lat, "predicted_top1": p,
                                "measured_top1": m["top1"], "mmacs": m["mmacs"], "params_m": m["params_m"],
                                "store_id": m["id"], "was_in_store": subnet_key(space, sub) in before}
                if abs(row["accuracy"]["predicted_top1"] - found[(lut, seed, "accuracy")][name]["score"]) > 1e-9:
                    raise RuntimeError("the accuracy winner's score is not the predictor's top-1: predictor mismatch")
                rows.append(row)

    # 4. provenance: which of these subnets the predictor was fitted on / held out
    labels = {f"{r['lut']}/{r['released_name']}/s{r['seed']}/{k}": subnet_key(space, space.from_dict(r[k]["subnet"]))
              for r in rows for k in ("accuracy", "macs")}
    labels.update({name: subnet_key(space, s) for name, s in space.released.items()})
    check = provenance_check(args.store, ctx, prov, labels)
    winners_in = [x for x in check["in_fit"] + check["in_test"] if x not in space.released]
    released_in_fit = [n for n in space.released if n in check["in_fit"]]
    released_in_test = [n for n in space.released if n in check["in_test"]]
    fitted = check.pop("fitted_keys")
    overlap = {seed: initial_draws_overlap(space, fitted, seed, args.population) for seed in args.seeds}
    check["initial_draws_overlap"] = overlap
    named = {subnet_key(space, s) for s in (space.min_subnet(), space.max_subnet(), *space.released.values())}
    n_named = len(fitted & named)
    n_random = initial_draws_overlap(space, fitted - named, hold_seed := prov.get("holdout", {}).get("seed", 0),
                                     10 * len(fitted))
    check["composition"] = {"named": n_named, "random_draws": n_random, "other": len(fitted) - n_named - n_random}
    acc_in = [x for x in winners_in if x.endswith("/accuracy")]
    macs_in = [x for x in winners_in if x.endswith("/macs")]
    print(f"predictor provenance: fitted on {check['n_fit']} store ids, {check['n_test']} held out; same checkpoint "
          f"as --checkpoint: {check['same_checkpoint']}")
    print(f"check: winners among the predictor's fitted or held-out subnets: {sorted(winners_in) or 'none'}; "
          f"released in its fit set: {released_in_fit or 'none'}; held out: {released_in_test or 'none'}")
    print("the predictor's fitted + held-out subnets among each search seed's initial random draws: "
          + ", ".join(f"seed {k}: {v} of {len(fitted)}" for k, v in overlap.items()))

    # 5. print, write
    head = ("| LUT | R | limit ms | R pred | R meas | acc-winner ms | acc pred | acc meas | macs-winner ms | "
            "macs MMACs (R's) | macs pred | macs meas |" + (" seed |" if len(args.seeds) > 1 else ""))
    sep = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if len(args.seeds) > 1 else "")

    def pc(x: float) -> str:
        return f"{100 * x:.1f}"

    def mark(label: str) -> str:
        return "†" if label in check["in_fit"] else "‡" if label in check["in_test"] else ""

    table = [head, sep]
    for r in rows:
        R, a, m = r["released"], r["accuracy"], r["macs"]
        lab = f"{r['lut']}/{r['released_name']}/s{r['seed']}/"
        r["accuracy"]["in_predictor_data"], r["macs"]["in_predictor_data"] = mark(lab + "accuracy"), mark(lab + "macs")
        table.append(f"| {r['lut']} | {r['released_name']}{mark(r['released_name'])} | {r['limit_ms']:.2f} | "
                     f"{pc(R['predicted_top1'])} | {pc(R['measured_top1'])} | {a['latency_ms']:.2f} | "
                     f"{pc(a['predicted_top1'])}{a['in_predictor_data']} | {pc(a['measured_top1'])} | "
                     f"{m['latency_ms']:.2f} | {m['mmacs']:.0f} ({R['mmacs']:.0f}) | "
                     f"{pc(m['predicted_top1'])}{m['in_predictor_data']} | {pc(m['measured_top1'])} |"
                     + (f" {r['seed']} |" if len(args.seeds) > 1 else ""))
    print("\n".join(table))

    reading = summarise(rows, n_val, args.luts)
    for line in reading:
        print(line)
    s = runs[0]["settings"]
    png, js = args.out.with_suffix(".png"), args.out.with_suffix(".json")
    plot(rows, [lut_label(x) for x in args.luts], png)
    comp = check["composition"]
    pred_line = (
        f"Accuracy predictor `{_rel(args.predictor)}` ({predictor.model_}): fitted on {check['n_fit']} subnets of "
        f"the store, {check['n_test']} more held out (their store ids are in its provenance and in the .json): "
        f"{comp['named']} named ones (min, max, released), {comp['random_draws']} random draws of "
        f"`random.Random({hold_seed})` (`nas.evaluate --sample`) and {comp['other']} other subnets the store held "
        "(e.g. an earlier run's search winners). Of the released subnets, "
        f"{', '.join(released_in_fit) or 'none'} were in its fit set (marked †: predicted in-sample) and "
        f"{', '.join(released_in_test) or 'none'} held out (‡). **Check: "
        + ("none of the accuracy-objective winners" if not acc_in else f"{len(acc_in)} accuracy-objective winner rows")
        + " is among the subnets the predictor was fitted on or tested on**"
        + (f" ({', '.join(sorted(acc_in))})" if acc_in else "")
        + (f"; of the macs-objective winners, {len(macs_in)} rows are (marked † or ‡ in the table: their predicted "
           "top-1 is in-sample or held-out, not a prediction for a new subnet)" if macs_in else
           "; nor is any macs-objective winner")
        + f". Predictor made from the same checkpoint as --checkpoint: {check['same_checkpoint']}. "
        "Note: a search with seed s starts from `space.sample` draws of `random.Random(s)`, the very draws "
        "`nas.evaluate --sample K --seed s` evaluated; the predictor's subnets among each search seed's "
        f"{args.population} initial draws: " + ", ".join(f"seed {k}: {v} of {len(fitted)}" for k, v in overlap.items())
        + " (with seed 0 the predictor's own random subnets compete in the search, where an in-sample prediction "
        "could win).")
    text = "\n".join([
        "# Searching for predicted accuracy under released subnets' latencies (issue 14, point 5)", "",
        f"Command: `{command}`", "",
        f"Run at {started:%Y-%m-%d %H:%M} UTC on {platform.node() or 'this host'} ({os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}); total {time.perf_counter() - _T0:.0f} s, of which measuring "
        f"{len(specs)} distinct subnets took {eval_s:.0f} s ({len(before)} read back from the store).", "",
        f"Checkpoint `{_rel(args.checkpoint)}` (step {ck['step']}, resolution scale {ck['resolution_scale']}: "
        f"images of {ck['image_size']} px at most). Search settings: population {s['population']}, parents "
        f"{s['parents']}, generations {s['generations']}, seeds {' '.join(map(str, args.seeds))}; per LUT and "
        "objective one `nas.search` family whose limits are the released subnets' predicted latencies ("
        + "; ".join(f"{lut_label(r['lut'])}: {r['latency']}" for r in runs if r['objective'] == 'macs'
                    and r['seed'] == args.seeds[0]) + ").", "",
        pred_line, "",
        f"Measured: top-1 on {args.data} ({n_val} images) after BN re-calibration on {args.calib}, through "
        f"`{' '.join(eval_cmd)}` (store `{_rel(args.store)}`, so the demonstration's own results are reused). "
        f"Top-1 in %; binomial SE of one measured top-1 at 90% is {100 * se(0.9, n_val):.1f} points, of a "
        f"difference between two subnets about {100 * math.sqrt(2) * se(0.9, n_val):.1f} (both on the same "
        "images, so this overstates it where their errors coincide).", "",
        "Columns: R = released subnet, limit = R's predicted latency; pred = the accuracy predictor's top-1, "
        "meas = measured; acc-winner = best subnet of objective `accuracy`, macs-winner = of objective `macs` "
        "(its MMACs, R's in brackets).", "",
        *table, "",
        "## Reading", "",
        *reading, "",
        "Scale of the evidence: one briefly trained supernet at a quarter of the resolution, 360 validation "
        f"images (a difference of one image is {100 / n_val:.2f} points), and a predictor fitted on {check['n_fit']} "
        "subnets; the winners' measured top-1 is the honest figure, their predicted top-1 the one the search "
        "maximised.", "",
        "Search runs: " + "; ".join(f"{lut_label(r['lut'])} {r['objective']} seed {r['seed']}: {r['wall_s']:.1f} s "
                                      f"({r['evaluated']} subnets scored)" for r in runs) + ".", "",
        f"Plot: `{_rel(png)}`; every figure and subnet: `{_rel(js)}`.", ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    js.write_text(json.dumps({"command": command, "started_utc": started.isoformat(timespec="seconds"),
                              "checkpoint": {"path": _rel(args.checkpoint), **ck, "sha256": ctx.checkpoint},
                              "predictor": {"path": _rel(args.predictor), "model": predictor.model_,
                                            "provenance": prov},
                              "store": _rel(args.store), "data": args.data, "calibration": args.calib, "n_val": n_val,
                              "luts": [_rel(x) for x in args.luts], "seeds": args.seeds, "searches": runs,
                              "evaluate": {"command": eval_cmd, "seconds": round(eval_s, 1), "subnets": len(specs),
                                           "already_stored": len(before)},
                              "provenance_check": check, "rows": rows, "reading": reading}, indent=1))
    print(f"wrote {_rel(args.out)}, {_rel(js)}, {_rel(png)}")
    return 0


def summarise(rows: list[dict], n_val: int, luts: list[str]) -> list[str]:
    """Figures for the reading, per LUT: measured and predicted gains of each objective's winner over R."""
    out = []
    for lut in [lut_label(x) for x in luts]:
        mine = [r for r in rows if r["lut"] == lut]
        for key in OBJECTIVES:
            d_meas = [r[key]["measured_top1"] - r["released"]["measured_top1"] for r in mine]
            d_pred = [r[key]["predicted_top1"] - r["released"]["predicted_top1"] for r in mine]
            noise = [2 * math.sqrt(se(r[key]["measured_top1"], n_val) ** 2 + se(r["released"]["measured_top1"],
                                                                                 n_val) ** 2) for r in mine]
            better = sum(d > 0 for d in d_meas)
            worse = sum(d < 0 for d in d_meas)
            sig_b = sum(d > z for d, z in zip(d_meas, noise))
            sig_w = sum(d < -z for d, z in zip(d_meas, noise))
            out.append(f"- {lut}, objective `{key}`: the winner's measured top-1 is above R's in {better} of "
                       f"{len(mine)} rows, below in {worse} (mean {100 * _mean(d_meas):+.1f} points, from "
                       f"{100 * min(d_meas):+.1f} to {100 * max(d_meas):+.1f}); beyond 2 SE of the difference: "
                       f"{sig_b} above, {sig_w} below. Predicted gain over R: mean {100 * _mean(d_pred):+.1f} points.")
        use = {k: _mean([r[k]["latency_ms"] / r["limit_ms"] for r in mine]) for k in OBJECTIVES}
        out.append(f"- {lut}: share of the limit used, mean: accuracy winners {100 * use['accuracy']:.0f}%, macs "
                   f"winners {100 * use['macs']:.0f}%; MMACs vs R's, mean ratio: accuracy winners "
                   f"{_mean([r['accuracy']['mmacs'] / r['released']['mmacs'] for r in mine]):.2f}, macs winners "
                   f"{_mean([r['macs']['mmacs'] / r['released']['mmacs'] for r in mine]):.2f}.")
        opt = [r["accuracy"]["predicted_top1"] - r["accuracy"]["measured_top1"] for r in mine]
        head = [r["accuracy"]["measured_top1"] - r["macs"]["measured_top1"] for r in mine]
        out.append(f"- {lut}: the accuracy winners' predicted top-1 exceeds their measured one by "
                   f"{100 * _mean(opt):+.1f} points on average (the predictor's optimism on the subnets it was chosen "
                   f"to rank first); accuracy vs macs winner, measured: mean {100 * _mean(head):+.1f} points.")
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


_T0 = time.perf_counter()

if __name__ == "__main__":
    sys.exit(main())
