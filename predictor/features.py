"""Block feature matrix for learned predictors: config fields + `nas.costs` analytical features.

Builds on `nas.costs.block_features` (the one feature function); only the block config's own
fields and the type one-hot are added here, so every predictor sees the same columns.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from nas.blocks import BLOCK_TYPES, AttentionCfg, BlockCfg, FFNCfg, FirstConvCfg, HeadCfg
from nas.costs import FEATURE_NAMES, block_features, log_features

TYPE_NAMES: tuple[str, ...] = tuple(BLOCK_TYPES)
CONFIG_NAMES: tuple[str, ...] = ("hw_in", "hw_out", "cin", "cout", "expand", "kernel", "stride", "se",
                                 "v_scale", "mlp")
COLUMN_NAMES: tuple[str, ...] = (*(f"type_{t}" for t in TYPE_NAMES), *CONFIG_NAMES,
                                 *(f"log_{n}" if not n.startswith("simd") else n for n in FEATURE_NAMES))


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
    else:  # MBConvCfg, TransDSCfg
        out.update(hw_in=cfg.hw, hw_out=cfg.hw_out, cin=cfg.cin, cout=cfg.cout, expand=cfg.expand,
                   kernel=cfg.kernel, stride=cfg.stride, se=float(getattr(cfg, "se", True)))
    return out


@lru_cache(maxsize=65536)
def _row(cfg: BlockCfg) -> tuple[float, ...]:
    onehot = [1.0 if cfg.type == t else 0.0 for t in TYPE_NAMES]
    cf = config_fields(cfg)
    return (*onehot, *(cf[n] for n in CONFIG_NAMES), *log_features(block_features(cfg)))


def feature_matrix(cfgs: Sequence[BlockCfg]) -> np.ndarray:
    """Rows in COLUMN_NAMES order."""
    if len(cfgs) == 0:
        return np.zeros((0, len(COLUMN_NAMES)))
    return np.array([_row(c) for c in cfgs], dtype=float)


def training_targets(cfgs: Sequence[BlockCfg], latency_ms: Sequence[float]) -> np.ndarray:
    """The latencies a model is fitted on, checked: one per config, positive and finite."""
    y = np.asarray(latency_ms, dtype=float)
    if len(cfgs) != len(y) or len(y) == 0:
        raise ValueError(f"need as many latencies as configs (got {len(cfgs)} configs, {len(y)} latencies)")
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies must be positive and finite")
    return y
