"""What a search maximises, by name: `list_objectives()`, `create_objective(name, space, config)`.

An objective scores a batch of subnets, higher is better: `objective(space, subnets, latency_ms) -> array`,
where `latency_ms` is each subnet's predicted latency (the search computes it first, so an objective that
weighs latency, such as MES, gets it without a second query). The search calls it once per distinct
subnet (`nas.evolution.Evaluator` caches by subnet).

- `macs`, `params`: complexity proxies (no trained supernet needed).
- `accuracy`: top-1 (a fraction) predicted by a fitted `nas.accuracy.AccuracyPredictor` file
  (`ObjectiveConfig.accuracy_predictor`).
- `mes`: EfficientFormerV2's Mobile Efficiency Score, Score * prod_i (M_i / U_i)^(-alpha_i) over size
  (parameters) and latency; Score is the predicted top-1 in percent with an accuracy predictor, else the
  paper's constant base score 100 (then MES only rewards small, fast subnets).

New objectives register with `@register_objective(name, description)`: a factory
`(space, config) -> objective` (a factory may load files and raise ObjectiveError).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from nas.costs import subnet_size
from nas.searchspace import SearchSpace
from nas.subnet import Subnet

# EfficientFormerV2 (Li et al., "Rethinking Vision Transformers for MobileNet Size and Speed", ICCV 2023,
# arXiv:2212.08059, section 4, eq. for MES): Score = 100; the units are MobileNetV2's size and speed,
# U_size = 3M parameters and U_latency = 1 ms (iPhone 12, CoreML); "to emphasise speed" alpha_latency = 1.0
# and alpha_size = 0.5. These values are as we read them in the paper; the stored public sources searched for
# this code (the paper's abstract pages, reviews, the snap-research README) do not quote that passage, so
# they are not confirmed here. Units only scale MES by a constant (they never change a ranking); the alphas do.
MES_SCORE = 100.0
MES_PARAMS_UNIT = 3e6
MES_LATENCY_UNIT_MS = 1.0
MES_ALPHA_PARAMS = 0.5
MES_ALPHA_LATENCY = 1.0


class Objective(Protocol):
    def __call__(self, space: SearchSpace, subnets: Sequence[Subnet], latency_ms: np.ndarray) -> np.ndarray: ...


class ObjectiveError(ValueError):
    """An objective that cannot be made: unknown name, missing or unreadable predictor file, bad setting."""


@dataclass(frozen=True)
class ObjectiveConfig:
    """Settings objectives read (the search writes them next to its result)."""

    accuracy_predictor: Path | None = None  # a fitted AccuracyPredictor (JSON): needed by accuracy, used by mes
    mes_params_unit: float = MES_PARAMS_UNIT  # U_size, parameters
    mes_latency_unit_ms: float = MES_LATENCY_UNIT_MS  # U_latency, ms
    mes_alpha_params: float = MES_ALPHA_PARAMS
    mes_alpha_latency: float = MES_ALPHA_LATENCY

    def __post_init__(self) -> None:
        for name in ("mes_params_unit", "mes_latency_unit_ms"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ObjectiveError(f"--{name.replace('_', '-')} must be a finite number > 0, not {v!r}")
        for name in ("mes_alpha_params", "mes_alpha_latency"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ObjectiveError(f"--{name.replace('_', '-')} must be a finite number >= 0, not {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


Factory = Callable[[SearchSpace, ObjectiveConfig], Objective]
_OBJECTIVES: dict[str, tuple[Factory, str]] = {}


def register_objective(name: str, description: str) -> Callable[[Factory], Factory]:
    def deco(fn: Factory) -> Factory:
        if name in _OBJECTIVES:
            raise ValueError(f"objective {name!r} registered twice")
        _OBJECTIVES[name] = (fn, description)
        return fn
    return deco


def list_objectives() -> list[str]:
    return sorted(_OBJECTIVES)


def describe_objectives() -> dict[str, str]:
    return {name: _OBJECTIVES[name][1] for name in list_objectives()}


def check_objective(name: str) -> None:
    """Raises ObjectiveError (one line, naming the known ones) for an unknown name."""
    if name not in _OBJECTIVES:
        raise ObjectiveError(f"unknown objective {name!r}; known: {list_objectives()}")


def create_objective(name: str, space: SearchSpace, config: ObjectiveConfig = ObjectiveConfig()) -> Objective:
    """The objective `name` for `space`. Raises ObjectiveError (unknown name, unreadable or foreign predictor)."""
    check_objective(name)
    return _OBJECTIVES[name][0](space, config)


# ---- the built-in objectives ---------------------------------------------------------------------
def _costs(space: SearchSpace, subnets: Sequence[Subnet], what: str) -> np.ndarray:
    i = ("macs", "params").index(what)
    return np.array([subnet_size(space, s)[i] for s in subnets], dtype=float)


@register_objective("macs", "multiply-accumulates (a complexity proxy for accuracy)")
def _macs(space: SearchSpace, config: ObjectiveConfig) -> Objective:
    return lambda space, subnets, latency_ms: _costs(space, subnets, "macs")


@register_objective("params", "number of parameters (a complexity proxy for accuracy)")
def _params(space: SearchSpace, config: ObjectiveConfig) -> Objective:
    return lambda space, subnets, latency_ms: _costs(space, subnets, "params")


def load_accuracy_predictor(path: Path | str, space: SearchSpace) -> Any:
    """A fitted AccuracyPredictor of `space` from `path`; every failure is one ObjectiveError line."""
    from nas.accuracy import AccuracyPredictor, feature_names  # torch and xgboost: only when asked for

    try:
        predictor = AccuracyPredictor.load(path)
    except OSError as e:
        raise ObjectiveError(f"accuracy predictor {path} cannot be read: {e.strerror or e}") from e
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # PredictorFormatError, XGBoostError included
        first = (str(e).strip().splitlines() or [""])[0]
        msg = first if str(path) in first else \
            f"{path}: not a readable accuracy predictor ({type(e).__name__}: {first})"
        raise ObjectiveError(msg) from e
    if predictor.space_ != space.name or predictor.feature_names_ != feature_names(space):
        raise ObjectiveError(f"accuracy predictor {path} was fitted on search space {predictor.space_!r}, "
                             f"not {space.name!r} (or on other features); refit it on this space")
    return predictor


def _predicted_top1(space: SearchSpace, config: ObjectiveConfig) -> Callable[[Sequence[Subnet]], np.ndarray] | None:
    if config.accuracy_predictor is None:
        return None
    predictor = load_accuracy_predictor(config.accuracy_predictor, space)
    return lambda subnets: np.asarray(predictor.predict(space, subnets), dtype=float)


@register_objective("accuracy", "top-1 predicted by a fitted accuracy predictor (--accuracy-predictor)")
def _accuracy(space: SearchSpace, config: ObjectiveConfig) -> Objective:
    top1 = _predicted_top1(space, config)
    if top1 is None:
        raise ObjectiveError("objective 'accuracy' needs an accuracy predictor file (--accuracy-predictor PATH, "
                             "written by python -m nas.evaluate --fit-predictor)")
    return lambda space, subnets, latency_ms: top1(subnets)


def mes(score: np.ndarray | float, params: np.ndarray, latency_ms: np.ndarray,
        config: ObjectiveConfig = ObjectiveConfig()) -> np.ndarray:
    """Mobile Efficiency Score: score * (params / U_size)^-alpha_size * (latency / U_latency)^-alpha_latency."""
    return (np.asarray(score, dtype=float)
            * (np.asarray(params, dtype=float) / config.mes_params_unit) ** -config.mes_alpha_params
            * (np.asarray(latency_ms, dtype=float) / config.mes_latency_unit_ms) ** -config.mes_alpha_latency)


@register_objective("mes", "EfficientFormerV2's Mobile Efficiency Score over parameters and latency; Score = "
                           "predicted top-1 in % with --accuracy-predictor, else the constant 100")
def _mes(space: SearchSpace, config: ObjectiveConfig) -> Objective:
    top1 = _predicted_top1(space, config)

    def objective(space: SearchSpace, subnets: Sequence[Subnet], latency_ms: np.ndarray) -> np.ndarray:
        score = MES_SCORE if top1 is None else 100.0 * top1(subnets)
        return mes(score, _costs(space, subnets, "params"), latency_ms, config)
    return objective
