"""Search strategies by name: `evolution` (ElasticViT's evolutionary search, `nas.evolution.search`) and
`slimming` (EfficientFormerV2's greedy slimming, `nas.slimming.slim`). Each takes (space, latency, limits,
objective, settings, rng, top, progress, evaluator) and returns a SearchResult; `create_strategy` binds what
one needs beyond that (slimming's MES units)."""
from __future__ import annotations

from functools import partial
from typing import Callable

from nas.evolution import search
from nas.objectives import ObjectiveConfig
from nas.slimming import slim

Strategy = Callable[..., object]
STRATEGIES: dict[str, str] = {
    "evolution": "ElasticViT's evolutionary search (population, mutation, crossover)",
    "slimming": "EfficientFormerV2's greedy slimming from the largest subnet: the smallest objective drop per "
                "gain of MES (size and latency) at each step",
}


def create_strategy(name: str, config: ObjectiveConfig | None = None) -> Strategy:
    """The strategy `name` (ValueError naming the known ones for another)."""
    if name == "evolution":
        return search
    if name == "slimming":
        return partial(slim, mes_config=config or ObjectiveConfig())
    raise ValueError(f"unknown search strategy {name!r}; known: {sorted(STRATEGIES)}")
