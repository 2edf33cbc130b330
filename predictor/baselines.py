"""Baseline block-latency predictors the benchmarks compare against (same fit/predict contract).

- `FlopsLinear`: latency = a_type * FLOPs + b_type per block type.
- `NnMeterRF`: nn-Meter's per-kernel RandomForest, features [hw, cin, cout, k, s, FLOPs, params],
  320 trees, max depth 70 (as in its released predictors), one forest per block type.
- `PlainXGB`: XGBoost on the block config fields + type one-hot, log-latency target, no analytical
  features or base model.
- `TypeRescale`: transfer baseline; prior device's latency times the median target/prior ratio of
  the measured blocks of the same type.
Types without a measured block fall back to a model fitted on all types.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import xgboost as xgb
from sklearn.ensemble import RandomForestRegressor

from nas.blocks import BlockCfg
from nas.costs import block_features
from predictor.analytical import NotFittedError
from predictor.features import CONFIG_NAMES, check_latencies_ms, config_fields, training_targets, type_onehot


def nnmeter_features(cfg: BlockCfg) -> list[float]:
    cf, f = config_fields(cfg), block_features(cfg)
    return [cf["hw_in"], cf["cin"], cf["cout"], cf["kernel"], cf["stride"], 2.0 * f["macs"], f["params"]]


class _PerType:
    """Fit one regressor per block type on `_x(cfg)` features, with a global fallback."""

    def _x(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        raise NotImplementedError

    def _new(self):
        raise NotImplementedError

    def fit(self, cfgs: Sequence[BlockCfg], latency_ms: Sequence[float]):
        y = training_targets(cfgs, latency_ms)
        x = self._x(cfgs)
        types = np.array([c.type for c in cfgs])
        self.models_ = {t: self._new().fit(x[types == t], y[types == t]) for t in np.unique(types)}
        self.fallback_ = self._new().fit(x, y)
        return self

    def predict(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        if not hasattr(self, "models_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet")
        if len(cfgs) == 0:
            return np.zeros(0)
        x = self._x(cfgs)
        types = np.array([c.type for c in cfgs])
        out = np.empty(len(cfgs))
        for t in np.unique(types):
            s = types == t
            out[s] = self.models_.get(t, self.fallback_).predict(x[s])
        return np.maximum(out, 1e-6)  # linear fits can go negative at the small end


class _Linear:
    def fit(self, x: np.ndarray, y: np.ndarray) -> "_Linear":
        a = np.column_stack([x[:, 0], np.ones(len(x))])
        if len(y) == 1:
            self.coef_ = np.array([y[0] / max(x[0, 0], 1.0), 0.0])
        else:
            self.coef_, *_ = np.linalg.lstsq(a, y, rcond=None)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.coef_[0] * x[:, 0] + self.coef_[1]


class FlopsLinear(_PerType):
    def _x(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        return np.array([[2.0 * block_features(c)["macs"]] for c in cfgs])

    def _new(self) -> _Linear:
        return _Linear()


class NnMeterRF(_PerType):
    def __init__(self, n_estimators: int = 320, max_depth: int = 70, seed: int = 0, n_jobs: int = 1) -> None:
        self.n_estimators, self.max_depth, self.seed, self.n_jobs = n_estimators, max_depth, seed, n_jobs

    def _x(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        return np.array([nnmeter_features(c) for c in cfgs])

    def _new(self) -> RandomForestRegressor:
        return RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                     random_state=self.seed, n_jobs=self.n_jobs)


class PlainXGB:
    def __init__(self, n_estimators: int = 500, learning_rate: float = 0.05, max_depth: int = 4,
                 seed: int = 0, n_jobs: int = 1) -> None:
        self.n_estimators, self.learning_rate, self.max_depth = n_estimators, learning_rate, max_depth
        self.seed, self.n_jobs = seed, n_jobs

    @staticmethod
    def _x(cfgs: Sequence[BlockCfg]) -> np.ndarray:
        fields = np.array([[cf[n] for n in CONFIG_NAMES] for cf in map(config_fields, cfgs)]).reshape(len(cfgs), -1)
        return np.hstack([type_onehot(cfgs), fields])

    def fit(self, cfgs: Sequence[BlockCfg], latency_ms: Sequence[float]) -> "PlainXGB":
        y = training_targets(cfgs, latency_ms)
        self.model_ = xgb.XGBRegressor(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                       max_depth=self.max_depth, random_state=self.seed, n_jobs=self.n_jobs)
        self.model_.fit(self._x(cfgs), np.log(y))
        return self

    def predict(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("PlainXGB is not fitted yet")
        return np.exp(self.model_.predict(self._x(cfgs))) if len(cfgs) else np.zeros(0)


class TypeRescale:
    def __init__(self, prior: Mapping[str, float]) -> None:
        self.prior = prior

    def fit(self, cfgs: Sequence[BlockCfg], latency_ms: Sequence[float]) -> "TypeRescale":
        y = training_targets(cfgs, latency_ms)
        keys = [c.key for c in cfgs]
        ratio = y / check_latencies_ms([self.prior[k] for k in keys], names=keys)
        types = np.array([c.type for c in cfgs])
        self.ratio_ = {t: float(np.median(ratio[types == t])) for t in np.unique(types)}
        self.global_ratio_ = float(np.median(ratio))
        return self

    def predict(self, cfgs: Sequence[BlockCfg]) -> np.ndarray:
        if not hasattr(self, "ratio_"):
            raise NotFittedError("TypeRescale is not fitted yet")
        return np.array([self.prior[c.key] * self.ratio_.get(c.type, self.global_ratio_) for c in cfgs])
