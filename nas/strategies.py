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
# name -> (description, factory of the search function given the objective's settings)
_STRATEGIES: dict[str, tuple[str, Callable[[ObjectiveConfig], Strategy]]] = {
    "evolution": ("ElasticViT's evolutionary search (population, mutation, crossover)", lambda config: search),
    "slimming": ("EfficientFormerV2's greedy slimming from the largest subnet: the smallest objective drop per "
                 "gain of MES (size and latency) at each step", lambda config: partial(slim, mes_config=config)),
}
STRATEGIES: dict[str, str] = {name: desc for name, (desc, _) in _STRATEGIES.items()}


def create_strategy(name: str, config: ObjectiveConfig | None = None) -> Strategy:
    """The strategy `name` (ValueError naming the known ones for another)."""
    if name not in _STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; known: {sorted(STRATEGIES)}")
    return _STRATEGIES[name][1](config or ObjectiveConfig())
