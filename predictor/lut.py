"""Latency lookup table per (device, backend, space): one entry per block key, measured or predicted.

The container only; reading and writing LUT files is `predictor.lut_io`, summing a subnet's entries
`predictor.subnet_predictor`, the network-level correction `predictor.correction`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np

from nas.blocks import BlockCfg
from nas.searchspace import SearchSpace

Source = Literal["measured", "predicted"]
SOURCES: tuple[str, ...] = ("measured", "predicted")


@dataclass(frozen=True)
class LutEntry:
    latency_ms: float
    source: Source


@dataclass
class Lut:
    device: str
    backend: str
    space: str
    entries: dict[str, LutEntry] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)  # how it was made (budget, seed, predictor, ...)

    def set(self, key: str, latency_ms: float, source: Source) -> None:
        if source not in SOURCES:
            raise ValueError(f"source = {source!r} is not allowed; allowed: {list(SOURCES)}")
        if not (np.isfinite(latency_ms) and latency_ms > 0):
            raise ValueError(f"{key}: latency_ms = {latency_ms!r} must be positive and finite")
        self.entries[key] = LutEntry(float(latency_ms), source)

    def flat(self) -> dict[str, float]:
        return {k: e.latency_ms for k, e in self.entries.items()}

    def scaled(self, factor: float) -> "Lut":
        """Every entry times `factor` (sources and meta kept): the device's speed now, measured by re-timed blocks."""
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f"scale factor {factor!r} must be positive and finite")
        return Lut(self.device, self.backend, self.space,
                   {k: LutEntry(e.latency_ms * factor, e.source) for k, e in self.entries.items()}, dict(self.meta))

    def count(self, source: Source) -> int:
        return sum(e.source == source for e in self.entries.values())


def fill_lut(device: str, backend: str, space: SearchSpace, blocks: Sequence[BlockCfg],
             measured: Mapping[str, float], predictor, meta: dict | None = None) -> Lut:
    """Every block of `blocks`: the measured value where there is one, else `predictor.predict`."""
    lut = Lut(device, backend, space.name, meta=dict(meta or {}))
    todo = [b for b in blocks if b.key not in measured]
    pred = predictor.predict(todo) if todo else np.zeros(0)
    for b, v in zip(todo, pred):
        lut.set(b.key, float(v), "predicted")
    for b in blocks:
        if b.key in measured:
            lut.set(b.key, measured[b.key], "measured")
    return lut
