"""Which blocks to measure, and in which order."""
from __future__ import annotations

import random
from typing import Sequence

from nas.blocks import BlockCfg
from nas.searchspace import SearchSpace
from nas.subnet import Subnet


def shuffled(blocks: list[BlockCfg], seed: int) -> list[BlockCfg]:
    """Seeded shuffle, so slow drift (heat, background load) does not bias one block type."""
    out = list(blocks)
    random.Random(seed).shuffle(out)
    return out


def plan_blocks(space: SearchSpace, budget: int | None, seed: int,
                already: set[str] | frozenset[str] = frozenset(), subnets: Sequence[Subnet] = ()) -> list[BlockCfg]:
    """All blocks of the space (or only those `subnets` run), or `budget` of them (`--pick random`): those
    already measured count towards it, the rest are a seeded random pick. The default pick is adaptive
    (profiler/adaptive.py)."""
    blocks = (list({b.key: b for s in subnets for b in space.blocks_of(s)}.values()) if subnets
              else space.enumerate_blocks())
    if budget is None or budget >= len(blocks):
        return shuffled(blocks, seed)
    kept = [b for b in blocks if b.key in already][:budget]
    rest = shuffled([b for b in blocks if b.key not in already], seed)
    return shuffled(kept + rest[: max(0, budget - len(kept))], seed)
