"""Latency-constrained evolutionary search over a space's subnets, scored by a named objective.

Latency is any callable `latency(subnets) -> array` (the command line `nas.search` passes a device
LUT's `SubnetPredictor`: its composed block entries), so one
generation of hundreds of candidates costs milliseconds. Objectives are chosen by name
(`OBJECTIVES`); higher is better. Without a trained supernet the built-in objectives are complexity
proxies: `macs` (the most compute the budget allows, the usual stand-in for accuracy at equal
architecture family) and `params`. A trained supernet's accuracy plugs in as any callable
`score(space, subnets) -> array`. Each distinct candidate is evaluated once (the search keeps the
ones it has seen) and its features come from the cache of `nas.costs.subnet_costs`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from nas.costs import subnet_costs
from nas.searchspace import SearchSpace
from nas.subnet import StageChoice, Subnet

Objective = Callable[[SearchSpace, Sequence[Subnet]], np.ndarray]
OBJECTIVES: dict[str, Objective] = {}


def register_objective(name: str) -> Callable[[Objective], Objective]:
    def deco(fn: Objective) -> Objective:
        OBJECTIVES[name] = fn
        return fn
    return deco


@register_objective("macs")
def macs_objective(space: SearchSpace, subnets: Sequence[Subnet]) -> np.ndarray:
    return np.array([subnet_costs(space, s)["macs"] for s in subnets], dtype=float)


@register_objective("params")
def params_objective(space: SearchSpace, subnets: Sequence[Subnet]) -> np.ndarray:
    return np.array([subnet_costs(space, s)["params"] for s in subnets], dtype=float)


class Infeasible(ValueError):
    """No subnet of the space meets the constraints."""


@dataclass(frozen=True)
class Constraints:
    latency_ms: float
    max_params: float | None = None  # EfficientFormerV2-style joint size limit (number of parameters)


@dataclass(frozen=True)
class SearchSettings:
    population: int = 100
    generations: int = 30
    parents: int = 25
    mutation_prob: float = 0.2  # per choice
    crossover_share: float = 0.5  # share of children made by crossover (the rest by mutation)


@dataclass(frozen=True)
class Candidate:
    subnet: Subnet
    latency_ms: float
    params: float
    score: float


@dataclass
class SearchResult:
    best: list[Candidate]  # feasible, best score first, distinct
    evaluated: int
    best_per_generation: list[float] = field(default_factory=list)
    feasible_seen: list[Candidate] = field(default_factory=list)  # every feasible candidate evaluated, best first


def repair_widths(space: SearchSpace, stages: list[StageChoice]) -> list[StageChoice]:
    """Raise any width below the previous stage's to the smallest allowed one at or above it."""
    out, prev = [], 0
    for spec, st in zip(space.stages, stages):
        if st.width < prev:
            st = replace(st, width=min((w for w in spec.widths if w >= prev), default=max(spec.widths)))
        prev = st.width
        out.append(st)
    return out


def mutate(space: SearchSpace, sub: Subnet, rng: random.Random, prob: float) -> Subnet:
    res = rng.choice(space.resolutions) if rng.random() < prob else sub.resolution
    stages = []
    for spec, st in zip(space.stages, sub.stages):
        changes = {f: rng.choice(v) for f, v in space.stage_options(spec).items() if rng.random() < prob}
        stages.append(replace(st, **changes))
    return space.validate(Subnet(sub.space, res, tuple(repair_widths(space, stages))))


def crossover(space: SearchSpace, a: Subnet, b: Subnet, rng: random.Random) -> Subnet:
    stages = [x if rng.random() < 0.5 else y for x, y in zip(a.stages, b.stages)]
    res = rng.choice((a.resolution, b.resolution))
    return space.validate(Subnet(a.space, res, tuple(repair_widths(space, stages))))


class Evaluator:
    """Latency, params and score of subnets; counts evaluations."""

    def __init__(self, space: SearchSpace, latency: Callable[[Sequence[Subnet]], np.ndarray], score: Objective):
        self.space, self.latency, self.score, self.evaluated = space, latency, score, 0

    def __call__(self, subnets: Sequence[Subnet]) -> list[Candidate]:
        if not subnets:
            return []
        self.evaluated += len(subnets)
        lat = self.latency(subnets)
        params = params_objective(self.space, subnets)
        score = self.score(self.space, subnets)
        return [Candidate(s, float(t), float(p), float(v)) for s, t, p, v in zip(subnets, lat, params, score)]


def feasible(c: Candidate, limits: Constraints) -> bool:
    return c.latency_ms <= limits.latency_ms and (limits.max_params is None or c.params <= limits.max_params)


def search(space: SearchSpace, latency: Callable[[Sequence[Subnet]], np.ndarray], limits: Constraints,
           objective: str | Objective = "macs", settings: SearchSettings = SearchSettings(),
           rng: random.Random | None = None, top: int = 5, progress: bool = False) -> SearchResult:
    """Evolve a population of feasible subnets towards the best `objective` under `limits`.

    Raises Infeasible (naming the smallest subnet's latency and size) when not even the space's
    smallest subnet meets the limits."""
    rng = rng or random.Random(0)
    score = OBJECTIVES[objective] if isinstance(objective, str) else objective
    ev = Evaluator(space, latency, score)
    smallest = ev([space.min_subnet()])[0]
    if not feasible(smallest, limits):
        want, have = f"latency <= {limits.latency_ms:g} ms", f"{smallest.latency_ms:.3f} ms"
        if limits.max_params is not None:
            want += f" and params <= {limits.max_params / 1e6:.2f} M"
            have += f", {smallest.params / 1e6:.2f} M params"
        raise Infeasible(f"no subnet of {space.name!r} meets {want}: the smallest is predicted at {have}")
    seen: dict[Subnet, Candidate] = {smallest.subnet: smallest}

    def admit(cands: list[Candidate]) -> list[Candidate]:
        for c in cands:
            seen.setdefault(c.subnet, c)
        return [c for c in cands if feasible(c, limits)]

    # Initial population: random samples, plus mutants of the smallest subnet when few samples fit.
    pop = [smallest]
    for _ in range(20):
        if len(pop) >= settings.population:
            break
        draws = [space.sample(rng) for _ in range(settings.population * 2)]
        draws += [mutate(space, smallest.subnet, rng, settings.mutation_prob) for _ in range(settings.population)]
        pop += admit(ev([s for s in dict.fromkeys(draws) if s not in seen]))
    pop = sorted(pop, key=lambda c: -c.score)[:settings.population]
    history = []
    for _ in tqdm(range(settings.generations), desc="search", unit="gen", disable=not progress, dynamic_ncols=True):
        parents = pop[:settings.parents]
        children: list[Subnet] = []
        n_cross = int(settings.population * settings.crossover_share)
        for i in range(settings.population * 2):  # twice as many tries: infeasible children are dropped
            if i < 2 * n_cross and len(parents) > 1:
                a, b = rng.sample(parents, 2)
                children.append(crossover(space, a.subnet, b.subnet, rng))
            else:
                children.append(mutate(space, rng.choice(parents).subnet, rng, settings.mutation_prob))
        fresh = admit(ev([s for s in dict.fromkeys(children) if s not in seen]))
        pop = sorted({c.subnet: c for c in pop + fresh}.values(), key=lambda c: -c.score)[:settings.population]
        history.append(pop[0].score)
    good = sorted((c for c in seen.values() if feasible(c, limits)), key=lambda c: -c.score)
    return SearchResult(best=good[:top], evaluated=ev.evaluated, best_per_generation=history, feasible_seen=good)

