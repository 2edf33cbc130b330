"""How block entries compose into a network, from the device's own probes, optionally refitted.

A block is timed alone, so it finds its weights in cache from its previous run; inside a network the
rest of the network has evicted them (`benchmarks/results/network_gap.md`: same ops, the gap is
cache state). Where they come from instead depends on how many MB of weights the whole network
cycles through: from the last-level cache while they fit in it, from DRAM beyond (twice as slow per
MB on this host). The profiler measures weight-streaming probes of 8 to 128 MB on every device
(`nas.probes.weight_stream_curve`): T(W), the time to stream W MB that cycle through the caches.
A block's in-network entry inside a network with W_net MB of weights is

    entry = scale * (alone_ms + weight_scale * weight MB of the block * T(W_net) / W_net + ms_per_op * ops)

with scale = weight_scale = 1 and ms_per_op = 0 when no network was measured (`fit` 0): the sum of
the entries predicts a network by construction, from blocks and probes only. `fit` on measured
networks refines the three numbers (ridge towards those values); ms_per_op is what a block's ops cost
in a network beyond their weights (no probe measures it: tiny-op chains cost under 3 µs per op here,
cold or hot, `benchmarks/results/network_composition_choice.md`). Saved, versioned, with the LUT
(`META_KEY`); compositions made another way (older versions, the old fitted network correction) are
refused, never mixed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from nas.blocks import BlockCfg
from nas.costs import block_features
from predictor.lut import Lut
from predictor.lut_io import LutFormatError

FORMAT_NAME = "mobilevit-nas/composition"
FORMAT_VERSION = 3
METHOD = "weight-stream-curve-v3"  # how the in-network term is measured (nas.probes.weight_stream_curve)
META_KEY = "composition"  # where a Lut's meta keeps it
_OLD_META_KEY = "network_correction"  # LUTs made before entries composed (refused)
Network = Sequence[tuple[BlockCfg, float]]  # a network as its blocks with their alone entries (ms), in order


def weight_mb(cfg: BlockCfg) -> float:
    return block_features(cfg)["weight_bytes"] / 2**20


def n_ops(cfg: BlockCfg) -> float:
    return block_features(cfg)["n_ops"]


@dataclass(frozen=True)
class Composition:
    curve_mb: tuple[float, ...]  # weight-stream probe sizes (MB), increasing
    curve_ms: tuple[float, ...]  # their measured medians (ms)
    weight_scale: float = 1.0  # multiplies the in-network weight term (1: as the probes say)
    scale: float = 1.0
    ms_per_op: float = 0.0  # in-network cost per op (nas.costs' op count) beyond weights; fitted only
    fitted_networks: int = 0  # networks `fit` saw (0: from blocks and probes alone)
    method: str = METHOD

    def __post_init__(self) -> None:
        mb, ms = np.asarray(self.curve_mb, float), np.asarray(self.curve_ms, float)
        if len(mb) < 1 or mb.shape != ms.shape or not (np.all(np.isfinite(mb)) and np.all(np.isfinite(ms))
                                                     and np.all(mb > 0) and np.all(ms > 0)):
            raise LutFormatError(f"composition needs positive, finite probe sizes and times: {self}")
        if np.any(np.diff(mb) <= 0):
            raise LutFormatError(f"composition probe sizes must increase: {self.curve_mb}")
        if not (math.isfinite(self.weight_scale) and math.isfinite(self.ms_per_op) and math.isfinite(self.scale)
                and self.scale > 0):
            raise LutFormatError(f"composition has non-finite or non-positive terms: {self}")

    @classmethod
    def from_probes(cls, probes: Mapping[float, float]) -> Composition:
        """From the weight-stream probes: MB of weights streamed -> median ms."""
        bad = {mb: ms for mb, ms in probes.items() if not (mb > 0 and ms > 0)}
        if not probes or bad:
            raise ValueError(f"probes {bad or probes!r} are not usable measurements (need MB > 0 -> ms > 0)")
        mb = tuple(sorted(probes))
        return cls(curve_mb=tuple(float(m) for m in mb), curve_ms=tuple(float(probes[m]) for m in mb))

    def ms_per_weight_mb(self, network_weight_mb: np.ndarray | float) -> np.ndarray:
        """In-network cost of one MB of weights in a network of `network_weight_mb` MB (outside the probed
        range: the nearest probe's per-MB cost)."""
        mb = np.asarray(self.curve_mb)
        w = np.clip(np.asarray(network_weight_mb, dtype=float), mb[0], mb[-1])
        return np.interp(w, mb, np.asarray(self.curve_ms)) / w

    def network_ms(self, alone_ms: np.ndarray | float, network_weight_mb: np.ndarray | float,
                   ops: np.ndarray | float) -> np.ndarray:
        """Sum of a network's in-network entries from the sums of its alone entries, weight MB and ops."""
        w = np.asarray(network_weight_mb, dtype=float)
        return self.scale * (np.asarray(alone_ms, dtype=float) + self.weight_scale * w * self.ms_per_weight_mb(w)
                             + self.ms_per_op * np.asarray(ops, dtype=float))

    def entries(self, network: Network) -> list[float]:
        """Each block's in-network entry (ms); they sum to the network's prediction."""
        per_mb = float(self.ms_per_weight_mb(sum(weight_mb(cfg) for cfg, _ in network)))
        return [self.scale * (ms + self.weight_scale * weight_mb(cfg) * per_mb + self.ms_per_op * n_ops(cfg))
                for cfg, ms in network]

    @staticmethod
    def _sums(networks: Sequence[Network]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per network: the sums of its alone entries, weight MB and ops."""
        return (np.array([sum(ms for _, ms in net) for net in networks], dtype=float),
                np.array([sum(weight_mb(cfg) for cfg, _ in net) for net in networks], dtype=float),
                np.array([sum(n_ops(cfg) for cfg, _ in net) for net in networks], dtype=float))

    def predict(self, networks: Sequence[Network]) -> np.ndarray:
        return self.network_ms(*self._sums(networks))

    def fit(self, networks: Sequence[Network], measured_ms: Sequence[float], ridge: float = 1.0) -> Composition:
        """Refit scale, weight_scale and ms_per_op on measured networks (relative least squares, each term
        pulled towards this composition's values by `ridge` x its column's mean square). Returns a new one."""
        y = np.asarray(measured_ms, dtype=float)
        if len(networks) != len(y):
            raise ValueError(f"{len(networks)} networks but {len(y)} measured latencies")
        if len(y) == 0:
            return self
        # y = a * alone + b * weights + c * ops: a = scale, b = scale * weight_scale, c = scale * ms_per_op
        alone, w, ops = self._sums(networks)
        a = np.column_stack([alone, w * self.ms_per_weight_mb(w), ops]) / y[:, None]
        prior = self.scale * np.array([1.0, self.weight_scale, self.ms_per_op])
        lam = ridge * np.diag(np.maximum((a ** 2).mean(axis=0), 1e-12))
        theta = np.linalg.solve(a.T @ a + lam, a.T @ np.ones_like(y) + lam @ prior)
        if theta[0] <= 0:
            return self  # a fit that says networks take no time per block is noise, not a device
        return replace(self, scale=float(theta[0]), weight_scale=float(theta[1] / theta[0]),
                       ms_per_op=float(theta[2] / theta[0]), fitted_networks=len(y))

    def get_state(self) -> dict:
        state = asdict(self)
        state["curve_mb"], state["curve_ms"] = list(self.curve_mb), list(self.curve_ms)
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **state}

    @classmethod
    def from_state(cls, state: dict) -> Composition:
        if state.get("format") != FORMAT_NAME or state.get("format_version") != FORMAT_VERSION:
            raise LutFormatError(f"composition state {state.get('format')!r} version {state.get('format_version')!r} "
                                 f"cannot be read by this code ({FORMAT_NAME!r} version {FORMAT_VERSION}): it was "
                                 "made another way; re-run `python -m predictor.validate ... --lut-out` for its device")
        try:
            kw = {k: v for k, v in state.items() if k not in ("format", "format_version")}
            kw["curve_mb"], kw["curve_ms"] = tuple(map(float, kw["curve_mb"])), tuple(map(float, kw["curve_ms"]))
            for k in ("weight_scale", "scale", "ms_per_op"):
                kw[k] = float(kw[k])
            kw["fitted_networks"] = int(kw["fitted_networks"])
            return cls(**kw)
        except (TypeError, KeyError, ValueError) as e:
            raise LutFormatError(f"composition state is malformed: {e}") from e

    @classmethod
    def of_lut(cls, lut: Lut) -> Composition | None:
        """The LUT's composition; None for LUTs without one (published phone LUTs: plain block sums).
        A LUT made before entries composed (a fitted 'network_correction' instead) is refused."""
        if _OLD_META_KEY in lut.meta and META_KEY not in lut.meta:
            raise LutFormatError(f"LUT of {lut.device} was made before block entries composed (it carries the old "
                                 "network correction): re-run `python -m predictor.validate ... --lut-out` for it")
        state = lut.meta.get(META_KEY)
        return cls.from_state(state) if state else None
