"""Why a whole network runs slower than the sum of its blocks timed alone (this host, TFLite CPU).

    python benchmarks/bench_network_gap.py [--subnets T1 S1 M] [--runs 30]

For each released subnet: (1) the op types of the exported network against the sum of its exported
blocks' ops (does the converter add layout ops at stage boundaries?); (2) the network's median latency,
the sum of its blocks' medians when each block is timed alone (the profiler's protocol: weights and
activations stay in cache between runs), the sum when the blocks run round-robin, each once in turn
as inside a network, so each finds the cache filled by the others, and the sum when every run starts
from caches flushed by writing a buffer larger than the last-level cache. Every invoke is timed the
same way (one thread, pinned to one core). Writes the table to benchmarks/results/network_gap.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.export import export_block, export_subnet  # noqa: E402
from nas.registry import create_space  # noqa: E402


def _interpreter(path: Path, rng: np.random.Generator):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], rng.random(d["shape"], dtype=np.float32))
    return it


def _op_types(path: Path) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    return Counter(op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details())


def _timed_ms(it) -> float:
    t0 = time.perf_counter()
    it.invoke()
    return (time.perf_counter() - t0) * 1e3


def isolated_ms(it, runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        it.invoke()
    return float(np.median([_timed_ms(it) for _ in range(runs)]))


def round_robin_ms(its: list, runs: int, warmup: int = 5) -> float:
    """Sum over blocks of each block's median when all blocks run once in turn, `runs` rounds."""
    samples = np.empty((runs, len(its)))
    for r in range(warmup + runs):
        for i, it in enumerate(its):
            ms = _timed_ms(it)
            if r >= warmup:
                samples[r - warmup, i] = ms
    return float(np.median(samples, axis=0).sum())


def flushed_ms(it, runs: int, flush: np.ndarray, warmup: int = 5) -> float:
    """Median with every run starting from cold caches (`flush` rewritten before each)."""
    for _ in range(warmup):
        it.invoke()
    samples = []
    for _ in range(runs):
        np.add(flush, 1.0, out=flush)
        samples.append(_timed_ms(it))
    return float(np.median(samples))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="elasticvit")
    ap.add_argument("--subnets", nargs="+", default=["T1", "S1", "M"])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--flush-mb", type=int, default=96, help="bytes written to flush caches (> last-level cache)")
    ap.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the last one)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "network_gap.md")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core if args.core is not None else max(os.sched_getaffinity(0))})
    rng = np.random.default_rng(0)
    flush = np.zeros(args.flush_mb * 2**20 // 8)
    space = create_space(args.space)
    rows = []
    for name in args.subnets:
        sub = space.subnet(name)
        net_path = export_subnet(sub, "tflite")
        block_paths = [export_block(b, "tflite") for b in space.blocks_of(sub)]
        net_ops = _op_types(net_path)
        block_ops = sum((_op_types(p) for p in block_paths), Counter())
        diff = ", ".join(f"{k} {net_ops[k] - block_ops[k]:+d}" for k in sorted(set(net_ops) | set(block_ops))
                         if net_ops[k] != block_ops[k]) or "none"
        net = _interpreter(net_path, rng)
        blocks = [_interpreter(p, rng) for p in block_paths]
        net_ms = isolated_ms(net, args.runs)
        alone_ms = sum(isolated_ms(b, args.runs) for b in blocks)
        rr_ms = round_robin_ms(blocks, args.runs)
        cold_ms = sum(flushed_ms(b, args.runs, flush) for b in blocks)
        rows.append(f"| {name} | {len(blocks)} | {sum(net_ops.values())} / {sum(block_ops.values())} ({diff}) | "
                    f"{net_ms:.2f} | {alone_ms:.2f} ({net_ms / alone_ms - 1:+.0%}) | "
                    f"{rr_ms:.2f} ({net_ms / rr_ms - 1:+.0%}) | {cold_ms:.2f} ({net_ms / cold_ms - 1:+.0%}) |")
        print(rows[-1], flush=True)
    table = "\n".join([
        f"# Network vs sum of blocks, {args.space}, this host (TFLite CPU, 1 thread, {args.runs} runs)", "",
        "| subnet | blocks | ops network / blocks (difference) | network ms | blocks alone ms (network vs) "
        "| blocks round-robin ms (network vs) | blocks cold ms (network vs) |",
        "|---|---:|---|---:|---:|---:|---:|", *rows, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
