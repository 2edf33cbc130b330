"""Network latency of subnets from one LUT: the sum of their blocks' entries, vectorised in numpy,
optionally with the device's network-level correction (`predictor.correction`)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from nas.blocks import parse_key
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from predictor.correction import NetworkCorrection
from predictor.lut import Lut
from predictor.lut_io import LutFormatError
from predictor.subnet_index import SubnetIndexer


class MissingKeyError(LutFormatError):
    """A subnet runs a block that the LUT has no entry for; the message names the key(s)."""

    def __init__(self, keys: Sequence[str], row: int, space: str) -> None:
        self.keys = list(keys)
        shown = ", ".join(map(repr, self.keys[:3])) + (", ..." if len(self.keys) > 3 else "")
        super().__init__(f"{len(self.keys)} block key(s) these subnets run are not among the LUT's keys "
                         f"(first in subnet {row}): {shown}; is it a complete LUT of space {space!r}?")


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
        """Latency (ms) of subnets encoded by `self.indexer.encode`. Raises MissingKeyError."""
        index, count = self.indexer.index(codes)
        missing, row = self.indexer.missing(index, count)
        if missing:
            raise MissingKeyError(missing, row, self.indexer.space.name)
        out = (self.values[index] * count).sum(1) + self.offset_ms
        if self.res_scale is not None:
            out += self.res_scale[codes[:, 0]] * (self.plain[index] * count).sum(1)
        return out

    def predict(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """Latency (ms) of each subnet. Raises InvalidSubnet, MissingKeyError."""
        return self.predict_codes(self.indexer.encode(subnets))


def predict_subnets(lut: Lut | Mapping[str, float], subnets: Sequence[Subnet], space: SearchSpace,
                    correction: NetworkCorrection | None = None) -> np.ndarray:
    """Latency (ms) of each subnet: sum of its block entries (one-off; reuse SubnetPredictor for many calls)."""
    return SubnetPredictor(lut, space, correction).predict(subnets)
