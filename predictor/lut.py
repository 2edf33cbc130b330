"""Latency lookup table per (device, backend): one entry per block key, measured or predicted.

Saved as versioned JSON; exported to the published nn-Meter format (flat key -> ms). Network
latency is the sum of a subnet's block entries (`predict_subnets`, vectorised), optionally
passed through a fitted linear correction when whole-network measurements exist.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

from nas.blocks import BlockCfg
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from predictor.subnet_index import SubnetIndexer

log = logging.getLogger(__name__)

LUT_FORMAT = "mobilevit-nas/lut"
LUT_FORMAT_VERSION = 1
Source = Literal["measured", "predicted"]
SOURCES: tuple[str, ...] = ("measured", "predicted")


class LutFormatError(ValueError):
    """A LUT file this code cannot read."""


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

    def count(self, source: Source) -> int:
        return sum(e.source == source for e in self.entries.values())

    # ---- files ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        doc = {"format": LUT_FORMAT, "format_version": LUT_FORMAT_VERSION, "device": self.device,
               "backend": self.backend, "space": self.space, "meta": self.meta,
               "entries": {k: {"latency_ms": e.latency_ms, "source": e.source} for k, e in self.entries.items()}}
        Path(path).write_text(json.dumps(doc, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Lut":
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != LUT_FORMAT:
            raise LutFormatError(f"{path}: not a {LUT_FORMAT} file (a flat nn-Meter LUT? use Lut.from_nnmeter)")
        if doc.get("format_version") != LUT_FORMAT_VERSION:
            raise LutFormatError(f"{path}: LUT format version {doc.get('format_version')} is not supported "
                                 f"(this code reads {LUT_FORMAT_VERSION})")
        lut = cls(doc["device"], doc["backend"], doc["space"], meta=doc.get("meta", {}))
        for k, e in doc["entries"].items():
            lut.set(k, e["latency_ms"], e["source"])
        return lut

    def export_nnmeter(self, path: str | Path) -> None:
        """The published format: one flat JSON object, key -> ms."""
        Path(path).write_text(json.dumps(self.flat(), indent=1))

    @classmethod
    def from_nnmeter(cls, path: str | Path, device: str, backend: str, space: str,
                     source: Source = "measured") -> "Lut":
        flat = json.loads(Path(path).read_text())
        if not isinstance(flat, dict):
            raise LutFormatError(f"{path}: expected a flat JSON object key -> ms")
        lut = cls(device, backend, space)
        for k, v in flat.items():
            lut.set(k, float(v), source)
        return lut


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


class NetworkCorrection:
    """Whole-network latency = a * (sum of block entries) + b, fitted on relative error.

    Block-wise timing misses inter-block effects (cache state, fused boundaries, framework
    overhead per graph); with a few measured networks this linear map removes their mean."""

    def fit(self, sum_ms: Sequence[float], measured_ms: Sequence[float]) -> "NetworkCorrection":
        s, y = np.asarray(sum_ms, dtype=float), np.asarray(measured_ms, dtype=float)
        if len(s) != len(y) or len(y) == 0:
            raise ValueError(f"need (sum, measured) network pairs of equal length (got {len(s)} and {len(y)})")
        if len(y) == 1:  # one network fixes a scale but not an offset: stay proportional
            self.scale_, self.offset_ms_ = float(y[0] / s[0]), 0.0
            return self
        a = np.column_stack([s, np.ones_like(s)]) / y[:, None]  # relative residuals: divide rows by y
        (self.scale_, self.offset_ms_), *_ = np.linalg.lstsq(a, np.ones_like(y), rcond=None)
        return self

    def predict(self, sum_ms: np.ndarray) -> np.ndarray:
        if not hasattr(self, "scale_"):
            raise RuntimeError("NetworkCorrection is not fitted yet: call fit(sum_ms, measured_ms) first")
        return self.scale_ * np.asarray(sum_ms, dtype=float) + self.offset_ms_

    def get_state(self) -> dict:
        return {"scale": float(self.scale_), "offset_ms": float(self.offset_ms_)}

    @classmethod
    def from_state(cls, state: dict) -> "NetworkCorrection":
        m = cls()
        m.scale_, m.offset_ms_ = float(state["scale"]), float(state["offset_ms"])
        return m


class SubnetPredictor:
    """Precomputed index over one LUT; `predict(subnets)` sums entries in numpy."""

    def __init__(self, lut: Lut | Mapping[str, float], space: SearchSpace,
                 correction: NetworkCorrection | None = None) -> None:
        flat = lut.flat() if isinstance(lut, Lut) else dict(lut)
        self.indexer = SubnetIndexer(space, list(flat))
        self.values = np.append(np.fromiter(flat.values(), dtype=float, count=len(flat)), 0.0)  # [-1]: padding
        self.correction = correction

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        index, count = self.indexer.index(codes)
        total = (self.values[index] * count).sum(1)
        return self.correction.predict(total) if self.correction is not None else total

    def predict(self, subnets: Sequence[Subnet]) -> np.ndarray:
        return self.predict_codes(self.indexer.encode(subnets))


def predict_subnets(lut: Lut | Mapping[str, float], subnets: Sequence[Subnet], space: SearchSpace,
                    correction: NetworkCorrection | None = None) -> np.ndarray:
    """Latency (ms) of each subnet: sum of its block entries (one-off; reuse SubnetPredictor for many calls)."""
    return SubnetPredictor(lut, space, correction).predict(subnets)
