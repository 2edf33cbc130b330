"""Latency lookup table per (device, backend): one entry per block key, measured or predicted.

Saved as versioned JSON; exported to the published nn-Meter format (flat key -> ms). Network
latency is the sum of a subnet's block entries (`predict_subnets`, vectorised), optionally
plus a fitted network-level correction when whole-network measurements exist.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

from nas.blocks import BLOCK_TYPES, BlockCfg, FirstConvCfg, parse_key
from nas.costs import block_features
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
        return cls.from_doc(json.loads(Path(path).read_text()), path)

    @classmethod
    def from_doc(cls, doc: dict, path: str | Path) -> "Lut":
        if doc.get("format") != LUT_FORMAT:
            raise LutFormatError(f"{path}: not a {LUT_FORMAT} file (a flat nn-Meter LUT? use open_lut)")
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


def open_lut(name_or_path: str | Path, space: str = "elasticvit") -> Lut:
    """A LUT from this project's format (with sources and meta), a flat nn-Meter `.json`/`.json.gz`,
    or the name of a shipped published LUT (`pixel4`, `xiaomi11`). Raises LutFormatError / OSError."""
    from profiler.published import load_lut, lut_path

    path = lut_path(name_or_path, space)
    data = load_lut(path, space)
    if "format" in data:  # this project's format (parsed once, here)
        return Lut.from_doc(data, path)
    lut = Lut(path.name.split(".")[0], "cpu", space, meta={"source": str(path)})
    for k, v in data.items():
        if not isinstance(v, (int, float)):
            raise LutFormatError(f"{path}: {k} has latency {v!r}; expected a number of ms")
        lut.set(k, float(v), "measured")
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
    resolution seen in the data, relative to the most common one. Fitted by least squares on relative error with a ridge pull towards the
    plain sum (scale 1, no extra cost), so a handful of networks cannot overfit; each term's penalty is
    scaled by its column's mean square, so terms in different units (ms, MB, blocks) are pulled alike.
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
        self._check()
        return {"scale": self.scale_, "ms_per_weight_mb": self.ms_per_weight_mb_, "per_block_ms": self.per_block_ms_,
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
        m = cls(float(state.get("ridge", 0.5)), int(state.get("min_per_resolution", 5)))
        m.scale_ = {k: float(v) for k, v in state["scale"].items()}
        m.ms_per_weight_mb_ = float(state.get("ms_per_weight_mb", 0.0))  # absent in states saved before it existed
        m.per_block_ms_, m.offset_ms_ = float(state["per_block_ms"]), float(state["offset_ms"])
        m.scale_by_resolution_ = {int(r): float(v) for r, v in state.get("scale_by_resolution", {}).items()}
        return m


class SubnetPredictor:
    """Precomputed index over one LUT; `predict(subnets)` sums entries in numpy."""

    def __init__(self, lut: Lut | Mapping[str, float], space: SearchSpace,
                 correction: NetworkCorrection | None = None) -> None:
        flat = lut.flat() if isinstance(lut, Lut) else dict(lut)
        self.indexer = SubnetIndexer(space, list(flat))
        self.plain = np.append(np.fromiter(flat.values(), dtype=float, count=len(flat)), 0.0)  # [-1]: padding
        self.values, self.offset_ms, self.res_scale = self.plain, 0.0, None
        if correction is not None:  # the per-block terms are linear per entry: fold them in once
            corrected = (correction.correct_entry(parse_key(k), v) for k, v in flat.items())
            self.values = np.append(np.fromiter(corrected, dtype=float, count=len(flat)), 0.0)
            self.offset_ms = correction.offset_ms_
            if correction.scale_by_resolution_:  # indexed like the codes' resolution column
                self.res_scale = np.array([correction.scale_by_resolution_.get(r, 0.0) for r in space.resolutions])

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        index, count = self.indexer.index(codes)
        out = (self.values[index] * count).sum(1) + self.offset_ms
        if self.res_scale is not None:
            out += self.res_scale[codes[:, 0]] * (self.plain[index] * count).sum(1)
        return out

    def predict(self, subnets: Sequence[Subnet]) -> np.ndarray:
        return self.predict_codes(self.indexer.encode(subnets))


def predict_subnets(lut: Lut | Mapping[str, float], subnets: Sequence[Subnet], space: SearchSpace,
                    correction: NetworkCorrection | None = None) -> np.ndarray:
    """Latency (ms) of each subnet: sum of its block entries (one-off; reuse SubnetPredictor for many calls)."""
    return SubnetPredictor(lut, space, correction).predict(subnets)
