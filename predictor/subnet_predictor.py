"""Network latency of subnets from one LUT: the sum of their blocks' in-network entries (the LUT's
`predictor.composition` applied to the sums of alone entries, weight MB per row count and ops), vectorised in numpy."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from nas.blocks import parse_key
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from predictor.composition import Composition, n_ops
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
    """Index over one LUT; `predict(subnets)` sums per-stage entries in numpy.

    `composition` (default: the LUT's own, `Composition.of_lut`; pass `plain=True` for the plain sum of
    the alone entries) turns each subnet's sums of alone entries and of weight MB into its latency."""

    def __init__(self, lut: Lut | Mapping[str, float], space: SearchSpace,
                 composition: Composition | None = None, plain: bool = False) -> None:
        flat = lut.flat() if isinstance(lut, Lut) else dict(lut)
        if composition is None and not plain and isinstance(lut, Lut):
            composition = Composition.of_lut(lut)
        self.composition = None if plain else composition
        self.indexer = SubnetIndexer(space, list(flat))
        values = np.fromiter(flat.values(), dtype=float, count=len(flat))
        if self.composition is None:
            self._per_key = values[:, None]
        else:  # per key: alone entry (times its type's scale, less its own footprint), weight MB per row, op count
            comp = self.composition
            cfgs = [parse_key(k) for k in flat]
            by_rows = np.array([comp.by_tokens(c) for c in cfgs], dtype=float).reshape(len(cfgs), -1)
            # own_ms enters network_ms as -weight_scale * own, a per-key constant: folded into the first column
            scaled = values * np.array([comp.type_scale(c) for c in cfgs]) - comp.weight_scale * np.array(
                [comp.own_ms(c) for c in cfgs])
            self._per_key = np.column_stack([scaled, by_rows, [n_ops(c) for c in cfgs]])
        self._sums = np.zeros((0, self._per_key.shape[1]))  # per stage id: the sums of its blocks' columns

    def _stage_sums(self, codes: np.ndarray) -> np.ndarray:
        n_ids = len(self.indexer.positions)
        if len(self._sums) < n_ids:  # stage ids made since the last call
            new = np.column_stack([self.indexer.id_sums(col, len(self._sums)) for col in self._per_key.T])
            self._sums = np.vstack([self._sums, new.reshape(-1, self._per_key.shape[1])])
        return self._sums

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        """Latency (ms) of subnets encoded by `self.indexer.encode`. Raises MissingKeyError."""
        sums = self._stage_sums(codes)
        total = sums[codes].sum(1)
        bad = np.isnan(total[:, 0])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            ids = [*codes[row], *np.unique(codes[bad])]  # the first such subnet's keys first, in block order
            keys = list(dict.fromkeys(k for i in ids for k in self.indexer.missing_of(int(i))))
            raise MissingKeyError(keys, row, self.indexer.space.name)
        if self.composition is None:
            return total[:, 0]
        return self.composition.network_ms(total[:, 0], total[:, 1:-1], total[:, -1])

    def predict(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """Latency (ms) of each subnet. Raises InvalidSubnet, MissingKeyError."""
        return self.predict_codes(self.indexer.encode(subnets))


def predict_subnets(lut: Lut | Mapping[str, float], subnets: Sequence[Subnet], space: SearchSpace,
                    composition: Composition | None = None) -> np.ndarray:
    """Latency (ms) of each subnet: sum of its block entries (one-off; reuse SubnetPredictor for many calls)."""
    return SubnetPredictor(lut, space, composition).predict(subnets)
