"""Block feature matrix for learned predictors: type one-hot, config fields + `nas.costs` analytical features.

Builds on `nas.costs.block_features` (the one feature function); only the block config's own
fields and the type one-hot are added here, so every predictor sees the same columns. Also the one
check of the latencies a model is fitted on (`check_latencies_ms`).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from nas.blocks import (
    BLOCK_FAMILIES,
    FAMILY_OF_TYPE,
    AttentionCfg,
    BlockCfg,
    EffAttnCfg,
    EffAttnDSCfg,
    EffConvDSCfg,
    EffFFNCfg,
    EffHeadCfg,
    EffStemCfg,
    FFNCfg,
    FirstConvCfg,
    HeadCfg,
    MBConvCfg,
    TransDSCfg,
)
from nas.costs import FEATURE_NAMES, block_features, log_features

# The type one-hot has the columns of the blocks' family (nas.blocks.BLOCK_FAMILIES): a model is fitted within
# one family, and adding a family leaves another's columns (so its fitted models and figures) as they were.
TYPE_NAMES_BY_FAMILY: dict[str, tuple[str, ...]] = {f: tuple(c.type for c in types)
                                                     for f, types in BLOCK_FAMILIES.items()}
CONFIG_NAMES: tuple[str, ...] = ("hw_in", "hw_out", "cin", "cout", "expand", "kernel", "stride", "se",
                                 "v_scale", "mlp")
TAIL_NAMES: tuple[str, ...] = (*CONFIG_NAMES, *(f"log_{n}" if not n.startswith("simd") else n for n in FEATURE_NAMES))


def family_of(cfgs: Sequence[BlockCfg]) -> str:
    """The one family of `cfgs` (ValueError for a mix: no model is fitted across families)."""
    fams = {FAMILY_OF_TYPE[c.type] for c in cfgs}
    if len(fams) != 1:
        raise ValueError(f"blocks of {len(fams)} families {sorted(fams)}: a latency model takes one family's")
    return fams.pop()


def column_names(family: str) -> tuple[str, ...]:
    return (*(f"type_{t}" for t in TYPE_NAMES_BY_FAMILY[family]), *TAIL_NAMES)


def config_fields(cfg: BlockCfg) -> dict[str, float]:
    """The block's own hyper-parameters on one shared schema (0 where a type has no such field)."""
    out = dict.fromkeys(CONFIG_NAMES, 0.0)
    if isinstance(cfg, FirstConvCfg):
        out.update(hw_in=cfg.resolution, hw_out=cfg.hw_out, cin=cfg.cin, cout=cfg.cout, kernel=cfg.kernel,
                   stride=cfg.stride, expand=1)
    elif isinstance(cfg, (AttentionCfg, FFNCfg, HeadCfg)):
        out.update(hw_in=cfg.hw, hw_out=cfg.hw, cin=cfg.channels, cout=cfg.channels, stride=1)
        if isinstance(cfg, AttentionCfg):
            out["v_scale"] = cfg.v_scale
        elif isinstance(cfg, FFNCfg):
            out["mlp"] = cfg.mlp
        else:
            out["expand"] = cfg.expand
    elif isinstance(cfg, (MBConvCfg, TransDSCfg)):
        out.update(hw_in=cfg.hw, hw_out=cfg.hw_out, cin=cfg.cin, cout=cfg.cout, expand=cfg.expand,
                   kernel=cfg.kernel, stride=cfg.stride, se=float(getattr(cfg, "se", True)))
    elif isinstance(cfg, EffStemCfg):  # two 3x3 stride-2 convs
        out.update(hw_in=cfg.resolution, hw_out=cfg.hw_out, cin=3, cout=cfg.cout, kernel=3, stride=4, expand=1)
    elif isinstance(cfg, (EffConvDSCfg, EffAttnDSCfg)):
        out.update(hw_in=cfg.hw, hw_out=cfg.hw_out, cin=cfg.cin, cout=cfg.cout, kernel=3, stride=2, expand=1)
    elif isinstance(cfg, (EffFFNCfg, EffAttnCfg)):  # stride: the attention's (2 = stride attention)
        out.update(hw_in=cfg.hw, hw_out=cfg.hw, cin=cfg.channels, cout=cfg.channels, kernel=3,
                   stride=getattr(cfg, "stride", 1), expand=cfg.expand)
    elif isinstance(cfg, EffHeadCfg):
        out.update(hw_in=cfg.hw, hw_out=1, cin=cfg.channels, cout=cfg.classes, stride=1, expand=1)
    else:
        raise TypeError(f"no config fields for block {cfg!r}")
    return out


def type_onehot(cfgs: Sequence[BlockCfg]) -> np.ndarray:
    """One row per config, one column per block type of their family: 1.0 at the config's type."""
    if len(cfgs) == 0:
        return np.zeros((0, len(TYPE_NAMES_BY_FAMILY["elasticvit"])))  # no blocks, no family: the default one
    names = TYPE_NAMES_BY_FAMILY[family_of(cfgs)]
    return np.array([[c.type == t for t in names] for c in cfgs], dtype=float).reshape(len(cfgs), -1)


@lru_cache(maxsize=65536)
def _row(cfg: BlockCfg) -> tuple[float, ...]:
    """The columns after the type one-hot (TAIL_NAMES)."""
    cf = config_fields(cfg)
    return (*(cf[n] for n in CONFIG_NAMES), *log_features(block_features(cfg)))


def tail_matrix(cfgs: Sequence[BlockCfg]) -> np.ndarray:
    """The columns after the type one-hot (TAIL_NAMES), the same in every family."""
    return np.array([_row(c) for c in cfgs], dtype=float).reshape(len(cfgs), len(TAIL_NAMES))


def feature_matrix(cfgs: Sequence[BlockCfg]) -> np.ndarray:
    """Rows in `column_names(family_of(cfgs))` order."""
    if len(cfgs) == 0:
        return np.zeros((0, len(column_names("elasticvit"))))
    return np.hstack([type_onehot(cfgs), tail_matrix(cfgs)])


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _shown(value: object) -> str:
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return repr(float(value))
    return repr(value)


def check_latencies_ms(values: Iterable[float] | np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    """Latencies in ms as a 1-D float array, each one finite and > 0.

    Raises ValueError naming the first bad value, and its name (e.g. the block key) when `names`
    (one per value) is given. Every predictor checks the latencies it is fitted on through here.
    """
    raw = values if isinstance(values, np.ndarray) else list(values)
    try:
        y = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):  # a non-number among them: it shows up below as the bad value
        y = np.array([_as_float(v) for v in raw], dtype=float)
    if y.ndim != 1:
        raise ValueError(f"latencies must be one sequence of numbers, got an array of shape {y.shape}")
    if names is not None and len(names) != len(y):
        raise ValueError(f"{len(y)} latencies but {len(names)} names")
    bad = np.flatnonzero(~(np.isfinite(y) & (y > 0)))
    if bad.size:
        i = int(bad[0])
        where = f"{names[i]}: latency_ms" if names is not None else f"latency_ms[{i}]"
        raise ValueError(f"{where} = {_shown(raw[i])} must be positive and finite")
    return y


def training_targets(cfgs: Sequence[BlockCfg], latency_ms: Iterable[float] | np.ndarray) -> np.ndarray:
    """The latencies a model is fitted on, checked: one per config, positive and finite."""
    values = latency_ms if isinstance(latency_ms, np.ndarray) else list(latency_ms)
    if len(cfgs) != len(values) or len(values) == 0:
        raise ValueError(f"need as many latencies as configs (got {len(cfgs)} configs, {len(values)} latencies)")
    return check_latencies_ms(values, names=[c.key for c in cfgs])
