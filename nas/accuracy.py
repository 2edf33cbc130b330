"""Subnet accuracy of a trained supernet: a store of evaluated top-1s and a predictor fitted on them.

`AccuracyStore`: one SQLite file, one row per (checkpoint, subnet, data, calibration) — the weights'
hash, the subnet's canonical JSON, the images' identity (path plus a cheap content fingerprint) and the
BN re-calibration settings — so the same question is never evaluated twice, and a store shared by
several runs or checkpoints keeps their answers apart.

`AccuracyPredictor`: top-1 from the subnet encoding (resolution and every stage's choices) plus log
MACs and params (`nas.costs.subnet_costs`). Ridge regression on standardised features (robust with a
few dozen subnets) or XGBoost trees, chosen by cross-validated Spearman correlation on the fit set:
search needs the ranking, not the value. Saved as versioned JSON; `fit_and_test` reports rank
correlation on a seeded hold-out of subnets the predictor was not fitted on.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import xgboost as xgb
from scipy import stats

from nas.costs import subnet_size
from nas.data import resolve_folder
from nas.searchspace import SearchSpace
from nas.subnet import Subnet

log = logging.getLogger(__name__)

DEFAULT_STORE = Path("measurements") / "accuracy.sqlite"
STORE_SCHEMA_VERSION = 1
FORMAT_NAME = "mobilevit-nas/accuracy-predictor"
FORMAT_VERSION = 1
MODELS = ("auto", "ridge", "xgboost")
MIN_SIDE = 3  # fewest subnets on each side of a hold-out split: fewer make a rank correlation meaningless


# ---- identities ----------------------------------------------------------------------------------
def canonical(obj: Any) -> str:
    """One JSON text per value (sorted keys, no spaces): what store keys compare."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def subnet_key(space: SearchSpace, sub: Subnet) -> str:
    return canonical(sub.to_dict(space.stage_names))


def weights_sha256(weights: dict[str, torch.Tensor]) -> str:
    """Identity of a supernet's weights: names, dtypes, shapes and bytes, in name order. The same weights
    hash alike whichever file, optimizer state or step counter they were saved with."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}\0{t.dtype}\0{tuple(weights[name].shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_identity(spec: str, size: int, seed: int) -> dict[str, Any]:
    """What a dataset spec names, cheaply: a synthetic spec with its seed, or a folder's absolute path with its
    number of files and total bytes (a changed, added or removed image changes it; reading every image would
    cost as much as evaluating)."""
    if spec.startswith("synthetic"):
        return {"synthetic": spec, "seed": seed, "image_size": size}
    root = Path(resolve_folder(spec)).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {spec} does not exist")
    files = size_bytes = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            files += 1
            size_bytes += os.stat(os.path.join(dirpath, n)).st_size
    return {"path": str(root), "files": files, "size_bytes": size_bytes, "image_size": size}


# ---- the store -----------------------------------------------------------------------------------
class AccuracyStoreError(ValueError):
    """An accuracy store that cannot be opened, read or written (one-line message)."""


@dataclass(frozen=True)
class Context:
    """What a top-1 depends on besides the subnet (canonical JSON each): weights, images, BN calibration."""

    checkpoint: str  # weights_sha256
    data: str
    calibration: str

    @staticmethod
    def of(checkpoint_sha256: str, data: dict[str, Any], calibration: dict[str, Any]) -> "Context":
        return Context(checkpoint_sha256, canonical(data), canonical(calibration))


@dataclass(frozen=True)
class Result:
    id: int
    subnet: str  # subnet_key
    top1: float
    seconds: float
    evaluated_at: float  # Unix time
    info: dict[str, Any] = field(default_factory=dict)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    checkpoint TEXT NOT NULL,
    subnet TEXT NOT NULL,
    data TEXT NOT NULL,
    calibration TEXT NOT NULL,
    top1 REAL NOT NULL CHECK (top1 >= 0 AND top1 <= 1),
    seconds REAL NOT NULL,
    evaluated_at REAL NOT NULL,
    info_json TEXT NOT NULL DEFAULT '{}',
    UNIQUE (checkpoint, subnet, data, calibration)
);
"""
_COLUMNS = "id, subnet, top1, seconds, evaluated_at, info_json"


class AccuracyStore:
    """Evaluated top-1s. WAL mode and one transaction per result: an interrupted run keeps what it finished,
    and runs sharing the store write safely (the first answer to a question wins)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(STORE_SCHEMA_VERSION),))
            (version,) = self.conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        except (sqlite3.Error, OSError) as e:
            raise AccuracyStoreError(f"accuracy store {self.path} cannot be opened: {e}") from e
        if version != str(STORE_SCHEMA_VERSION):
            self.conn.close()
            raise AccuracyStoreError(f"accuracy store {self.path} has schema {version}, this code reads "
                                     f"{STORE_SCHEMA_VERSION}; pass another --store")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "AccuracyStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise AccuracyStoreError(f"accuracy store {self.path}: {e}") from e

    def get(self, ctx: Context, subnet: str) -> Result | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM results WHERE checkpoint=? AND subnet=? AND data=? "
                           "AND calibration=?", (ctx.checkpoint, subnet, ctx.data, ctx.calibration))
        return _result(rows[0]) if rows else None

    def add(self, ctx: Context, subnet: str, top1: float, seconds: float, info: dict[str, Any]) -> Result:
        """Store a result; returns the stored one (another run's, when it answered the same question first)."""
        self._query("INSERT OR IGNORE INTO results (checkpoint, subnet, data, calibration, top1, seconds, "
                    "evaluated_at, info_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ctx.checkpoint, subnet, ctx.data, ctx.calibration, float(top1), float(seconds), time.time(),
                     canonical(info)))
        stored = self.get(ctx, subnet)
        assert stored is not None
        return stored

    def results(self, ctx: Context) -> list[Result]:
        """Every subnet evaluated in this context, in the order they were stored."""
        rows = self._query(f"SELECT {_COLUMNS} FROM results WHERE checkpoint=? AND data=? AND calibration=? "
                           "ORDER BY id", (ctx.checkpoint, ctx.data, ctx.calibration))
        return [_result(r) for r in rows]


def _result(row: tuple) -> Result:
    id_, subnet, top1, seconds, at, info = row
    return Result(int(id_), subnet, float(top1), float(seconds), float(at), json.loads(info))


# ---- the predictor -------------------------------------------------------------------------------
class PredictorFormatError(ValueError):
    """A saved accuracy predictor this code cannot read (another format, version or search space)."""


class NotFittedError(ValueError):
    """predict or save on an AccuracyPredictor that is not fitted."""


def feature_names(space: SearchSpace) -> list[str]:
    names = ["resolution"]
    for spec in space.stages:
        names += [f"{spec.name}.{k}" for k in space.stage_feature_names(spec)]
    return [*names, "log_macs", "log_params"]


def features(space: SearchSpace, subs: Sequence[Subnet]) -> np.ndarray:
    """One row per subnet, `feature_names(space)` columns; raises InvalidSubnet for a subnet not in `space`."""
    rows = []
    for sub in subs:
        macs, params = subnet_size(space, sub)
        row = [float(sub.resolution)]
        for spec, st in zip(space.stages, sub.stages):
            row += space.stage_features(spec, st)
        rows.append([*row, math.log(macs), math.log(params)])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(feature_names(space)))


def library_versions() -> dict[str, str]:
    return {"xgboost": xgb.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def rank_correlation(predicted: Sequence[float], truth: Sequence[float]) -> dict[str, float | None]:
    """Spearman and Kendall (tau-b) correlation; None where undefined (fewer than 2 points, or a constant side:
    a briefly trained supernet may score every subnet alike)."""
    p, t = np.asarray(predicted, dtype=float), np.asarray(truth, dtype=float)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return {"spearman": None, "kendall": None}
    return {"spearman": _finite(stats.spearmanr(p, t).statistic),
            "kendall": _finite(stats.kendalltau(p, t).statistic)}


def _fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> dict[str, Any]:
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-12] = 1.0  # a choice every fitted subnet shares carries no information; keep it at 0
    z = (x - mean) / scale
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(), "intercept": float(y.mean())}


def _predict_ridge(state: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return (x - np.asarray(state["mean"])) / np.asarray(state["scale"]) @ np.asarray(state["coef"]) + state["intercept"]


class AccuracyPredictor:
    """sklearn-style: `fit(space, subnets, top1) -> self`, `predict(space, subnets)`, `save` / `load`.

    `model`: "ridge", "xgboost", or "auto": the one with the better `folds`-fold cross-validated Spearman on
    the fit set (ridge on ties, and alone below `min_samples_trees` subnets: trees on a handful of points
    only add noise). Fitted attributes: `model_`, `state_` (ridge coefficients or an XGBoost booster),
    `space_`, `feature_names_`, `n_samples_`, `cv_spearman_`.
    """

    def __init__(self, model: str = "auto", alpha: float = 1.0, n_estimators: int = 300, learning_rate: float = 0.05,
                 max_depth: int = 3, min_samples_trees: int = 30, folds: int = 5, seed: int = 0) -> None:
        self.model = model
        self.alpha = alpha
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_trees = min_samples_trees
        self.folds = folds
        self.seed = seed

    def _hyper(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("model", "alpha", "n_estimators", "learning_rate", "max_depth",
                                              "min_samples_trees", "folds", "seed")}

    # ---- fitting ------------------------------------------------------------------------------
    def _fit_one(self, model: str, x: np.ndarray, y: np.ndarray) -> Any:
        if model == "ridge":
            return _fit_ridge(x, y, self.alpha)
        params = {"objective": "reg:squarederror", "eta": self.learning_rate, "max_depth": self.max_depth,
                  "subsample": 0.8, "colsample_bytree": 0.8, "seed": self.seed, "nthread": 1,
                  "base_score": float(y.mean())}
        return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=self.n_estimators)

    @staticmethod
    def _predict_one(model: str, state: Any, x: np.ndarray) -> np.ndarray:
        if model == "ridge":
            return _predict_ridge(state, x)
        return state.predict(xgb.DMatrix(x)).astype(np.float64)

    def _cv_spearman(self, model: str, x: np.ndarray, y: np.ndarray) -> float | None:
        order = np.random.default_rng(self.seed).permutation(len(y))
        scores = []
        for test in np.array_split(order, min(self.folds, len(y))):
            fit = np.setdiff1d(order, test)
            rho = rank_correlation(self._predict_one(model, self._fit_one(model, x[fit], y[fit]), x[test]),
                                   y[test])["spearman"]
            if rho is not None:
                scores.append(rho)
        return float(np.mean(scores)) if scores else None

    def fit(self, space: SearchSpace, subs: Sequence[Subnet], top1: Sequence[float]) -> "AccuracyPredictor":
        if self.model not in MODELS:
            raise ValueError(f"model = {self.model!r} is not allowed; allowed: {list(MODELS)}")
        x, y = features(space, subs), np.asarray(top1, dtype=np.float64)
        if len(y) != len(x) or len(y) < 2:
            raise ValueError(f"fit needs at least 2 subnets with one top-1 each (got {len(x)} and {len(y)})")
        candidates = [self.model] if self.model != "auto" else (
            ["ridge", "xgboost"] if len(y) >= self.min_samples_trees else ["ridge"])
        self.cv_spearman_: dict[str, float | None] = {}
        if len(candidates) > 1:
            self.cv_spearman_ = {m: self._cv_spearman(m, x, y) for m in candidates}
        score = {m: -2.0 if s is None else s for m, s in self.cv_spearman_.items()}
        self.model_ = max(candidates, key=lambda m: score.get(m, 0.0))  # ties: the first, ridge
        self.state_ = self._fit_one(self.model_, x, y)
        self.space_, self.feature_names_, self.n_samples_ = space.name, feature_names(space), len(y)
        log.debug("accuracy predictor: %s on %d subnets (cv spearman %s)", self.model_, len(y), self.cv_spearman_)
        return self

    # ---- prediction ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "state_"):
            raise NotFittedError("AccuracyPredictor is not fitted yet: call fit(space, subnets, top1) or load(path)")

    def predict(self, space: SearchSpace, subs: Sequence[Subnet]) -> np.ndarray:
        self._check_fitted()
        if space.name != self.space_ or feature_names(space) != self.feature_names_:
            raise PredictorFormatError(f"this predictor was fitted on search space {self.space_!r} with other "
                                       f"features than {space.name!r} has; refit it")
        x = features(space, subs)
        return self._predict_one(self.model_, self.state_, x) if len(x) else np.zeros(0)

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path, provenance: dict[str, Any] | None = None) -> None:
        """JSON: format name and version, library versions, hyper-parameters, the fitted model, and
        `provenance` (what it was fitted on: the resolved settings beside the result)."""
        self._check_fitted()
        doc = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "versions": library_versions(),
            "hyperparameters": self._hyper(),
            "space": self.space_,
            "feature_names": self.feature_names_,
            "n_samples": self.n_samples_,
            "cv_spearman": self.cv_spearman_,
            "model": self.model_,
            "state": self.state_ if self.model_ == "ridge" else bytes(self.state_.save_raw("json")).decode(),
            "provenance": provenance or {},
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: str | Path) -> "AccuracyPredictor":
        try:
            doc = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PredictorFormatError(f"{path}: not a JSON accuracy predictor ({type(e).__name__})") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise PredictorFormatError(f"{path}: format {got!r} is not {FORMAT_NAME!r}")
        if doc.get("format_version") != FORMAT_VERSION:
            raise PredictorFormatError(f"{path}: accuracy predictor format version {doc.get('format_version')!r} "
                                       f"cannot be read by this code (reads version {FORMAT_VERSION}); refit it "
                                       "with python -m nas.evaluate --fit-predictor")
        if doc.get("versions") != library_versions():
            log.warning("%s was saved with %s, running with %s", path, doc.get("versions"), library_versions())
        m = cls(**doc["hyperparameters"])
        m.model_, m.space_, m.feature_names_ = doc["model"], doc["space"], list(doc["feature_names"])
        m.n_samples_, m.cv_spearman_ = int(doc["n_samples"]), dict(doc["cv_spearman"])
        if m.model_ == "ridge":
            m.state_ = doc["state"]
        else:
            m.state_ = xgb.Booster()
            m.state_.load_model(bytearray(doc["state"].encode()))
            m.state_.set_param({"nthread": 1})  # as fitted: one thread, deterministic and cheap for small batches
        return m


# ---- hold-out evaluation -------------------------------------------------------------------------
def holdout_split(keys: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Positions of the fit and the held-out subnets. The held-out ones are the `fraction` (at least
    MIN_SIDE) whose seeded hash of their key ranks first: the split depends on the keys and the seed only,
    never on the order the store returns them in."""
    if not 0 < fraction < 1:
        raise ValueError(f"the hold-out fraction {fraction} must be between 0 and 1")
    if len(set(keys)) != len(keys):
        raise ValueError("hold-out split: the subnet keys are not distinct")
    n = len(keys)
    n_test = max(MIN_SIDE, round(fraction * n))
    if n - n_test < MIN_SIDE:
        raise ValueError(f"{n} evaluated subnets are too few to fit a predictor on some and test it on {n_test} "
                         f"others; at least {2 * MIN_SIDE} are needed (evaluate more with --sample K)")
    order = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}\0{keys[i]}".encode()).hexdigest())
    return sorted(order[n_test:]), sorted(order[:n_test])


@dataclass(frozen=True)
class RankReport:
    """How well a predictor ranks subnets it was not fitted on."""

    model: str
    fraction: float
    seed: int
    fit_ids: tuple[int, ...]
    test_ids: tuple[int, ...]
    spearman: float | None
    kendall: float | None
    cv_spearman: dict[str, float | None]
    test: tuple[tuple[int, float, float], ...]  # (id, top-1, predicted) of each held-out subnet

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_and_test(space: SearchSpace, subs: Sequence[Subnet], top1: Sequence[float], ids: Sequence[int],
                 predictor: AccuracyPredictor, fraction: float = 0.3,
                 seed: int = 0) -> tuple[AccuracyPredictor, RankReport]:
    """Fit `predictor` on the subnets outside a seeded hold-out split and rank the held-out ones with it."""
    keys = [subnet_key(space, s) for s in subs]
    fit, test = holdout_split(keys, fraction, seed)
    y = np.asarray(top1, dtype=np.float64)
    predictor.fit(space, [subs[i] for i in fit], y[fit])
    predicted = predictor.predict(space, [subs[i] for i in test])
    corr = rank_correlation(predicted, y[test])
    return predictor, RankReport(
        model=predictor.model_, fraction=fraction, seed=seed, fit_ids=tuple(int(ids[i]) for i in fit),
        test_ids=tuple(int(ids[i]) for i in test), spearman=corr["spearman"], kendall=corr["kendall"],
        cv_spearman=predictor.cv_spearman_,
        test=tuple((int(ids[i]), float(y[i]), float(p)) for i, p in zip(test, predicted)))
