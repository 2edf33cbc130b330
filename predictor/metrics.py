"""Accuracy metrics used by every latency predictor benchmark (field-notes section 2).

acc±X% = share of cases with |pred - true| / true <= X%; MAPE = mean |pred - true| / true;
RMSE in the unit of the inputs (ms here).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _pair(pred: ArrayLike, true: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=float)
    t = np.asarray(true, dtype=float)
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in shape: {p.shape} vs {t.shape}")
    if p.size == 0:
        raise ValueError("no cases to score")
    if np.any(t <= 0):
        raise ValueError("true latencies must be positive (relative errors are undefined otherwise)")
    return p, t


def rel_error(pred: ArrayLike, true: ArrayLike) -> np.ndarray:
    p, t = _pair(pred, true)
    return np.abs(p - t) / t


def acc_within(pred: ArrayLike, true: ArrayLike, tol: float) -> float:
    """Share of cases within ±tol (a fraction: 0.05 for ±5%)."""
    # Tiny slack so a case exactly on the boundary is not lost to float rounding.
    return float(np.mean(rel_error(pred, true) <= tol + 1e-12))


def mape(pred: ArrayLike, true: ArrayLike) -> float:
    return float(np.mean(rel_error(pred, true)))


def rmse(pred: ArrayLike, true: ArrayLike) -> float:
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def summary(pred: ArrayLike, true: ArrayLike) -> dict[str, float]:
    """The four numbers every report carries: acc5, acc10, mape (fractions) and rmse_ms."""
    return {
        "acc5": acc_within(pred, true, 0.05),
        "acc10": acc_within(pred, true, 0.10),
        "mape": mape(pred, true),
        "rmse_ms": rmse(pred, true),
    }
