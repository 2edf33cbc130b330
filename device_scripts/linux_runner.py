#!/usr/bin/env python3
"""Benchmark models on a Linux device with Python; prints one JSON line per model with raw samples.

Usable by hand:  python3 linux_runner.py --model block.tflite --threads 1 --warmup 10 --runs 50
TFLite through ai-edge-litert (fallback: tflite_runtime), ONNX through onnxruntime. Each sample is
one invoke()/run() timed with perf_counter_ns, in microseconds. Inputs are seeded random data.

With several --model, the runtime is imported once and each model is measured in its own forked
child, one after another: the same fresh process per model as one invocation each (the interpreter,
its arena and caches are new), without paying ~0.15 s of Python start-up and imports per model.
Each line then names its "model"; "process" says which way it ran ("own" or "fork").

With --max-spread S --max-attempts N, a model whose samples spread more than S ((p90 - p10) / median,
as the host's profiler.protocol.sample_stats computes it) is warmed up and timed again, up to N times
in all, in the same process; the attempt with the smallest spread is reported, with "attempts".

With --reference R, every model is timed alternately with the model R, loaded beside it in the same process, in
blocks of a few invokes each (see _time): "reference_samples_us" holds R's timings, pair by pair, and the spread
judged is that of the per-pair ratios. On a shared machine a disturbance slows both alike, so the ratio keeps
the model and drops the period (the host turns it back into a latency with R's level).
"""
from __future__ import annotations

import argparse
import json
import os
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


def _import_runtime(onnx: bool) -> None:
    """Load the runtime's modules before forking, so children start with them loaded."""
    if onnx:
        import onnxruntime  # noqa: F401
    else:
        try:
            from ai_edge_litert import interpreter  # noqa: F401
        except ImportError:
            from tflite_runtime import interpreter  # type: ignore[no-redef] # noqa: F401
    import numpy  # noqa: F401


def spread(samples: list) -> float:
    """(p90 - p10) / median, exactly as profiler.protocol.sample_stats (tests compare the two)."""
    xs = sorted(samples)
    n = len(xs)
    med = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    return (xs[int(round(0.9 * (n - 1)))] - xs[int(0.1 * (n - 1))]) / med


def _timed_us(run) -> float:
    t = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - t) / 1e3


PAIR_BLOCK = 5  # paired timing: invokes of one model before switching to the other


def _time(run, args: argparse.Namespace, ref=None) -> tuple:
    """(samples, reference samples or None). With `ref`: blocks of PAIR_BLOCK timed invokes of the model, then as
    many of the reference, each block after one untimed invoke (the other model evicted its weights from the caches:
    invoked one after the other, a small model paired with a network ran up to 2x slower than alone); sample i of
    the model pairs with sample i of the reference, timed a few invokes apart."""
    for _ in range(args.warmup):
        run()
        if ref is not None:
            ref()
    if ref is None:
        return [_timed_us(run) for _ in range(args.runs)], None
    samples, ref_samples = [], []
    while len(samples) < args.runs:
        n = min(PAIR_BLOCK, args.runs - len(samples))
        run()
        samples.extend(_timed_us(run) for _ in range(n))
        ref()
        ref_samples.extend(_timed_us(ref) for _ in range(n))
    return samples, ref_samples


def _load(model: str, args: argparse.Namespace) -> tuple:
    if model.endswith(".onnx"):
        return _onnx(model, args.threads)
    return _tflite(model, args.threads, not args.no_xnnpack)


def measure(model: str, args: argparse.Namespace, process: str) -> dict:
    """Load, warm up and time one model (again while too spread); a load failure is {"error": ...}."""
    t0 = time.perf_counter_ns()
    try:
        run, runtime, version = _load(model, args)
    except Exception as e:  # noqa: BLE001 - reported as JSON for the host to raise on
        return {"model": model, "error": f"{type(e).__name__}: {e}"}
    init_us = (time.perf_counter_ns() - t0) / 1e3
    ref = None
    if args.reference:
        try:
            ref = _load(args.reference, args)[0]
        except Exception as e:  # noqa: BLE001 - reported as JSON for the host to raise on
            return {"model": model, "error": f"reference {args.reference}: {type(e).__name__}: {e}"}
    spreads, best = [], None
    while True:
        samples, ref_samples = _time(run, args, ref)
        judged = samples if ref_samples is None else [s / r for s, r in zip(samples, ref_samples)]
        spreads.append(spread(judged))
        if best is None or spreads[-1] < best[0]:
            best = (spreads[-1], samples, ref_samples)
        if args.max_spread is None or spreads[-1] <= args.max_spread or len(spreads) >= args.max_attempts:
            break
    out = {
        "model": model, "runner": "linux-python", "runtime": runtime, "runtime_version": version,
        "python": platform.python_version(), "threads": args.threads, "init_us": init_us,
        "warmup_runs": args.warmup, "process": process, "attempts": len(spreads), "spreads": spreads,
        "samples_us": best[1],
    }
    if ref is not None:
        out.update(reference=args.reference, reference_samples_us=best[2])
    return out


def _forked(model: str, args: argparse.Namespace) -> None:
    """Measure `model` in a child process and print its line; a child that dies prints an error line."""
    r, w = os.pipe()
    sys.stdout.flush()  # a child must not inherit (and print again) what the parent buffered
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            line = json.dumps(measure(model, args, "fork"))
        except BaseException as e:  # noqa: BLE001 - the parent reports it for this model
            line = json.dumps({"model": model, "error": f"{type(e).__name__}: {e}"})
        data = line.encode()
        while data:  # a pipe may take a long line in parts
            data = data[os.write(w, data):]
        os._exit(0)
    os.close(w)
    chunks = []
    while True:  # no walrus: device Pythons may be old
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    if not text:
        text = json.dumps({"model": model, "error": f"measuring process died (wait status {status})"})
    print(text, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, action="append", help="repeat to measure several, each in turn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--no-xnnpack", action="store_true", help="TFLite reference kernels instead of XNNPACK")
    ap.add_argument("--max-spread", type=float, help="time a model again while its spread exceeds this")
    ap.add_argument("--max-attempts", type=int, default=1, help="timings per model in all (with --max-spread)")
    ap.add_argument("--reference", help="time this model alternately with each (paired timing)")
    args = ap.parse_args()
    if len(args.model) == 1:
        data = measure(args.model[0], args, "own")
        print(json.dumps(data))
        return 1 if "error" in data else 0
    _import_runtime(args.model[0].endswith(".onnx"))
    for model in args.model:
        _forked(model, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
