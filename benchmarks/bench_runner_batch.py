"""Does measuring several models per runner command (each in a forked process) change what is measured?

    python benchmarks/bench_runner_batch.py [--n 100] [--seed 7] [--rounds 2]

The linux-python runner measures a batch of models in one command, each in its own forked child of
one Python process that has imported the runtime ("fork"), instead of one process per model ("own").
This times the same random blocks both ways, interleaved in chunks of 10 (own, fork, own, fork ...
for `rounds` rounds; 10 warm-up + 50 timed runs, 1 thread, pinned to one core as the profiler does),
and compares each block's median: fork/own, against the noise floor own/own (the same block
re-timed the same way in the next round). Writes benchmarks/results/runner_batch.md.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNNER = ROOT / "device_scripts" / "linux_runner.py"


def _medians(argv: list[str]) -> list[float]:
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [statistics.median(json.loads(ln)["samples_us"]) for ln in out.splitlines() if ln.startswith("{")]


def _q(x: np.ndarray) -> str:
    return f"{np.median(x):.3f} (p10 {np.percentile(x, 10):.3f}, p90 {np.percentile(x, 90):.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "runner_batch.md")
    args = ap.parse_args()
    from nas.export import export_block
    from nas.registry import create_space
    from profiler.plan import candidate_blocks
    from profiler.prefetch import default_workers, prefetch

    blocks = random.Random(args.seed).sample(list(candidate_blocks(create_space("elasticvit"), [])), args.n)
    convert = partial(export_block, fmt="tflite")
    prefetch(blocks, convert, lambda b: b.key, default_workers())
    paths = [str(convert(b)) for b in blocks]
    base = ["taskset", "1", sys.executable, str(RUNNER), "--threads", "1", "--warmup", "10", "--runs", "50"]
    own = np.zeros((args.n, args.rounds))
    fork = np.zeros((args.n, args.rounds))
    t0 = time.time()
    for r in range(args.rounds):
        for i in range(0, args.n, 10):
            chunk = range(i, min(args.n, i + 10))
            for j in chunk:
                own[j, r] = _medians(base + ["--model", paths[j]])[0]
            fork[list(chunk), r] = _medians(base + sum([["--model", paths[j]] for j in chunk], []))
    noise = own[:, 1] / own[:, 0]
    ratio = fork.mean(1) / own.mean(1)
    types = np.array([b.type for b in blocks])
    lines = ["# Batched runner (forked process per model) vs one process per model, `local`, TFLite 1 thread", "",
             f"{args.n} random ElasticViT blocks (seed {args.seed}), {args.rounds} interleaved rounds, "
             f"{(time.time() - t0) / 60:.1f} min. Per block: median of 50 timed runs.", "",
             "| comparison | median ratio (p10, p90) | mean abs deviation from 1 |", "|---|---|---:|",
             f"| noise floor: own round 2 / own round 1 | {_q(noise)} | {np.mean(np.abs(noise - 1)):.3f} |",
             f"| fork / own (mean of rounds) | {_q(ratio)} | {np.mean(np.abs(ratio - 1)):.3f} |", "",
             "| block type | n | fork / own, median |", "|---|---:|---:|"]
    for t in sorted(set(types)):
        lines.append(f"| {t} | {int(np.sum(types == t))} | {np.median(ratio[types == t]):.3f} |")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
