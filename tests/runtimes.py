"""Run an exported model on the real runtimes (LiteRT, ONNX Runtime) for output-parity tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref|."""
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def run_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    assert tuple(inp["shape"]) == x.shape
    it.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=np.float32))
    it.invoke()
    return it.get_tensor(out["index"])


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]
