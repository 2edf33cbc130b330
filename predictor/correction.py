"""Network-level correction: whole-network latency from its blocks' LUT entries.

Fitted on whole networks measured on a device (`predictor.validate`) and saved, versioned, in the
meta of that device's LUT (`NetworkCorrection.META_KEY`); `SubnetPredictor` folds it into its sums.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

from nas.blocks import BLOCK_TYPES, BlockCfg, FirstConvCfg
from nas.costs import block_features
from predictor.lut import Lut
from predictor.lut_io import LutFormatError

FORMAT_NAME = "mobilevit-nas/network-correction"
FORMAT_VERSION = 1
# Every field of a saved state; states saved before versioning ("format" absent) load if they have them all.
_STATE_FIELDS = ("scale", "ms_per_weight_mb", "per_block_ms", "offset_ms", "ridge", "min_per_resolution",
                 "scale_by_resolution")
Network = Sequence[tuple[BlockCfg, float]]  # a network as its blocks with their LUT entries (ms), in order


def weight_mb(cfg: BlockCfg) -> float:
    return block_features(cfg)["weight_bytes"] / 2**20


def network_resolution(net: Network) -> int:
    """A network's input resolution: its first conv's."""
    for cfg, _ in net:
        if isinstance(cfg, FirstConvCfg):
            return cfg.resolution
    raise ValueError("a network's blocks must include its first conv (firstconv) to know its resolution")


class NetworkCorrection:
    """Whole network = sum over its blocks of (scale[type] * entry + ms_per_weight_mb * weight MB
    + per_block_ms) + scale_by_resolution[R] * (plain block sum) + offset_ms.

    A block timed alone finds its weights and activations in cache from its previous run; inside a
    network every block starts with the cache filled by the others, so each block pays for fetching its
    weights again (`benchmarks/bench_network_gap.py`: the ops are identical, the gap is cache warmth).
    Measured networks show this as a per-type scale, a cost per MB of weights and a per-block cost; what
    is left varies with the input resolution (feature-map sizes against the caches), hence a scale per
    resolution seen in the data, relative to the most common one. Fitted by least squares on relative error
    with a ridge pull towards the plain sum (scale 1, no extra cost), so a handful of networks cannot overfit;
    each term's penalty is scaled by its column's mean square, so terms in different units (ms, MB, blocks)
    are pulled alike.
    The per-block terms fold into the entries (`correct_entry`); subnet prediction stays two vectorised
    sums (`SubnetPredictor`)."""

    def __init__(self, ridge: float = 0.5, min_per_resolution: int = 5) -> None:
        self.ridge = ridge  # 0.5: lowest MAPE of 0.5/1/2/4 in 5-fold CV, on 8 and on 100 networks of this host
        # Fewer networks than this at a resolution overfit its scale (8 networks over 6 resolutions did).
        self.min_per_resolution = min_per_resolution

    @staticmethod
    def _features(networks: Sequence[Network], resolutions: Sequence[int]) -> np.ndarray:
        rows = []
        for net in networks:
            sums = dict.fromkeys(BLOCK_TYPES, 0.0)
            mb = 0.0
            for cfg, ms in net:
                sums[cfg.type] += ms
                mb += weight_mb(cfg)
            plain, r = sum(sums.values()), network_resolution(net)
            rows.append([*sums.values(), mb, float(len(net)), 1.0, *(plain * (r == res) for res in resolutions)])
        return np.array(rows, dtype=float)

    def fit(self, networks: Sequence[Network], measured_ms: Sequence[float]) -> "NetworkCorrection":
        # One scale per resolution but the most common one (the baseline the type scales describe: a
        # scale for every resolution would duplicate them), and only for resolutions with enough networks
        # to fit it; the others are treated as the baseline.
        counts = Counter(network_resolution(n) for n in networks)
        baseline = max(sorted(counts), key=counts.__getitem__)
        resolutions = [r for r in sorted(counts) if r != baseline and counts[r] >= self.min_per_resolution]
        f, y = self._features(networks, resolutions), np.asarray(measured_ms, dtype=float)
        if len(f) != len(y) or len(y) == 0:
            raise ValueError(f"need networks and measured latencies of equal, non-zero length ({len(f)}, {len(y)})")
        a = f / y[:, None]  # relative residuals: divide rows by the measured latency
        theta0 = np.array([1.0] * len(BLOCK_TYPES) + [0.0] * (3 + len(resolutions)))
        lam = self.ridge * np.diag(np.maximum((a ** 2).mean(axis=0), 1e-12))
        theta = np.linalg.solve(a.T @ a + lam, a.T @ np.ones_like(y) + lam @ theta0)
        n = len(BLOCK_TYPES)
        self.scale_ = dict(zip(BLOCK_TYPES, map(float, theta[:n])))
        self.ms_per_weight_mb_, self.per_block_ms_, self.offset_ms_ = map(float, theta[n:n + 3])
        self.scale_by_resolution_ = dict(zip(resolutions, map(float, theta[n + 3:])))
        return self

    def _check(self) -> None:
        if not hasattr(self, "scale_"):
            raise RuntimeError("NetworkCorrection is not fitted yet: call fit(networks, measured_ms) first")

    def correct_entry(self, cfg: BlockCfg, ms: float) -> float:
        self._check()
        return self.scale_[cfg.type] * ms + self.ms_per_weight_mb_ * weight_mb(cfg) + self.per_block_ms_

    def predict(self, networks: Sequence[Network]) -> np.ndarray:
        self._check()
        return np.array([sum(self.correct_entry(cfg, ms) for cfg, ms in net) + self.offset_ms_
                         + self.scale_by_resolution_.get(network_resolution(net), 0.0) * sum(ms for _, ms in net)
                         for net in networks])

    def get_state(self) -> dict:
        """JSON-able and versioned (`from_state` reads it back)."""
        self._check()
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "scale": self.scale_, "ms_per_weight_mb": self.ms_per_weight_mb_, "per_block_ms": self.per_block_ms_,
                "offset_ms": self.offset_ms_, "ridge": self.ridge, "min_per_resolution": self.min_per_resolution,
                "scale_by_resolution": {str(r): v for r, v in self.scale_by_resolution_.items()}}

    META_KEY = "network_correction"  # where a Lut's meta keeps the fitted state


    @classmethod
    def of_lut(cls, lut: Lut) -> "NetworkCorrection | None":
        """The correction fitted for `lut`'s device (saved by `predictor.validate`), if any."""
        state = lut.meta.get(cls.META_KEY)
        return cls.from_state(state) if state else None

    @classmethod
    def from_state(cls, state: dict) -> "NetworkCorrection":
        """Inverse of `get_state`. Raises LutFormatError for another format or version, or a missing field."""
        if not isinstance(state, dict):
            raise LutFormatError(f"network correction state is {state!r}, expected a dict")
        if "format" in state or "format_version" in state:  # states saved before versioning have neither
            if state.get("format") != FORMAT_NAME or state.get("format_version") != FORMAT_VERSION:
                raise LutFormatError(
                    f"network correction state of format {state.get('format')!r} version "
                    f"{state.get('format_version')!r} cannot be read by this code ({FORMAT_NAME!r} version "
                    f"{FORMAT_VERSION}); refit it (predictor.validate)")
        missing = [f for f in _STATE_FIELDS if f not in state]
        if missing:
            raise LutFormatError(f"network correction state lacks {', '.join(map(repr, missing))}; "
                                 "refit it (predictor.validate)")
        try:
            scale, by_res = dict(state["scale"]), dict(state["scale_by_resolution"])
            lacking = [t for t in BLOCK_TYPES if t not in scale]
            if lacking:
                raise ValueError(f"'scale' lacks block type(s) {lacking}")
            m = cls(float(state["ridge"]), int(state["min_per_resolution"]))
            m.scale_ = {k: float(v) for k, v in scale.items()}
            m.ms_per_weight_mb_ = float(state["ms_per_weight_mb"])
            m.per_block_ms_, m.offset_ms_ = float(state["per_block_ms"]), float(state["offset_ms"])
            m.scale_by_resolution_ = {int(r): float(v) for r, v in by_res.items()}
        except (TypeError, ValueError) as e:
            raise LutFormatError(f"network correction state is malformed: {e}") from e
        values = [*m.scale_.values(), m.ms_per_weight_mb_, m.per_block_ms_, m.offset_ms_,
                  *m.scale_by_resolution_.values()]
        if not all(map(math.isfinite, values)):
            raise LutFormatError("network correction state has a non-finite coefficient; refit it (predictor.validate)")
        return m
