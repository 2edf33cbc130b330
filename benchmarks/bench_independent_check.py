"""An independent check of whole-network prediction, the way an outside user would make it.

    python benchmarks/bench_independent_check.py --lut LUT [--n 20] [--seed 7] [--sampler complexity] [--blocks 6]

Draws `--n` subnets with a sampler other than validate's (`nas.sampling`: "complexity" walks ElasticViT's
MACs windows, "uniform"), writes each as a subnet JSON, exports it with the `python -m nas.export` command,
times it with a plain ai-edge-litert loop in this process (not the profiler's runner: one thread, XNNPACK,
seeded random input, 5 warm-up + 30 timed invokes, median; 3 passes in shuffled order, the median pass) and
predicts it with the `python -m predictor.predict` command from LUT (what `predictor.validate --lut-out`
wrote). `--blocks K` also times the blocks of the first K subnets alone with the same loop, to split a
network's error into its entries' error (LUT sum / blocks timed now) and the composition's (measured
network / blocks timed now, against predicted / LUT sum). Writes benchmarks/results/independent_check.md
and .json. The LUT's timings come from another period than this run's: on a shared host that alone can
move every network by several percent, so run it right after the LUT is made and say when each was made.
When the LUT was timed paired (its meta keeps the reference network and its level), the reference network is
timed in every pass with the same loop: its ratio to the LUT's level says how far this period's level is from
the LUT's (reported beside the figures, never applied to them; `--validation REPORT` gives the level for a LUT
written before LUTs kept it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nas.export import export_block
from nas.registry import create_space
from nas.sampling import create_sampler
from nas.specs import resolve_subnet
from predictor import metrics
from predictor.lut_io import open_lut
from profiler.paired import reference_model

RESULTS = Path(__file__).resolve().parent / "results"


def time_ms(path: Path, warmup: int = 5, runs: int = 30) -> float:
    """Median of `runs` invokes of a .tflite file, one thread, XNNPACK (the runtime's default delegate)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
    for _ in range(warmup):
        it.invoke()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        it.invoke()
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


def timed_passes(paths: list[Path], passes: int = 3) -> tuple[list[float], float]:
    """Each file's median pass (each pass in its own shuffled order) and the mean CV between passes."""
    got: dict[Path, list[float]] = {p: [] for p in paths}
    for n in range(passes):
        for p in random.Random(n).sample(paths, len(paths)):
            got[p].append(time_ms(p))
    cv = float(np.mean([np.std(v) / np.mean(v) for v in got.values()]))
    return [statistics.median(got[p]) for p in paths], cv


def predict_cli(lut: str, specs: list[Path], plain_sum: bool) -> list[float]:
    """The `python -m predictor.predict` command's latency_ms per subnet JSON (with `--plain-sum`: the alone sum)."""
    cmd = [sys.executable, "-m", "predictor.predict", "--lut", lut, *(["--plain-sum"] if plain_sum else []),
           *[a for p in specs for a in ("--subnet", str(p))]]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    got = [float(json.loads(line)["latency_ms"]) for line in out.splitlines() if line.startswith("{")]
    if len(got) != len(specs):
        raise SystemExit(f"predictor.predict printed {len(got)} lines for {len(specs)} subnets")
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", required=True, help="a LUT file written by predictor.validate --lut-out")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sampler", default="complexity", choices=["complexity", "uniform"])
    ap.add_argument("--blocks", type=int, default=0, help="also time the blocks of this many subnets alone")
    ap.add_argument("--validation", type=Path, help="predictor.validate's report of the LUT: its reference level, "
                    "for a LUT that does not keep it")
    ap.add_argument("--work", type=Path, help="folder for the subnet JSONs and models (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=RESULTS / "independent_check")
    args = ap.parse_args()
    space = create_space("elasticvit")
    work = args.work or Path(tempfile.mkdtemp(prefix="indep-"))
    work.mkdir(parents=True, exist_ok=True)
    subnets = create_sampler(args.sampler, space).sample_step(random.Random(args.seed), args.n, 0.5)
    specs = []
    for i, s in enumerate(subnets):
        p = work / f"s{args.seed}_{i}.json"
        p.write_text(json.dumps(s.to_dict(space.stage_names)))
        specs.append(p)
    t0 = time.time()
    for p in specs:
        if not p.with_suffix(".tflite").exists():
            subprocess.run([sys.executable, "-m", "nas.export", "--subnet", str(p), "--format", "tflite", "--out",
                            str(p.with_suffix(".tflite"))], check=True, capture_output=True)
    print(f"exported {len(specs)} subnets with nas.export in {time.time() - t0:.0f} s", flush=True)
    level = open_lut(args.lut, space).meta.get("paired")
    if level is None and args.validation:  # LUTs written before the LUT kept its level: validate's report has it
        level = json.loads(args.validation.read_text()).get("paired")
    models = [p.with_suffix(".tflite") for p in specs]
    reference = reference_model(space, subnets[0], "tflite") if level else None
    if reference is not None and reference.name != level["reference"]:
        raise SystemExit(f"the LUT was timed against {level['reference']}, this code's reference is {reference.name}")
    measured, pass_cv = timed_passes(models + ([reference] if reference else []))
    level_ratio = measured.pop() / level["reference_ms"] if reference else None
    predicted, plain = predict_cli(args.lut, specs, False), predict_cli(args.lut, specs, True)
    summary = metrics.summary(predicted, measured)
    rows = []
    for i, (p, s, m, pr, pl) in enumerate(zip(specs, subnets, measured, predicted, plain)):
        row = {"subnet": p.name, "resolution": s.resolution, "measured_ms": m, "predicted_ms": pr, "lut_plain_ms": pl}
        if i < args.blocks:  # the blocks alone, now, with the same loop
            blocks = space.blocks_of(resolve_subnet(space, str(p)))
            keys = list(dict.fromkeys(b.key for b in blocks))
            files = {b.key: export_block(b, "tflite") for b in blocks}
            alone_ms, _ = timed_passes([files[k] for k in keys])
            by_key = dict(zip(keys, alone_ms))
            row["alone_now_ms"] = float(sum(by_key[b.key] for b in blocks))
        rows.append(row)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = {"lut": args.lut, "sampler": args.sampler, "seed": args.seed, "n": len(rows), "when": when,
              "pass_cv": pass_cv, "reference": level, "level_ratio": level_ratio,
              "under_predicted": int(sum(r["predicted_ms"] < r["measured_ms"] for r in rows)),
              **summary, "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [f"# Independent check: {len(rows)} subnets from the {args.sampler!r} sampler (seed {args.seed})", "",
             f"`python benchmarks/bench_independent_check.py --lut {args.lut} --n {args.n} --seed {args.seed} "
             f"--sampler {args.sampler} --blocks {args.blocks}`, run {when}; timed by a plain ai-edge-litert loop "
             f"(3 passes, CV between passes {100 * pass_cv:.1f}%), predicted by `predictor.predict`.", "",
             f"**±10% {100 * summary['acc10']:.0f}%, ±5% {100 * summary['acc5']:.0f}%, "
             f"MAPE {100 * summary['mape']:.1f}%**; "
             f"under-predicted {report['under_predicted']} of {len(rows)}; median predicted/measured "
             f"{np.median([r['predicted_ms'] / r['measured_ms'] for r in rows]):.3f}."
             + (f" The LUT's reference network ({level['reference']}) ran {level_ratio:.3f}x its level in the LUT "
                f"({level['reference_ms']:.2f} ms) in this run's loop." if level_ratio else ""), "",
             "| subnet | R | measured ms | predicted ms | error | LUT sum ms | blocks alone now ms | entries "
             "| gap measured | gap predicted |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        extra = ["", "", "", ""]
        if "alone_now_ms" in r:
            a = r["alone_now_ms"]
            extra = [f"{a:.2f}", f"{100 * (r['lut_plain_ms'] / a - 1):+.1f}%", f"{r['measured_ms'] / a:.3f}",
                     f"{r['predicted_ms'] / r['lut_plain_ms']:.3f}"]
        lines.append(f"| {r['subnet']} | {r['resolution']} | {r['measured_ms']:.2f} | {r['predicted_ms']:.2f} | "
                     f"{100 * (r['predicted_ms'] / r['measured_ms'] - 1):+.1f}% | {r['lut_plain_ms']:.2f} | "
                     + " | ".join(extra) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:7]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
