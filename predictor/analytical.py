"""AutoViT-style analytical latency model with device constants fitted from measurements.

Per op (from `nas.costs.block_ops`, the one feature function):
    compute = work / (peak[kind] * simd_utilisation(channels, w) * thread_eff(work_items, t))
    memory  = min(bytes, cache) / bw_cache + max(0, bytes - cache) / bw_dram   (smoothed)
    time    = compute + memory + overhead[kind]        (combine "sum", the default)
              max(compute, memory) + overhead[kind]    (combine "max": the roofline, smoothed)
and a block's latency is the sum over its ops plus one invoke overhead (each LUT entry is a
separately timed graph). `work` is MACs for ops with arithmetic and elements touched for
elementwise/softmax/norm/pool ops, so every kind has a throughput of its own.

The constants are fitted per device+backend by least squares on the log-ratio of predicted to
measured latency (log-parameters, so everything stays positive); the vector width `w` and
thread count `t` are discrete and chosen by the fit. Nothing is tied to a known phone: the
starting point is derived from the measurements' own scale.

Why the sum: per block type, a linear model in each op kind's MACs, bytes and weight bytes fits the
measured phones' transformer blocks within 10% (98% of Pixel 4's attention blocks), so the costs add
up; the roofline's max hides one of the two wherever they are close. Chosen on Pixel 4 (prior-free,
budget 30, seeds 0-7: entry ±10% 80.2% -> 84.0%, subnet ±5% 89.0% -> 94.7%; 400 random blocks:
83.9% -> 86.8%); Xiaomi 11 held out (benchmarks/results/lutfill.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares

from nas.blocks import AttentionCfg, BlockCfg
from nas.costs import OP_KINDS, SIMD_WIDTHS, OpCost, block_ops, simd_utilisation
from predictor.features import training_targets

log = logging.getLogger(__name__)

# Constants are kept per op kind, with one split: the projections of ElasticViT's attention blocks (qkv, proj)
# get their own. Fitted on Pixel 4's attention or FFN blocks alone, the model is within 10% for 98-99% of either;
# with one set of linear constants for both, attention fell to 59% (FFN 86%): per MAC the projections run at
# another rate than the FFN's layers in these graphs (the slices and transposes around them, which the op list
# does not itemise, scale with them). Chosen on Pixel 4 (prior-free, budget 30, seeds 0-7: entry ±10% 84.0% ->
# 92.3%, subnet ±5% 94.7% -> 97.6%); Xiaomi 11 held out. Off for transfer (`split_attention`), which keeps the
# roofline and the shared constants it was tuned with (predictor.transfer: both did better there).
MODEL_KINDS = (*OP_KINDS, "attn_linear")
_KIND_INDEX = {k: i for i, k in enumerate(MODEL_KINDS)}
_NK = len(MODEL_KINDS)


def model_kind(cfg: BlockCfg, op: OpCost, split_attention: bool = True) -> str:
    """Which constants an op of `cfg` uses (MODEL_KINDS)."""
    split = split_attention and op.kind == "linear" and isinstance(cfg, AttentionCfg)
    return "attn_linear" if split else op.kind


class NotFittedError(RuntimeError):
    """predict() called before fit()."""


@dataclass(frozen=True)
class OpTable:
    """All ops of a list of blocks as flat arrays (one row per op), for vectorised evaluation."""

    block: np.ndarray  # index of the block each op belongs to
    kind: np.ndarray  # index into MODEL_KINDS
    work: np.ndarray  # MACs, or elements touched for ops without arithmetic
    bytes: np.ndarray  # working set: activations read + written + weights
    simd: dict[int, np.ndarray]  # lane utilisation per candidate vector width
    work_items: np.ndarray
    n_blocks: int

    def thread_eff(self, threads: int) -> np.ndarray:
        # Work items split over threads: the last round leaves threads idle (same staircase as SIMD).
        wi = np.maximum(self.work_items, 1.0)
        return wi / (np.ceil(wi / threads) * threads)


@lru_cache(maxsize=65536)
def _op_rows(cfg: BlockCfg, split_attention: bool) -> tuple[tuple[int, float, float, int, int], ...]:
    rows = []
    for op in block_ops(cfg):
        nbytes = op.act_read_bytes + op.act_write_bytes + op.weight_bytes
        work = op.macs if op.macs > 0 else (op.act_read_bytes + op.act_write_bytes) / 4
        kind = _KIND_INDEX[model_kind(cfg, op, split_attention)]
        rows.append((kind, float(work), float(nbytes), op.channels, op.work_items))
    return tuple(rows)


def op_table(cfgs: Sequence[BlockCfg], split_attention: bool = True) -> OpTable:
    per_block = [_op_rows(c, split_attention) for c in cfgs]
    block = np.repeat(np.arange(len(cfgs)), [len(r) for r in per_block])
    arr = np.array([row for rows in per_block for row in rows], dtype=float).reshape(-1, 5)
    channels = arr[:, 3].astype(int)
    simd = {w: np.array([simd_utilisation(int(c), w) for c in channels]) for w in SIMD_WIDTHS}
    return OpTable(block, arr[:, 0].astype(int), arr[:, 1], arr[:, 2], simd, arr[:, 4], len(cfgs))


# Parameter vector layout (all natural logs): peak[kind] | overhead[kind] | bw_cache, bw_dram, cache | invoke
_P_PEAK = slice(0, _NK)
_P_OVH = slice(_NK, 2 * _NK)
_P_BWC, _P_BWD, _P_CACHE, _P_INVOKE = 2 * _NK, 2 * _NK + 1, 2 * _NK + 2, 2 * _NK + 3
_N_PARAMS = 2 * _NK + 4


def _smooth_max(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    m = np.maximum(a, b)
    m = np.where(m > 0, m, 1.0)
    return m * ((a / m) ** p + (b / m) ** p) ** (1.0 / p)


COMBINES = ("sum", "max")


def _evaluate(theta: np.ndarray, tab: OpTable, width: int, threads: int, sharpness: float,
              combine: str = "sum") -> np.ndarray:
    peak = np.exp(theta[_P_PEAK])[tab.kind]
    ovh = np.exp(theta[_P_OVH])[tab.kind]
    bwc, bwd, cache = np.exp(theta[_P_BWC]), np.exp(theta[_P_BWD]), np.exp(theta[_P_CACHE])
    compute = tab.work / (peak * tab.simd[width] * tab.thread_eff(threads))
    # Bytes up to the cache size are served at cache speed, the excess at DRAM speed (smoothed min).
    in_cache = tab.bytes / (1.0 + (tab.bytes / cache) ** sharpness) ** (1.0 / sharpness)
    memory = in_cache / bwc + (tab.bytes - in_cache) / bwd
    t_op = (compute + memory if combine == "sum" else _smooth_max(compute, memory, sharpness)) + ovh
    return np.bincount(tab.block, weights=t_op, minlength=tab.n_blocks) + np.exp(theta[_P_INVOKE])


class AnalyticalModel:
    """Roofline-per-op latency model; sklearn-style `fit(cfgs, latency_ms)` / `predict(cfgs)`.

    Fitted attributes: `params_` (dict of named constants, ms / bytes / work units per ms),
    `simd_width_`, `threads_`, `theta_` (log-parameters), `train_mape_`.
    """

    def __init__(self, simd_widths: Sequence[int] = SIMD_WIDTHS, threads: Sequence[int] = (1, 2, 4),
                 sharpness: float = 6.0, ridge: float = 1e-3, max_nfev: int = 2000,
                 prior: "AnalyticalModel | None" = None, combine: str = "sum",
                 split_attention: bool = True) -> None:
        if combine not in COMBINES:
            raise ValueError(f"combine = {combine!r} is not allowed; allowed: {list(COMBINES)}")
        self.combine = combine  # how an op's compute and memory time make its time
        self.split_attention = split_attention  # attention projections get constants of their own
        self.simd_widths = tuple(simd_widths)
        self.threads = tuple(threads)
        self.sharpness = sharpness
        self.ridge = ridge  # pulls parameters a kind has no data for towards the shared start
        self.max_nfev = max_nfev
        # A model fitted on another device: start from its constants, regularise towards them and
        # keep its discrete choices, so a few measurements only move what differs (transfer).
        self.prior = prior

    # ---- fitting ----------------------------------------------------------------------
    def _start(self, tab: OpTable, y: np.ndarray) -> np.ndarray:
        work = np.bincount(tab.block, weights=tab.work, minlength=tab.n_blocks)
        nbytes = np.bincount(tab.block, weights=tab.bytes, minlength=tab.n_blocks)
        n_ops = np.bincount(tab.block, minlength=tab.n_blocks)
        theta = np.empty(_N_PARAMS)
        theta[_P_PEAK] = np.log(np.median(work / y))
        theta[_P_OVH] = np.log(0.02 * np.min(y / np.maximum(n_ops, 1)))
        theta[_P_BWC] = np.log(2.0 * np.median(nbytes / y))
        theta[_P_BWD] = theta[_P_BWC] - np.log(4.0)
        theta[_P_CACHE] = np.log(np.median(tab.bytes))
        theta[_P_INVOKE] = np.log(0.1 * np.min(y))
        return theta

    def _fit_one(self, tab: OpTable, y: np.ndarray, theta0: np.ndarray, width: int, threads: int,
                 sw: np.ndarray):
        ly = np.log(y)
        reg = np.sqrt(self.ridge)
        # Without the split, attn_linear's constants are unused: held at their start, out of the optimisation
        # (the fit is then the one from before the split, step for step).
        free = np.ones(_N_PARAMS, dtype=bool)
        if not self.split_attention:
            free[[_KIND_INDEX["attn_linear"], _NK + _KIND_INDEX["attn_linear"]]] = False

        def full(x: np.ndarray) -> np.ndarray:
            theta = theta0.copy()
            theta[free] = x
            return theta

        def resid(x: np.ndarray) -> np.ndarray:
            pred = _evaluate(full(x), tab, width, threads, self.sharpness, self.combine)
            return np.concatenate([sw * (np.log(pred) - ly), reg * (x - theta0[free])])

        res = least_squares(resid, theta0[free], method="trf", x_scale=1.0, max_nfev=self.max_nfev)
        return full(res.x), float(np.mean(res.fun[: len(y)] ** 2))

    def fit(self, cfgs: Sequence[BlockCfg], latency_ms: Sequence[float],
            sample_weight: Sequence[float] | None = None) -> "AnalyticalModel":
        """`sample_weight`: relative weight of each block's squared log error (default equal)."""
        y = training_targets(cfgs, latency_ms)
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if sw.shape != y.shape or not np.all(np.isfinite(sw) & (sw >= 0)) or sw.sum() <= 0:
            raise ValueError(f"sample_weight must be {len(y)} non-negative numbers, not all 0")
        sw = np.sqrt(sw / sw.mean())
        if self.prior is not None:
            self.prior._check_fitted()
            # Its constants mean what they mean under its own combine and kinds.
            self.combine, self.split_attention = self.prior.combine, self.prior.split_attention
        tab = op_table(cfgs, self.split_attention)
        if self.prior is not None:
            theta0 = self.prior.theta_.copy()
            grid = [(self.prior.simd_width_, self.prior.threads_)]
        else:
            theta0 = self._start(tab, y)
            grid = [(w, t) for w in self.simd_widths for t in self.threads]
        best: tuple[float, np.ndarray, int, int] | None = None
        for w, t in grid:
            theta, loss = self._fit_one(tab, y, theta0, w, t, sw)
            log.debug("analytical fit width=%d threads=%d log-mse=%.5f", w, t, loss)
            if best is None or loss < best[0]:
                best = (loss, theta, w, t)
        assert best is not None
        loss, self.theta_, self.simd_width_, self.threads_ = best
        self.train_mape_ = float(np.mean(np.abs(self._predict_tab(tab) / y - 1.0)))
        self.params_ = self._named(self.theta_)
        log.info("analytical model: width=%d threads=%d train MAPE %.3f", self.simd_width_, self.threads_,
                 self.train_mape_)
        return self

    @staticmethod
    def _named(theta: np.ndarray) -> dict[str, float]:
        e = np.exp(theta)
        out = {f"peak_{k}": float(e[i]) for i, k in enumerate(MODEL_KINDS)}
        out.update({f"overhead_ms_{k}": float(e[_NK + i]) for i, k in enumerate(MODEL_KINDS)})
        out.update(bw_cache=float(e[_P_BWC]), bw_dram=float(e[_P_BWD]), cache_bytes=float(e[_P_CACHE]),
                   invoke_ms=float(e[_P_INVOKE]))
        return out

    # ---- prediction -------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise NotFittedError("AnalyticalModel is not fitted yet: call fit(cfgs, latency_ms) first")

    def _predict_tab(self, tab: OpTable) -> np.ndarray:
        return _evaluate(self.theta_, tab, self.simd_width_, self.threads_, self.sharpness, self.combine)

    def predict(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        self._check_fitted()
        if len(cfgs) == 0:
            return np.zeros(0)
        return self._predict_tab(op_table(cfgs, self.split_attention))

    @classmethod
    def from_params(cls, params: dict[str, float], simd_width: int, threads: int,
                    sharpness: float = 6.0, combine: str = "sum") -> "AnalyticalModel":
        """A model with given constants (names as in `params_`): synthetic devices, tests."""
        theta = np.empty(_N_PARAMS)
        for i, k in enumerate(MODEL_KINDS):  # attn_linear's constants default to linear's
            theta[i] = np.log(params.get(f"peak_{k}", params["peak_linear"]))
            theta[_NK + i] = np.log(params.get(f"overhead_ms_{k}", params["overhead_ms_linear"]))
        theta[_P_BWC], theta[_P_BWD] = np.log(params["bw_cache"]), np.log(params["bw_dram"])
        theta[_P_CACHE], theta[_P_INVOKE] = np.log(params["cache_bytes"]), np.log(params["invoke_ms"])
        return cls.from_state({"theta": theta.tolist(), "simd_width": simd_width, "threads": threads,
                               "sharpness": sharpness, "op_kinds": list(MODEL_KINDS), "train_mape": 0.0,
                               "combine": combine})

    # ---- persistence (plain JSON-able state; the xgb predictor embeds it) -------------
    def get_state(self) -> dict:
        self._check_fitted()
        return {"theta": self.theta_.tolist(), "simd_width": self.simd_width_, "threads": self.threads_,
                "sharpness": self.sharpness, "op_kinds": list(MODEL_KINDS), "train_mape": self.train_mape_,
                "combine": self.combine, "split_attention": self.split_attention}

    @classmethod
    def from_state(cls, state: dict) -> "AnalyticalModel":
        theta = np.asarray(state["theta"], dtype=float)
        split = bool(state.get("split_attention", True))
        if list(state["op_kinds"]) == list(OP_KINDS):  # saved before attn_linear: linear's constants serve both
            nk, lin = len(OP_KINDS), _KIND_INDEX["linear"]
            theta = np.concatenate([theta[:nk], theta[[lin]], theta[nk:2 * nk], theta[[nk + lin]], theta[2 * nk:]])
            split = False
        elif list(state["op_kinds"]) != list(MODEL_KINDS):
            raise ValueError(f"analytical state was saved for op kinds {state['op_kinds']}, this code has "
                             f"{list(MODEL_KINDS)}: refit it from the measurements")
        # Saved before "sum" and the split: the roofline's max over shared linear constants.
        m = cls(sharpness=state["sharpness"], combine=state.get("combine", "max"), split_attention=split)
        m.theta_ = theta
        m.simd_width_ = int(state["simd_width"])
        m.threads_ = int(state["threads"])
        m.train_mape_ = float(state["train_mape"])
        m.params_ = m._named(m.theta_)
        return m
