"""LatencyPredictor: XGBoost on block config + analytical features, predicting the log-ratio of
latency to a physics-style base estimate (the fitted analytical model, or the prior-device
transfer model when another phone's LUT is known).

Why the ratio: the base already explains most of the 200x range of block latencies; trees then
model a smooth, small residual (+-20%) instead of extrapolating a steep function piecewise-
constantly, which matters with 300 samples (see benchmarks/results/lutfill.md).
"""
from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xgboost as xgb

from nas.blocks import BlockCfg
from predictor.analytical import AnalyticalModel, NotFittedError
from predictor.features import column_names, family_of, feature_matrix, training_targets
from predictor.fewshot import FewShotBlend, as_list, fit_free
from predictor.transfer import PriorTransfer

log = logging.getLogger(__name__)

FORMAT_NAME = "mobilevit-nas/latency-predictor"
FORMAT_VERSION = 2  # 2: base kind "blend" (several priors); version 1 files still load
READ_VERSIONS = (1, 2)
TARGETS = ("ratio", "log")

Base = AnalyticalModel | PriorTransfer | FewShotBlend
_BASE_KINDS = {"analytical": AnalyticalModel, "transfer": PriorTransfer, "blend": FewShotBlend}


class PredictorFormatError(ValueError):
    """A saved predictor this code cannot read (other format or version)."""


def library_versions() -> dict[str, str]:
    return {"xgboost": xgb.__version__, "numpy": np.__version__, "python": platform.python_version()}


class LatencyPredictor:
    """sklearn-style block latency predictor: `fit(cfgs, latency_ms)`, `predict(cfgs)`, `save`/`load`.

    `prior`: another device's LUT (key -> ms), or a list of them; when given, the base is `FewShotBlend`
    (each prior's `PriorTransfer`, kept only where the measurements say it fits) and the kept priors'
    latency is a feature. `prior_model`: their fitted analytical models (one, or a list), if known.
    `bootstrap`: fit on a resample of the data (base included unless a fitted `base` is passed to fit):
    members of an ensemble whose spread measures uncertainty. Below
    `min_samples_xgb` measurements the trees are skipped and the base alone predicts (a few points cannot
    train trees without adding noise).
    Fitted attributes: `base_`, `booster_` (None when skipped), `n_samples_`.
    """

    def __init__(self, n_estimators: int = 500, learning_rate: float = 0.05, max_depth: int = 4,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, target: str = "ratio",
                 prior: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None,
                 prior_model: AnalyticalModel | Sequence[AnalyticalModel | None] | None = None,
                 min_samples_xgb: int = 60,
                 bootstrap: bool = False, seed: int = 0, n_jobs: int = 1,
                 block_weights: Mapping[str, float] | None = None) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.target = target
        self.prior = prior
        self.prior_model = prior_model  # analytical model(s) already fitted on the prior(s) (saves refits)
        self.min_samples_xgb = min_samples_xgb
        self.bootstrap = bootstrap  # resample the training set (ensemble members for uncertainty)
        self.seed = seed
        self.n_jobs = n_jobs
        self.block_weights = block_weights  # key -> frequency in subnets: how the priors' fit is weighed

    def _hyper(self) -> dict:
        return {k: getattr(self, k) for k in ("n_estimators", "learning_rate", "max_depth", "subsample",
                                              "colsample_bytree", "min_child_weight", "reg_lambda", "target",
                                              "min_samples_xgb", "bootstrap", "seed", "n_jobs")}

    # ---- fitting ------------------------------------------------------------------------
    def make_base(self) -> Base:
        priors = as_list(self.prior)
        if not priors:
            return AnalyticalModel()
        models = as_list(self.prior_model) or None
        return FewShotBlend(priors, models, weights=self.block_weights, seed=self.seed)

    def fit_base(self, cfgs: Sequence[BlockCfg], y: np.ndarray) -> Base:
        base = self.make_base()
        if isinstance(base, AnalyticalModel) and len(y) < self.min_samples_xgb and self.block_weights is not None:
            return fit_free(cfgs, y, self.block_weights)  # the base is the prediction: fit it for subnet sums
        return base.fit(cfgs, y)

    def _has_prior_column(self) -> bool:
        return isinstance(getattr(self, "base_", None), (PriorTransfer, FewShotBlend))

    def _features(self, cfgs: Sequence[BlockCfg], log_base: np.ndarray) -> np.ndarray:
        cols = [feature_matrix(cfgs), log_base[:, None]]
        if self._has_prior_column():
            cols.append(self.base_.log_prior(cfgs)[:, None])  # NaN = missing, handled by XGBoost
        return np.hstack(cols)

    def feature_names(self) -> list[str]:
        names = [*column_names(getattr(self, "family_", "elasticvit")), "log_base_ms"]
        if self._has_prior_column():
            names.append("log_prior_ms")
        return names

    def fit(self, cfgs: Sequence[BlockCfg], latency_ms: Sequence[float],
            base: Base | None = None) -> "LatencyPredictor":
        """`base`: an already fitted base model to reuse as is (the sampler's ensembles share one)."""
        if self.target not in TARGETS:
            raise ValueError(f"target = {self.target!r} is not allowed; allowed: {list(TARGETS)}")
        y = training_targets(cfgs, latency_ms)
        cfgs = list(cfgs)
        if self.bootstrap:
            idx = np.random.default_rng(self.seed).integers(0, len(y), len(y))
            cfgs, y = [cfgs[i] for i in idx], y[idx]
        self.family_ = family_of(cfgs)  # the block family whose type columns the model has
        self.base_ = base if base is not None else self.fit_base(cfgs, y)
        self.n_samples_ = len(y)
        self.booster_: xgb.Booster | None = None
        if len(y) < self.min_samples_xgb:
            log.debug("%d samples < min_samples_xgb=%d: base model only", len(y), self.min_samples_xgb)
            return self
        log_base = np.log(self.base_.predict(cfgs))
        feats = self._features(cfgs, log_base)
        target = np.log(y) - log_base if self.target == "ratio" else np.log(y)
        params = {"objective": "reg:squarederror", "eta": self.learning_rate, "max_depth": self.max_depth,
                  "subsample": self.subsample, "colsample_bytree": self.colsample_bytree,
                  "min_child_weight": self.min_child_weight, "lambda": self.reg_lambda, "seed": self.seed,
                  "nthread": self.n_jobs, "base_score": float(np.mean(target))}
        dtrain = xgb.DMatrix(feats, label=target, feature_names=self.feature_names())
        self.booster_ = xgb.train(params, dtrain, num_boost_round=self.n_estimators)
        return self

    # ---- prediction ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "base_"):
            raise NotFittedError("LatencyPredictor is not fitted yet: call fit(cfgs, latency_ms) or load(path)")

    def predict_base(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        """The base model's estimate alone (analytical or transfer), ms."""
        self._check_fitted()
        return self.base_.predict(cfgs)

    def predict(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        self._check_fitted()
        if len(cfgs) == 0:
            return np.zeros(0)
        if family_of(cfgs) != self.family_:
            raise ValueError(f"this latency model was fitted on {self.family_} blocks, not {family_of(cfgs)} ones")
        log_base = np.log(self.base_.predict(cfgs))
        if self.booster_ is None:
            return np.exp(log_base)
        out = self.booster_.predict(xgb.DMatrix(self._features(cfgs, log_base), feature_names=self.feature_names()))
        return np.exp(log_base + out) if self.target == "ratio" else np.exp(out)

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """JSON: format version, library versions, hyper-parameters, base model state, booster."""
        self._check_fitted()
        kind = next(k for k, c in _BASE_KINDS.items() if isinstance(self.base_, c))
        doc = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "versions": library_versions(),
            "hyperparameters": self._hyper(),
            "n_samples": self.n_samples_,
            "family": self.family_,
            "base": {"kind": kind, "state": self.base_.get_state()},
            "feature_names": self.feature_names(),
            "booster": None if self.booster_ is None else bytes(self.booster_.save_raw("json")).decode(),
        }
        Path(path).write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: str | Path) -> "LatencyPredictor":
        try:
            doc = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise PredictorFormatError(f"{path}: not a JSON predictor file ({e})") from e
        if doc.get("format") != FORMAT_NAME:
            raise PredictorFormatError(f"{path}: format {doc.get('format')!r} is not {FORMAT_NAME!r}")
        if doc.get("format_version") not in READ_VERSIONS:
            raise PredictorFormatError(
                f"{path}: predictor format version {doc.get('format_version')} cannot be read by this code "
                f"(reads versions {list(READ_VERSIONS)}); refit it from the measurements")
        saved, now = doc.get("versions", {}), library_versions()
        if saved != now:
            log.warning("%s was saved with %s, running with %s", path, saved, now)
        base_doc = doc["base"]
        m = cls(**{k: v for k, v in doc["hyperparameters"].items()},
                prior=base_doc["state"]["prior"] if base_doc["kind"] == "transfer" else None)
        if base_doc["kind"] not in _BASE_KINDS:
            raise PredictorFormatError(f"{path}: base model kind {base_doc['kind']!r} is unknown to this code")
        m.base_ = _BASE_KINDS[base_doc["kind"]].from_state(base_doc["state"])
        m.n_samples_ = int(doc["n_samples"])
        m.family_ = str(doc.get("family", "elasticvit"))  # files saved before a second family are ElasticViT's
        m.booster_ = None
        if doc["booster"] is not None:
            m.booster_ = xgb.Booster()
            m.booster_.load_model(bytearray(doc["booster"].encode()))
            m.booster_.set_param({"nthread": m.n_jobs})
        if m.feature_names() != doc["feature_names"]:
            raise PredictorFormatError(f"{path}: saved features {doc['feature_names']} differ from this code's "
                                       f"{m.feature_names()}; refit the predictor")
        return m
