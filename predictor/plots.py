"""Predicted-against-measured plots with ±5% / ±10% bands (matplotlib is imported only when a plot is drawn)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from predictor import metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a device host or in CI
    import matplotlib.pyplot as plt

    return plt


def _bands(ax, lo: float, hi: float, log: bool) -> None:
    xs = np.geomspace(lo, hi, 50) if log else np.linspace(lo, hi, 50)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.12, label="±10%")
    ax.fill_between(xs, xs * 0.95, xs * 1.05, color="tab:green", alpha=0.2, label="±5%")
    ax.plot(xs, xs, color="black", lw=0.8)


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def scatter_plot(pred: np.ndarray, truth: np.ndarray, title: str, path: Path,
                 corrected: np.ndarray | None = None, label: str = "composed entries") -> None:
    """Whole networks (`predictor.validate`): the plain sum of entries and, if given, the composed prediction."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    hi = float(max(pred.max(), truth.max(), corrected.max() if corrected is not None else 0)) * 1.05
    _bands(ax, 0.0, hi, log=False)
    ax.scatter(truth, pred, s=14, color="tab:blue", label="plain sum of alone entries")
    if corrected is not None:
        ax.scatter(truth, corrected, s=14, color="tab:orange", marker="x", label=label)
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)", title=title)
    ax.legend(loc="upper left")
    _save(plt, fig, path)


def fill_plot(entry_pred: np.ndarray, entry_true: np.ndarray, subnet_pred: np.ndarray, subnet_true: np.ndarray,
              title: str, path: Path) -> None:
    """A filled LUT against the full one (`predictor.lutfill --plot`): its predicted entries (log axes: they span
    three decades) and the random subnets summed from it."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5), dpi=120)
    if len(entry_true):
        lo = float(min(entry_pred.min(), entry_true.min())) / 1.2
        hi = float(max(entry_pred.max(), entry_true.max())) * 1.2
        _bands(left, lo, hi, log=True)
        left.scatter(entry_true, entry_pred, s=4, alpha=0.4, color="tab:blue", label="predicted entries")
        left.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
        left.legend(loc="upper left")
    left.set(xlabel="full LUT (ms)", ylabel="filled LUT (ms)",
             title=f"{len(entry_true)} unmeasured entries: ±10% {100 * _acc(entry_pred, entry_true, 0.10):.1f}%")
    hi = float(max(subnet_pred.max(), subnet_true.max())) * 1.05
    lo = float(min(subnet_pred.min(), subnet_true.min())) * 0.95
    _bands(right, lo, hi, log=False)
    right.scatter(subnet_true, subnet_pred, s=6, alpha=0.5, color="tab:orange", label="random subnets")
    right.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="from the full LUT (ms)", ylabel="from the filled LUT (ms)",
              title=f"{len(subnet_true)} subnets: ±5% {100 * _acc(subnet_pred, subnet_true, 0.05):.1f}%")
    right.legend(loc="upper left")
    fig.suptitle(title)
    _save(plt, fig, path)


def _acc(pred: np.ndarray, true: np.ndarray, tol: float) -> float:
    return metrics.acc_within(pred, true, tol) if len(true) else float("nan")
