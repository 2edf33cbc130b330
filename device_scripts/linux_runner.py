#!/usr/bin/env python3
"""Benchmark one model on a Linux device with Python; prints one JSON line with raw samples.

Usable by hand:  python3 linux_runner.py --model block.tflite --threads 1 --warmup 10 --runs 50
TFLite through ai-edge-litert (fallback: tflite_runtime), ONNX through onnxruntime. Each sample is
one invoke()/run() timed with perf_counter_ns, in microseconds. Inputs are seeded random data.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time


def _tflite(path: str, threads: int, xnnpack: bool):
    try:
        from ai_edge_litert import interpreter as litert
        version = _version("ai-edge-litert")
        runtime = "ai-edge-litert"
    except ImportError:  # older devices
        from tflite_runtime import interpreter as litert  # type: ignore[no-redef]
        version = _version("tflite-runtime")
        runtime = "tflite-runtime"
    resolver = (litert.OpResolverType.AUTO if xnnpack
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp = litert.Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    import numpy as np

    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
    return interp.invoke, runtime, version


def _onnx(path: str, threads: int):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
             for i in sess.get_inputs()}
    return (lambda: sess.run(None, feeds)), "onnxruntime", ort.__version__


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - a version is informative only
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--no-xnnpack", action="store_true", help="TFLite reference kernels instead of XNNPACK")
    args = ap.parse_args()
    t0 = time.perf_counter_ns()
    try:
        if args.model.endswith(".onnx"):
            run, runtime, version = _onnx(args.model, args.threads)
        else:
            run, runtime, version = _tflite(args.model, args.threads, not args.no_xnnpack)
    except Exception as e:  # noqa: BLE001 - reported as JSON for the host to raise on
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    init_us = (time.perf_counter_ns() - t0) / 1e3
    for _ in range(args.warmup):
        run()
    samples = []
    for _ in range(args.runs):
        t = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - t) / 1e3)
    print(json.dumps({
        "runner": "linux-python", "runtime": runtime, "runtime_version": version,
        "python": platform.python_version(), "threads": args.threads, "init_us": init_us,
        "warmup_runs": args.warmup, "samples_us": samples,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
