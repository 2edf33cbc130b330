"""Vectorised subnet -> block composition for fast network latency sums.

A subnet's blocks are fixed per stage: layer 0 (depends on resolution, previous width, width and
the stage's choices) and `depth - 1` copies of a later layer (same minus the previous width).
So each stage is two table look-ups, and a batch of subnets becomes a padded index matrix plus
a multiplicity matrix: latency = sum(values[index] * count, axis=1), all in numpy.
The tables are built once from the space's own layer -> block mapping (`SearchSpace.layer_blocks`,
the same code `blocks_of` uses), so there is no second definition of composition here.

A block the LUT lacks gets a position past the end of the keys (`len(keys) + 1 + j`, the key kept in
`missing_keys[j]`), so indexing values with it fails loudly and `missing` can name it.
"""
from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np

from nas.blocks import FirstConvCfg, HeadCfg, ceil_div
from nas.searchspace import InvalidSubnet, SearchSpace
from nas.subnet import StageChoice, Subnet

_CHOICE_FIELDS = ("kernel", "expand", "mlp", "v_scale")
PAD = -1  # an unused block slot: values[-1] is the padding value 0


class SubnetIndexer:
    """Encodes subnets of `space` into index/count matrices over `keys` (the LUT's key order)."""

    def __init__(self, space: SearchSpace, keys: Sequence[str]) -> None:
        self.space = space
        self.keys = list(keys)
        self.missing_keys: list[str] = []  # blocks of the space that `keys` lack, in order of discovery
        self._missing_pos: dict[str, int] = {}
        pos = {k: i for i, k in enumerate(self.keys)}
        self._res = {r: i for i, r in enumerate(space.resolutions)}
        # Per stage: value -> option index for width and each choice field (None when unused).
        self._opts: list[dict[str, dict[int | None, int]]] = []
        for spec in space.stages:
            opts = space.stage_options(spec)
            d = {"width": {w: i for i, w in enumerate(spec.widths)}, "depth": {v: v for v in spec.depths}}
            for f in _CHOICE_FIELDS:
                vals = opts.get(f, (None,))
                d[f] = {v: i for i, v in enumerate(vals)}
            self._opts.append(d)
        self._build(pos)

    def _pos(self, pos: Mapping[str, int], key: str) -> int:
        if key in pos:
            return pos[key]
        if key not in self._missing_pos:
            self._missing_pos[key] = len(self.keys) + 1 + len(self.missing_keys)
            self.missing_keys.append(key)
        return self._missing_pos[key]

    def _lookup(self, pos: Mapping[str, int], blocks: list) -> list[int]:
        return [self._pos(pos, b.key) for b in blocks]

    def _build(self, pos: Mapping[str, int]) -> None:
        sp = self.space
        w0 = sp.stages[0].widths
        self.first = np.array([[self._pos(pos, FirstConvCfg(resolution=r, cout=c).key) for c in w0]
                               for r in sp.resolutions])
        self.l0: list[np.ndarray] = []  # [res, prev width, width, *choices, block slot]
        self.l1: list[np.ndarray] = []  # [res, width, *choices, block slot]
        hws = [ceil_div(r, 2) for r in sp.resolutions]
        for i, spec in enumerate(sp.stages):
            prev = sp.stages[i - 1].widths if i > 0 else (None,)
            choice_vals = [list(self._opts[i][f]) for f in _CHOICE_FIELDS]
            shape0 = (len(hws), len(prev), len(spec.widths), *map(len, choice_vals))
            shape1 = (len(hws), len(spec.widths), *map(len, choice_vals))
            t0: dict[tuple, list[int]] = {}
            t1: dict[tuple, list[int]] = {}
            for ri, hw in enumerate(hws):
                hw_out = ceil_div(hw, spec.stride)
                for wi, w in enumerate(spec.widths):
                    for ci in itertools.product(*(range(len(v)) for v in choice_vals)):
                        ch = {f: choice_vals[j][ci[j]] for j, f in enumerate(_CHOICE_FIELDS)}
                        st = StageChoice(depth=1, width=w, **ch)
                        t1[(ri, wi, *ci)] = self._lookup(pos, sp.layer_blocks(spec, st, 1, hw_out, w))
                        for pi, p in enumerate(prev):
                            cin = w if p is None else p
                            t0[(ri, pi, wi, *ci)] = self._lookup(pos, sp.layer_blocks(spec, st, 0, hw, cin))
            self.l0.append(_dense(t0, shape0))
            self.l1.append(_dense(t1, shape1))
            hws = [ceil_div(h, spec.stride) for h in hws]
        wl = sp.stages[-1].widths
        self.head = np.array([[self._pos(pos, HeadCfg(hw=h, channels=c, hidden=sp.head_hidden,
                                                      expand=sp.head_expand).key) for c in wl] for h in hws])

    def encode(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """(n, 1 + 6 * stages) option indices: resolution, then per stage depth, width, choices."""
        n_st = len(self.space.stages)
        out = np.empty((len(subnets), 1 + 6 * n_st), dtype=np.int64)
        opts = self._opts
        for row, sub in enumerate(subnets):
            try:
                vals = [self._res[sub.resolution]]
                prev = 0
                for i, st in enumerate(sub.stages):
                    o = opts[i]
                    if st.width < prev:
                        raise InvalidSubnet(f"stage {i}: width {st.width} < previous {prev}")
                    prev = st.width
                    vals += (o["depth"][st.depth], o["width"][st.width], o["kernel"][st.kernel], o["expand"][st.expand],
                             o["mlp"][st.mlp], o["v_scale"][st.v_scale])
            except KeyError as e:
                raise InvalidSubnet(f"subnet {row}: value {e} is not an option of space {self.space.name!r}") from e
            if len(vals) != out.shape[1]:
                raise InvalidSubnet(f"subnet {row}: {len(sub.stages)} stages, space has {n_st}")
            out[row] = vals
        return out

    def index(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index, count) matrices: block positions in `keys` and how often each occurs. Blocks `keys`
        lacks are past its end (see `missing`); padding slots are PAD with count 0 or 1."""
        r = codes[:, 0]
        width_col = lambda i: 2 + 6 * i  # noqa: E731  (column of stage i's width option)
        idx = [self.first[r, codes[:, width_col(0)]][:, None]]  # stage 0's width is the first conv's
        cnt = [np.ones((len(codes), 1))]
        for i in range(len(self.space.stages)):
            c = codes[:, 1 + 6 * i: 7 + 6 * i]
            depth, w, ch = c[:, 0], c[:, 1], c[:, 2:].T
            pw = codes[:, width_col(i - 1)] if i > 0 else np.zeros_like(w)
            i0 = self.l0[i][(r, pw, w, *ch)]
            i1 = self.l1[i][(r, w, *ch)]
            idx += [i0, i1]
            cnt += [np.ones(i0.shape), np.repeat((depth - 1)[:, None], i1.shape[1], axis=1).astype(float)]
        idx.append(self.head[r, codes[:, width_col(len(self.space.stages) - 1)]][:, None])
        cnt.append(np.ones((len(codes), 1)))
        return np.hstack(idx), np.hstack(cnt)

    def missing(self, index: np.ndarray, count: np.ndarray) -> tuple[list[str], int]:
        """(keys that the encoded subnets run but `keys` lacks, first row running one); ([], -1) if none."""
        if not self.missing_keys or index.max(initial=PAD) <= len(self.keys):  # the common case: all there
            return [], -1
        bad = (index > len(self.keys)) & (count > 0)
        if not bad.any():
            return [], -1
        first = int(np.argwhere(bad)[0][0])
        return [self.missing_keys[i - len(self.keys) - 1] for i in np.unique(index[bad])], first


def _dense(table: dict[tuple, list[int]], shape: tuple[int, ...]) -> np.ndarray:
    """Dict of cell -> block indices as an int array [*shape, slots], padded with PAD."""
    slots = max(len(v) for v in table.values())
    arr = np.full((*shape, slots), PAD, dtype=np.int64)
    for cell, v in table.items():
        arr[cell][: len(v)] = v
    return arr
