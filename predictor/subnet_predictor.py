"""Network latency of subnets from one LUT: the sum of their blocks' in-network entries (the LUT's
`predictor.composition` applied to the sums of alone entries and weight MB), vectorised in numpy."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from nas.blocks import parse_key
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from predictor.composition import Composition, n_ops, weight_mb
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
    """Precomputed index over one LUT; `predict(subnets)` sums entries in numpy.

    `composition` (default: the LUT's own, `Composition.of_lut`; pass `plain=True` for the plain sum of
    the alone entries) turns each subnet's sums of alone entries and of weight MB into its latency."""

    def __init__(self, lut: Lut | Mapping[str, float], space: SearchSpace,
                 composition: Composition | None = None, plain: bool = False) -> None:
        flat = lut.flat() if isinstance(lut, Lut) else dict(lut)
        if composition is None and not plain and isinstance(lut, Lut):
            composition = Composition.of_lut(lut)
        self.composition = None if plain else composition
        self.indexer = SubnetIndexer(space, list(flat))
        self.values = np.append(np.fromiter(flat.values(), dtype=float, count=len(flat)), 0.0)  # [-1]: padding
        cfgs = [parse_key(k) for k in flat] if self.composition is not None else []
        # per key: weight MB and op count, summed per subnet like the entries ([-1]: padding)
        self.terms = np.array([[weight_mb(c), n_ops(c)] for c in cfgs] + [[0.0, 0.0]]) if cfgs else None

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        """Latency (ms) of subnets encoded by `self.indexer.encode`. Raises MissingKeyError."""
        index, count = self.indexer.index(codes)
        missing, row = self.indexer.missing(index, count)
        if missing:
            raise MissingKeyError(missing, row, self.indexer.space.name)
        alone = (self.values[index] * count).sum(1)
        if self.composition is None or self.terms is None:
            return alone
        w, ops = (self.terms[index] * count[..., None]).sum(1).T
        return self.composition.network_ms(alone, w, ops)

    def predict(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """Latency (ms) of each subnet. Raises InvalidSubnet, MissingKeyError."""
        return self.predict_codes(self.indexer.encode(subnets))


def predict_subnets(lut: Lut | Mapping[str, float], subnets: Sequence[Subnet], space: SearchSpace,
                    composition: Composition | None = None) -> np.ndarray:
    """Latency (ms) of each subnet: sum of its block entries (one-off; reuse SubnetPredictor for many calls)."""
    return SubnetPredictor(lut, space, composition).predict(subnets)
