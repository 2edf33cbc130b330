"""Supernet training throughput on this machine: images/s with 1 and 2 torchrun ranks (gloo, CPU).

    python benchmarks/bench_train_throughput.py [--steps 6] [--batch-size 16] [--data synthetic:256:10]

Each configuration runs `torchrun --nproc_per_node=N -m nas.train` for S and for 2S steps from scratch;
throughput is S x global batch / (time(2S) - time(S)), so process start, imports and the final
evaluation cancel out. Scaling efficiency = (images/s with 2 ranks) / (2 x images/s with 1 rank).
Writes benchmarks/results/train_throughput.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(ranks: int, steps: int, args: argparse.Namespace) -> float:
    """Wall seconds of one torchrun training job (its own fresh checkpoint path)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", "--standalone",
               "-m", "nas.train", "--data", args.data, "--steps", str(steps), "--batch-size", str(args.batch_size),
               "--subnets-per-step", "2", "--eval", "min", "--checkpoint", str(Path(tmp) / "c.pt"),
               "--checkpoint-every", str(10 * steps)]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks))}
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=16, help="global batch")
    ap.add_argument("--data", default="synthetic:256:10")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.md")
    args = ap.parse_args()
    rows = {}
    for ranks in (1, 2):
        short, long = run(ranks, args.steps, args), run(ranks, 2 * args.steps, args)
        rows[ranks] = args.steps * args.batch_size / (long - short)
        print(f"{ranks} rank(s): {rows[ranks]:.1f} images/s ({short:.1f} s for {args.steps} steps, "
              f"{long:.1f} s for {2 * args.steps})", flush=True)
    eff = rows[2] / (2 * rows[1])
    text = (f"# Supernet training throughput, this host ({os.cpu_count()} CPU cores, gloo)\n\n"
            f"`python benchmarks/bench_train_throughput.py --steps {args.steps} --batch-size {args.batch_size} "
            f"--data {args.data}`: the default step (max, min and 2 sampled subnets), global batch {args.batch_size}, "
            "OMP threads = cores / ranks; images/s from the difference of a run of S and one of 2S steps.\n\n"
            "| ranks | images/s |\n|---:|---:|\n" + "".join(f"| {r} | {v:.1f} |\n" for r, v in rows.items())
            + f"\nScaling efficiency (2 ranks vs 2 x 1 rank): {100 * eff:.0f}%.\n")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
