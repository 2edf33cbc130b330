#!/usr/bin/env python3
"""A `benchmark_model`-compatible command for Linux devices with Python (ai-edge-litert).

It accepts the TFLite benchmark tool's flags that the profiler passes and prints its output format
(per-loop `count=... avg=... std=...` lines and the `Inference timings in us:` summary), so the
`tflite-benchmark` runner and its parser run unchanged where no native binary exists. Real timings:
each run is one Interpreter.invoke() timed with perf_counter_ns. Unknown flags are reported as
`Unconsumed cmdline flags`, as the real tool does.
"""
from __future__ import annotations

import statistics
import sys
import time

KNOWN = {"graph", "num_threads", "warmup_runs", "num_runs", "min_secs", "warmup_min_secs", "max_secs",
         "use_xnnpack", "use_gpu", "use_nnapi"}


def _flags(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    flags, unknown = {}, []
    for a in argv:
        name, _, value = a.lstrip("-").partition("=")
        (flags.__setitem__(name, value) if a.startswith("--") and name in KNOWN else unknown.append(a))
    return flags, unknown


def _loop(run, count: int, min_secs: float, max_secs: float) -> list[int]:
    """Whole microseconds per run, as benchmark_model keeps them (int64 us): every statistic printed comes from
    the same values, so min <= avg <= max holds as it does in the real tool's output."""
    samples: list[int] = []
    start = time.perf_counter()
    while len(samples) < count or (time.perf_counter() - start) < min_secs:
        t = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - t) // 1000)
        if time.perf_counter() - start > max_secs:
            break
    return samples


def _stats_line(s: list[int]) -> str:
    if len(set(s)) == 1:
        return f"count={len(s)} curr={s[-1]:.0f}(all same)"
    return (f"count={len(s)} first={s[0]:.0f} curr={s[-1]:.0f} min={min(s):.0f} max={max(s):.0f} "
            f"avg={statistics.fmean(s):g} std={statistics.pstdev(s):.0f}")


def main(argv: list[str]) -> int:
    flags, unknown = _flags(argv)
    print("INFO: STARTING!")
    if unknown:
        print(f"WARN: Unconsumed cmdline flags: {' '.join(unknown)}")
    graph = flags.get("graph")
    if not graph:
        print("ERROR: Please specify the name of your TF Lite input file with --graph")
        return 1
    threads = int(flags.get("num_threads", "1"))
    warmup, runs = int(flags.get("warmup_runs", "1")), int(flags.get("num_runs", "50"))
    print(f"INFO: Graph: [{graph}]\nINFO: Num threads: [{threads}]")
    if flags.get("use_gpu", "false") == "true" or flags.get("use_nnapi", "false") == "true":
        print("ERROR: this benchmark tool runs the CPU only (no GPU or NNAPI delegate on this device)")
        return 1
    t0 = time.perf_counter_ns()
    try:
        import numpy as np
        from ai_edge_litert import interpreter as litert

        resolver = (litert.OpResolverType.AUTO if flags.get("use_xnnpack", "true") != "false"
                    else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp = litert.Interpreter(model_path=graph, num_threads=threads, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
        rng = np.random.default_rng(0)
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
    except Exception as e:  # noqa: BLE001 - reported the way the real tool reports a bad model
        print(f"ERROR: Failed to load model {graph}: {e}")
        return 1
    init_us = (time.perf_counter_ns() - t0) / 1e3
    print(f"INFO: Initialized session in {init_us / 1e3:.3f}ms.")
    max_secs = float(flags.get("max_secs", "150"))
    print(f"INFO: Running benchmark for at least {warmup} iterations and at least "
          f"{flags.get('warmup_min_secs', '0.5')} seconds but terminate if exceeding {max_secs:g} seconds.")
    w = _loop(interp.invoke, warmup, float(flags.get("warmup_min_secs", "0.5")), max_secs) if warmup else []
    if w:
        print(f"INFO: {_stats_line(w)}")
    print(f"INFO: Running benchmark for at least {runs} iterations and at least "
          f"{flags.get('min_secs', '1')} seconds but terminate if exceeding {max_secs:g} seconds.")
    r = _loop(interp.invoke, runs, float(flags.get("min_secs", "1")), max_secs)
    print(f"INFO: {_stats_line(r)}")
    first = (w or r)[0]
    print(f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {first:.0f}, "
          f"Warmup (avg): {statistics.fmean(w) if w else first:g}, Inference (avg): {statistics.fmean(r):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
