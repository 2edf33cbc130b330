"""Vectorised subnet -> block composition for fast network latency sums, for any search space.

A stage's blocks depend only on the resolution, the previous stage's width and the stage's own choices
(stage 0 also runs the stem block, the last stage the head block), and only its layer 0 sees the previous
width. So each distinct (stage, resolution, previous width, stage choice) gets an entry id and each distinct
(stage, resolution, stage choice) a body id once, with the LUT positions and counts of their blocks, and a
batch of subnets becomes an (n, 2 x stages) matrix of ids: latency = sum over the row of per-id sums, all in
numpy. Ids are made on first sight (a space such as EfficientFormerV2's, with one expansion per block,
has too many stage choices to list up front). The blocks of an id come from the space's own hooks
(`stem_block`, `layer_blocks`, `head_block`, the code `layers_of` uses), so there is no second definition
of composition here.

A block the LUT lacks gets a position past the end of the keys (`len(keys) + j`, the key kept in
`missing_keys[j]`), so `missing_of` can name it.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from nas.blocks import BlockCfg, ceil_div
from nas.searchspace import InvalidSubnet, SearchSpace
from nas.subnet import StageChoice, Subnet


class SubnetIndexer:
    """Encodes subnets of `space` into (n, 2 x stages) matrices of ids over `keys` (the LUT's key order)."""

    def __init__(self, space: SearchSpace, keys: Sequence[str]) -> None:
        self.space = space
        self.keys = list(keys)
        self.missing_keys: list[str] = []  # blocks of the space that `keys` lack, in order of discovery
        self._pos = {k: i for i, k in enumerate(self.keys)}
        n_st = len(space.stages)
        self._res_index = {r: j for j, r in enumerate(space.resolutions)}
        # Per stage: its choices seen so far (id -> StageChoice, choice_key -> id, id -> width), and dense tables
        # of the ids made so far (-1: none yet): entry [choice id, previous width's index, resolution index],
        # body [choice id, resolution index] (only layer 0 sees the previous width). They grow with the choices.
        self._choices: list[list[StageChoice]] = [[] for _ in range(n_st)]
        self._choice_ids: list[dict[tuple, int]] = [{} for _ in range(n_st)]
        self._widths = [np.zeros(0, dtype=np.int64) for _ in range(n_st)]
        self._prev = [(0,), *(spec.widths for spec in space.stages[:-1])]  # previous widths (0: none)
        self._prev_index = []
        for opts in self._prev:
            index = np.full(max(opts) + 1, -1, dtype=np.int64)
            index[list(opts)] = np.arange(len(opts))
            self._prev_index.append(index)
        n_res = len(space.resolutions)
        self._entry = [np.full((0, len(opts), n_res), -1, dtype=np.int64) for opts in self._prev]
        self._body = [np.full((0, n_res), -1, dtype=np.int64) for _ in range(n_st)]
        self.positions: list[np.ndarray] = []  # per id: distinct block positions (>= len(keys): missing)
        self.counts: list[np.ndarray] = []  # per id: how often each of them runs
        self._last = len(space.stages) - 1
        # Side of the feature map entering each stage, per resolution (strides are fixed per stage).
        self._hw_in: list[dict[int, int]] = [{} for _ in space.stages]
        self._names = space.stage_names
        for res in space.resolutions:
            hw = self._stem(res, StageChoice(depth=1, width=space.stages[0].widths[0])).hw_out  # type: ignore[attr-defined]
            for i, spec in enumerate(space.stages):
                self._hw_in[i][res] = hw
                hw = ceil_div(hw, spec.stride)

    def _stem(self, res: int, st0: StageChoice) -> BlockCfg:
        return self.space.stem_block(Subnet(self.space.name, res, (st0,)))

    def _position(self, key: str) -> int:
        if key not in self._pos:
            self._pos[key] = len(self.keys) + len(self.missing_keys)
            self.missing_keys.append(key)
        return self._pos[key]

    def _new_id(self, i: int, res: int, prev: int, st: StageChoice, body: bool) -> int:
        """The blocks of stage i with choice `st` at `res`: its entry (the stem for stage 0, then layer 0, which
        alone sees the previous stage's width `prev`) or its body (the later layers, and the head after the last
        stage), with how often each runs."""
        sp, spec = self.space, self.space.stages[i]
        hw = self._hw_in[i][res]
        blocks: list[BlockCfg] = []
        if not body:
            if i == 0:
                blocks.append(self._stem(res, st))
            blocks += sp.layer_blocks(spec, st, 0, hw, prev or blocks[0].cout)  # type: ignore[attr-defined]
        else:
            hw = ceil_div(hw, spec.stride)
            for layer in range(1, st.depth):
                blocks += sp.layer_blocks(spec, st, layer, hw, st.width)
            if i == self._last:
                blocks.append(sp.head_block(hw, st.width))
        count: dict[int, int] = {}
        for b in blocks:
            p = self._position(b.key)
            count[p] = count.get(p, 0) + 1
        self.positions.append(np.fromiter(count.keys(), dtype=np.int64, count=len(count)))
        self.counts.append(np.fromiter(count.values(), dtype=float, count=len(count)))
        return len(self.positions) - 1

    def _choice_id(self, i: int, st: StageChoice, row: int) -> int:
        """Stage i's id for choice `st` (validated once, when first seen)."""
        try:
            self.space.validate_stage(self.space.stages[i], st)
        except InvalidSubnet as e:
            raise InvalidSubnet(f"subnet {row}: {e}") from e
        self._choices[i].append(st)
        self._choice_ids[i][st.choice_key] = len(self._choices[i]) - 1
        return len(self._choices[i]) - 1

    def _grow(self, i: int) -> None:
        """Room in stage i's id tables for every choice seen (capacity doubles, so growing stays cheap)."""
        n, cap = len(self._choices[i]), len(self._body[i])
        if n > cap:
            more = max(n, 2 * cap) - cap
            self._entry[i] = np.concatenate([self._entry[i], np.full((more, *self._entry[i].shape[1:]), -1)])
            self._body[i] = np.concatenate([self._body[i], np.full((more, *self._body[i].shape[1:]), -1)])

    def _choice_matrix(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """(n, 1 + stages): resolution index, then each stage's choice id (the one Python pass per subnet)."""
        n_st, name, res_index = len(self.space.stages), self.space.name, self._res_index
        dicts = self._choice_ids
        try:
            rows = [[res_index[sub.resolution], *[d.get(st.choice_key, -1) for d, st in zip(dicts, sub.stages)]]
                    for sub in subnets]
            codes = np.array(rows, dtype=np.int64).reshape(len(rows), 1 + n_st)
        except (KeyError, ValueError):
            codes = None
        bad = next((r for r, sub in enumerate(subnets) if sub.space != name or len(sub.stages) != n_st
                    or sub.resolution not in res_index), None)
        if bad is not None or codes is None:
            sub = subnets[bad or 0]
            raise InvalidSubnet(f"subnet {bad}: not a subnet of space {name!r} ({sub.space!r}, resolution "
                                f"{sub.resolution}, {len(sub.stages)} stages)")
        rows_new, stages_new = np.nonzero(codes[:, 1:] < 0)  # choices not seen before this call
        if rows_new.size:
            got = []
            for r, i in zip(rows_new.tolist(), stages_new.tolist()):
                st = subnets[r].stages[i]
                c = dicts[i].get(st.choice_key)
                got.append(c if c is not None else self._choice_id(i, st, r))
            codes[rows_new, stages_new + 1] = got
            for i in set(stages_new.tolist()):
                self._widths[i] = np.array([st.width for st in self._choices[i]], dtype=np.int64)
                self._grow(i)
        return codes

    def encode(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """(n, 2 x stages) ids: per stage its entry, then its body. Raises InvalidSubnet naming the subnet and
        what is wrong with it."""
        ch = self._choice_matrix(subnets)
        res = ch[:, 0]
        out = np.empty((len(subnets), 2 * len(self.space.stages)), dtype=np.int64)
        prev_width = np.zeros(len(subnets), dtype=np.int64)
        for i in range(len(self.space.stages)):
            choice = ch[:, 1 + i]
            width = self._widths[i][choice]
            low = np.flatnonzero(width < prev_width)
            if low.size:
                r = int(low[0])
                raise InvalidSubnet(f"subnet {r}: stage {self._names[i]} width {width[r]} < previous "
                                    f"{prev_width[r]}")
            out[:, 2 * i] = self._ids(self._entry[i], (choice, self._prev_index[i][prev_width], res),
                                      lambda c, p, r, i=i: self._new_id(i, self.space.resolutions[r], self._prev[i][p],
                                                                        self._choices[i][c], False))
            out[:, 2 * i + 1] = self._ids(self._body[i], (choice, res),
                                          lambda c, r, i=i: self._new_id(i, self.space.resolutions[r], 0,
                                                                         self._choices[i][c], True))
            prev_width = width
        return out

    @staticmethod
    def _ids(table: np.ndarray, cells: tuple[np.ndarray, ...], make: Callable[..., int]) -> np.ndarray:
        """table[cells], with an id made (and stored) for every distinct cell that has none yet."""
        got = table[cells]
        miss = np.flatnonzero(got < 0)
        if miss.size:
            flat = np.unique(np.ravel_multi_index(tuple(a[miss] for a in cells), table.shape))
            new = np.unravel_index(flat, table.shape)
            table[new] = [make(*cell) for cell in zip(*(a.tolist() for a in new))]
            got = table[cells]
        return got

    def block_counts(self, codes: np.ndarray) -> np.ndarray:
        """How often each key (then each missing key) runs, summed over the encoded subnets."""
        per_id = np.bincount(codes.ravel(), minlength=len(self.positions))
        out = np.zeros(len(self.keys) + len(self.missing_keys))
        for i in np.flatnonzero(per_id):
            np.add.at(out, self.positions[i], self.counts[i] * per_id[i])
        return out

    def id_sums(self, per_key: np.ndarray, start: int = 0) -> np.ndarray:
        """Per id from `start` on: sum of `per_key` (one value per key, NaN past the keys: missing) over its
        blocks, times how often each runs."""
        padded = np.append(per_key, np.full(len(self.missing_keys), np.nan))
        return np.array([padded[p] @ c for p, c in zip(self.positions[start:], self.counts[start:])])

    def missing_of(self, stage_id: int) -> list[str]:
        return [self.missing_keys[p - len(self.keys)] for p in self.positions[stage_id] if p >= len(self.keys)]
