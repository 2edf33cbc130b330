"""How block entries compose into a network, from the device's own probe, optionally refitted.

A block is timed alone, so it finds its weights in cache from its previous run; inside a network the
rest of the network has evicted them (`benchmarks/results/network_gap.md`: same ops, the gap is
cache state). The profiler measures a weight-streaming probe on every device (`nas.probes`): the
time to stream one MB of weights that are not in cache. Each block's in-network entry is

    entry = scale * (alone_ms + ms_per_weight_mb * weight MB of the block)

with scale = 1 and ms_per_weight_mb from the probe when no network was measured (`fit` 0): the sum
of the entries predicts a network by construction. `fit` on measured networks refines the two
numbers (ridge towards the probe's values). Saved, versioned, with the LUT (`META_KEY`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from nas.blocks import BlockCfg
from nas.costs import block_features
from predictor.lut import Lut
from predictor.lut_io import LutFormatError

FORMAT_NAME = "mobilevit-nas/composition"
FORMAT_VERSION = 1
METHOD = "weight-stream-v1"  # how the in-network term is measured (nas.probes.WeightStreamProbe)
META_KEY = "composition"  # where a Lut's meta keeps it
_OLD_META_KEY = "network_correction"  # LUTs made before entries composed (refused)
Network = Sequence[tuple[BlockCfg, float]]  # a network as its blocks with their alone entries (ms), in order


def weight_mb(cfg: BlockCfg) -> float:
    return block_features(cfg)["weight_bytes"] / 2**20


@dataclass(frozen=True)
class Composition:
    ms_per_weight_mb: float  # in-network cost of each MB of a block's weights
    scale: float = 1.0
    probe_ms_per_weight_mb: float = math.nan  # what the device's probe measured (before any fit)
    fitted_networks: int = 0  # networks `fit` saw (0: from the probe alone)
    method: str = METHOD

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ms_per_weight_mb) and math.isfinite(self.scale) and self.scale > 0):
            raise LutFormatError(f"composition has non-finite or non-positive terms: {self}")

    @classmethod
    def from_probe(cls, probe_ms: float, probe_weight_mb: float) -> Composition:
        """From the weight-stream probe's median (ms) and the MB of weights it streams."""
        if not (probe_ms > 0 and probe_weight_mb > 0):
            raise ValueError(f"probe {probe_ms!r} ms over {probe_weight_mb!r} MB is not a usable measurement")
        c = probe_ms / probe_weight_mb
        return cls(ms_per_weight_mb=c, probe_ms_per_weight_mb=c)

    def entry(self, cfg: BlockCfg, alone_ms: float) -> float:
        return self.scale * (alone_ms + self.ms_per_weight_mb * weight_mb(cfg))

    def predict(self, networks: Sequence[Network]) -> np.ndarray:
        return np.array([sum(self.entry(cfg, ms) for cfg, ms in net) for net in networks])

    def fit(self, networks: Sequence[Network], measured_ms: Sequence[float], ridge: float = 1.0) -> Composition:
        """Refit scale and ms_per_weight_mb on measured networks (relative least squares, each term pulled
        towards this composition's values by `ridge` x its column's mean square). Returns a new one."""
        y = np.asarray(measured_ms, dtype=float)
        if len(networks) != len(y):
            raise ValueError(f"{len(networks)} networks but {len(y)} measured latencies")
        if len(y) == 0:
            return self
        alone = np.array([sum(ms for _, ms in net) for net in networks])
        mb = np.array([sum(weight_mb(cfg) for cfg, _ in net) for net in networks])
        # y = a * alone + b * mb with a = scale, b = scale * ms_per_weight_mb; prior (self.scale, self's b)
        a = np.column_stack([alone, mb]) / y[:, None]
        prior = np.array([self.scale, self.scale * self.ms_per_weight_mb])
        lam = ridge * np.diag(np.maximum((a ** 2).mean(axis=0), 1e-12))
        theta = np.linalg.solve(a.T @ a + lam, a.T @ np.ones_like(y) + lam @ prior)
        if theta[0] <= 0:
            return self  # a fit that says networks take no time per block is noise, not a device
        return replace(self, scale=float(theta[0]), ms_per_weight_mb=float(theta[1] / theta[0]),
                       fitted_networks=len(y))

    def get_state(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_state(cls, state: dict) -> Composition:
        if state.get("format") != FORMAT_NAME or state.get("format_version") != FORMAT_VERSION:
            raise LutFormatError(f"composition state {state.get('format')!r} version {state.get('format_version')!r} "
                                 f"cannot be read by this code ({FORMAT_NAME!r} version {FORMAT_VERSION})")
        try:
            return cls(**{k: (v if k == "method" else (int(v) if k == "fitted_networks" else float(v)))
                          for k, v in state.items() if k not in ("format", "format_version")})
        except TypeError as e:
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
