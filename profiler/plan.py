"""Which blocks to measure, and in which order."""
from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from nas.blocks import BlockCfg
from nas.searchspace import SearchSpace
from nas.subnet import Subnet


def shuffled(blocks: Sequence[BlockCfg], seed: int) -> list[BlockCfg]:
    """Seeded shuffle, so slow drift (heat, background load) does not bias one block type."""
    out = list(blocks)
    random.Random(seed).shuffle(out)
    return out


def candidate_blocks(space: SearchSpace, subnets: Sequence[Subnet] = ()) -> list[BlockCfg]:
    """All blocks of the space, or only those `subnets` run (each once)."""
    if subnets:
        return list({b.key: b for s in subnets for b in space.blocks_of(s)}.values())
    return space.enumerate_blocks()


def pick_budget(blocks: Sequence[BlockCfg], budget: int | None, seed: int,
                already: Collection[str] = frozenset()) -> list[BlockCfg]:
    """`blocks` in a seeded order, or `budget` of them (`--pick random`): those the device has already
    measured count towards it, the rest are a seeded random pick. The default pick is adaptive
    (profiler/adaptive.py)."""
    if budget is None or budget >= len(blocks):
        return shuffled(blocks, seed)
    kept = [b for b in blocks if b.key in already][:budget]
    rest = shuffled([b for b in blocks if b.key not in already], seed)
    return shuffled(kept + rest[: max(0, budget - len(kept))], seed)
