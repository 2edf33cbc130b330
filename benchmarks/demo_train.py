"""End-to-end training demonstration at this machine's scale: a real labelled image set, 2 torchrun ranks on CPU.

    python benchmarks/demo_train.py [--steps 200] [--sample 200] [--work measurements/demo]

1. `torchrun --nproc_per_node=2 -m nas.train --data digits:train --val digits:val --resolution-scale 0.25 ...`
   trains ElasticViT's supernet on scikit-learn's handwritten digits (1,437 train / 360 val real 8x8 scans,
   shipped inside the scikit-learn wheel; read as PNG folders through the same pipeline as ImageNet),
   every subnet at a quarter of its resolution (32-64 px) so that minutes of 2 CPU cores train it.
2. `python -m nas.evaluate` takes the min, max and released subnets and `--sample` random ones (top-1 on
   digits:val after BN re-calibration on digits:train), and fits the accuracy predictor on 70% of the
   evaluated subnets, reporting its Spearman and Kendall correlation on the other 30% (a seeded split; the
   predictor's model is chosen by cross-validation inside the 70%).
Both steps resume: the checkpoint and the accuracy store live in --work. Writes
benchmarks/results/train_demo.md and train_demo.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32, help="global batch")
    ap.add_argument("--sample", type=int, default=200, help="random subnets evaluated for the accuracy predictor")
    ap.add_argument("--work", type=Path, default=ROOT / "measurements" / "demo")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_demo.md")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt, train_json, eval_json = args.work / "supernet.pt", args.work / "train.json", args.work / "evaluate.json"
    train_cmd = ["torchrun", "--nproc_per_node=2", "--standalone", "-m", "nas.train", "--data", "digits:train",
                 "--val", "digits:val", "--resolution-scale", "0.25", "--crop-scale-min", "0.35", "--no-hflip",
                 "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--checkpoint", str(ckpt),
                 "--checkpoint-every", "25", "--eval", "min", "max", "--json", str(train_json)]
    eval_cmd = [sys.executable, "-m", "nas.evaluate", "--checkpoint", str(ckpt), "--data", "digits:val",
                "--calib", "digits:train", "--subnet", "min", "--subnet", "max", *sum((["--subnet", n] for n in
                                                                                       _released()), []),
                "--sample", str(args.sample), "--store", str(args.work / "accuracy.sqlite"),
                "--fit-predictor", str(args.work / "accuracy_predictor.json"), "--json", str(eval_json)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core per rank
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", *train_cmd[1:]], cwd=ROOT, env=env, check=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(eval_cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    eval_s = time.perf_counter() - t0
    train, ev = json.loads(train_json.read_text()), json.loads(eval_json.read_text())
    text = report(args, train, ev, train_s, eval_s, train_cmd, eval_cmd)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"train": {k: v for k, v in train.items() if k != "log"},
                                                         "evaluate": ev}, indent=1))
    return 0


def _released() -> list[str]:
    from nas.registry import create_space

    return list(create_space("elasticvit").released)


def _rel(cmd: list[str]) -> str:
    return " ".join(str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else
                    ("python" if c == sys.executable else c) for c in cmd)


def report(args: argparse.Namespace, train: dict, ev: dict, train_s: float, eval_s: float,
           train_cmd: list[str], eval_cmd: list[str]) -> str:
    rows = ev["results"]
    named = [r for r in rows if not r["name"].startswith("sample-")]
    sampled = [r["top1"] for r in rows if r["name"].startswith("sample-")]
    n_val = 360
    se = math.sqrt(0.9 * 0.1 / n_val)
    pred = ev.get("predictor", {})
    lines = [
        "# Supernet training demonstration (this host: 2 CPU cores, 2 gloo ranks)\n",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python benchmarks/demo_train.py --steps "
        f"{args.steps} --batch-size {args.batch_size} --sample {args.sample}`, which ran:\n",
        f"    {_rel(train_cmd)}", f"    {_rel(eval_cmd)}\n",
        "Data: scikit-learn's handwritten digits (real 8x8 scans, 10 classes; 1,437 train / 360 val, stratified, "
        "seed 0), shipped inside the scikit-learn wheel. Every subnet trains and is evaluated at a quarter of its "
        "resolution (32-64 px instead of 128-256): the figures say how the pipeline ranks subnets at CPU scale, "
        "not what they reach on ImageNet.\n",
        f"Training: {train['steps_done']} steps of global batch {args.batch_size} "
        f"({train['steps_done'] * args.batch_size / 1437:.1f} epochs) in {sum(train['log']['seconds']) / 60:.1f} min "
        f"of steps (this invocation's torchrun: {train_s / 60:.1f} min wall; a finished checkpoint only resumes), "
        f"{train['images_per_s']} images/s; max subnet's last cross-entropy {train['ce_max_last']:.3f}; "
        f"{train['skipped_images_rank0']} unreadable images skipped.\n",
        f"## Top-1 on digits:val (360 images; binomial SE at 90% is {100 * se:.1f} points)\n",
        "| subnet | MMACs | params M | top-1 |", "|---|---:|---:|---:|",
        *[f"| {r['name']} | {r['mmacs']:.0f} | {r['params_m']:.2f} | {100 * r['top1']:.1f}% |" for r in named],
    ]
    if sampled:
        lines += ["", f"{len(sampled)} random subnets: top-1 from {100 * min(sampled):.1f}% to "
                  f"{100 * max(sampled):.1f}% (median {100 * sorted(sampled)[len(sampled) // 2]:.1f}%). "
                  f"Evaluation of all {len(rows)} subnets: {eval_s / 60:.1f} min."]
    if pred:
        lines += ["", "## Accuracy predictor (held-out subnets)\n",
                  f"Fitted on {pred['n_fit']} evaluated subnets, scored on {pred['n_test']} it was not fitted on "
                  f"(a seeded split of the subnets above; the model chosen by cross-validation on the fitted ones): "
                  f"Spearman {pred['spearman']:.2f}, Kendall {pred['kendall']:.2f}; model {pred.get('model')}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
