"""Transfer from another device's full LUT (the prior) with a handful of target measurements.

    log y_target(x) = log y_prior(x) + [log A_target(x) - log A_prior(x)] + b_type + s_type * log y_prior(x)

A_prior is the analytical model fitted on the prior device's LUT; A_target starts from A_prior's
constants and is regularised towards them, so a few measurements move only the device constants
that differ (e.g. cache bandwidth), and their ratio carries that change to every block. The last
terms are a per-type offset and slope, ridge-shrunk towards one global intercept, which absorb what
the op-level model cannot see. Per-type rescaling is the special case A_target = A_prior, s = 0.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from nas.blocks import BlockCfg, KeyError_, parse_key
from predictor.analytical import AnalyticalModel, NotFittedError
from predictor.features import TYPE_NAMES_BY_FAMILY, family_of, training_targets, type_onehot

log = logging.getLogger(__name__)


def fit_prior_model(prior: Mapping[str, float], max_entries: int = 800, seed: int = 0) -> AnalyticalModel:
    """The analytical model of the prior device, fitted on (a seeded subsample of) its LUT."""
    cfgs, vals = [], []
    for k, v in prior.items():
        try:
            cfgs.append(parse_key(k))
        except KeyError_:
            continue  # keys of other spaces or formats carry no information for this model
        vals.append(float(v))
    if not cfgs:
        raise ValueError("the prior LUT has no key this code can parse")
    y = np.asarray(vals)
    if len(cfgs) > max_entries:
        idx = np.sort(np.random.default_rng(seed).choice(len(cfgs), max_entries, replace=False))
        cfgs, y = [cfgs[i] for i in idx], y[idx]
    # The roofline's max over shared linear constants, not the prior-free defaults: transfer was tuned with it,
    # and it did worse on Xiaomi 11 -> Pixel 4 with the sum (10 measurements, seeds 0-7: subnet ±5% 98.4% ->
    # 95.4%; 30: 98.6 -> 97.8) and with the sum and attn_linear (91.6%, worst seed 81.3%; 30: 97.4%).
    return AnalyticalModel(combine="max", split_attention=False).fit(cfgs, y)


class PriorTransfer:
    """sklearn-style: `PriorTransfer(prior).fit(cfgs, latency_ms).predict(cfgs)`.

    `prior` maps block keys to the other device's latency (ms). Blocks missing from the prior
    fall back to the target's analytical model (with the per-type offset).
    """

    def __init__(self, prior: Mapping[str, float], analytical_ridge: float = 0.1, alpha: float = 1.0,
                 max_prior_fit: int = 800, seed: int = 0) -> None:
        self.prior = prior
        # How strongly target constants stay at the prior's: 0.1 chosen on Xiaomi 11 -> Pixel 4, 10
        # measurements, seeds 0-7 (subnet ±5% 94.9%, worst 86.6%; 0.3: 90.8%, 73.0%; 1: 77.1%; 0.03: 90.3%).
        self.analytical_ridge = analytical_ridge
        self.alpha = alpha  # ridge on the per-type offset/slope
        self.max_prior_fit = max_prior_fit  # prior entries used to fit A_prior (fit time grows linearly)
        self.seed = seed

    def fit(self, cfgs: Sequence[BlockCfg], latency_ms: Sequence[float],
            prior_model: AnalyticalModel | None = None) -> "PriorTransfer":
        """`prior_model`: an analytical model already fitted on the prior (saves refitting it)."""
        y = training_targets(cfgs, latency_ms)
        self.family_ = family_of(cfgs)
        if prior_model is None:
            prior_model = fit_prior_model(self.prior, self.max_prior_fit, self.seed)
        self.prior_model_ = prior_model
        self.target_model_ = AnalyticalModel(prior=prior_model, ridge=self.analytical_ridge).fit(cfgs, y)
        lp = self._log_prior(cfgs)
        self.center_ = float(np.nanmean(lp)) if np.any(np.isfinite(lp)) else 0.0
        resid = np.log(y) - self._log_base(cfgs, lp)
        design = self._design(cfgs, lp)
        self.coef_, self.intercept_ = _ridge(design, resid, self.alpha)
        return self

    # ---- pieces -------------------------------------------------------------------------
    def _log_prior(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        return np.array([np.log(self.prior[c.key]) if c.key in self.prior else np.nan for c in cfgs])

    def _log_base(self, cfgs: Sequence[BlockCfg], lp: np.ndarray) -> np.ndarray:
        lt = np.log(self.target_model_.predict(cfgs))
        lap = np.log(self.prior_model_.predict(cfgs))
        return np.where(np.isfinite(lp), lp + lt - lap, lt)

    def _design(self, cfgs: Sequence[BlockCfg], lp: np.ndarray) -> np.ndarray:
        onehot = type_onehot(cfgs)
        slope = np.where(np.isfinite(lp), lp - self.center_, 0.0)[:, None]
        return np.hstack([onehot, onehot * slope])

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("PriorTransfer is not fitted yet: call fit(cfgs, latency_ms) first")

    def predict(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        self._check_fitted()
        if len(cfgs) == 0:
            return np.zeros(0)
        lp = self._log_prior(cfgs)
        return np.exp(self._log_base(cfgs, lp) + self._design(cfgs, lp) @ self.coef_ + self.intercept_)

    def log_prior(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        """log prior latency per block (NaN where the prior lacks the key); a feature for learners."""
        return self._log_prior(cfgs)

    # ---- persistence --------------------------------------------------------------------
    def get_state(self) -> dict:
        self._check_fitted()
        return {"prior": dict(self.prior), "analytical_ridge": self.analytical_ridge, "alpha": self.alpha,
                "max_prior_fit": self.max_prior_fit, "seed": self.seed,
                "prior_model": self.prior_model_.get_state(), "target_model": self.target_model_.get_state(),
                "center": self.center_, "coef": self.coef_.tolist(), "intercept": self.intercept_,
                "type_names": list(TYPE_NAMES_BY_FAMILY[self.family_])}

    @classmethod
    def from_state(cls, state: dict) -> "PriorTransfer":
        family = next((f for f, names in TYPE_NAMES_BY_FAMILY.items() if list(names) == list(state["type_names"])),
                      None)
        if family is None:
            raise ValueError(f"transfer state was saved for block types {state['type_names']}, "
                             f"this code has {TYPE_NAMES_BY_FAMILY}")
        m = cls(state["prior"], state["analytical_ridge"], state["alpha"], state["max_prior_fit"], state["seed"])
        m.prior_model_ = AnalyticalModel.from_state(state["prior_model"])
        m.target_model_ = AnalyticalModel.from_state(state["target_model"])
        m.center_ = float(state["center"])
        m.coef_ = np.asarray(state["coef"], dtype=float)
        m.intercept_ = float(state["intercept"])
        m.family_ = family
        return m


def _ridge(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge with an unpenalised intercept (closed form; tiny problems)."""
    am, bm = a.mean(0), b.mean()
    ac = a - am
    coef = np.linalg.solve(ac.T @ ac + alpha * np.eye(a.shape[1]), ac.T @ (b - bm))
    return coef, float(bm - am @ coef)
