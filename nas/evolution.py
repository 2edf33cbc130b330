"""Latency-constrained evolutionary search over a space's subnets, scored by a named objective.

Latency is any callable `latency(subnets) -> array` (the command line `nas.search` passes a device
LUT's `SubnetPredictor`: its composed block entries, one vectorised call per batch), so one
generation of hundreds of candidates costs milliseconds. The objective (higher is better) is a name
from `nas.objectives` (`macs`, `params`, `accuracy`, `mes`) or any callable
`objective(space, subnets, latency_ms) -> array`. `Evaluator` computes latency, size and objective once
per distinct subnet and caches them, so the searches of a family (`search_family`: one search per
latency limit) share every candidate they have in common. Defaults follow ElasticViT's search (see
`SearchSettings`).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from nas.costs import subnet_size
from nas.objectives import Objective, create_objective
from nas.searchspace import SearchSpace
from nas.subnet import StageChoice, Subnet


class Infeasible(ValueError):
    """No subnet of the space meets the constraints."""


@dataclass(frozen=True)
class Constraints:
    latency_ms: float
    max_params: float | None = None  # EfficientFormerV2-style joint size limit (number of parameters)


@dataclass(frozen=True)
class SearchSettings:
    """ElasticViT's evolutionary search (Tang et al. 2023, as the project's field notes record it): 512 initial
    candidates, the top 256 kept as parents, 128 mutations + 128 crossovers per generation, 40 generations,
    mutation probability 0.2 per choice. `parents` defaults to half the population; each generation makes
    `population - parents` feasible children this search has not seen before (the `crossover_share` of them
    by crossover; drawn again, at most `max_tries` rounds, where too few fit), and the next population is the
    parents plus those children. Where few random samples meet a tight limit, the initial population is
    completed with mutants of the feasible ones (ElasticViT's description says only "512 initial candidates")."""

    population: int = 512
    generations: int = 40
    parents: int | None = None  # None: population // 2
    mutation_prob: float = 0.2  # per choice
    crossover_share: float = 0.5  # share of children made by crossover (the rest by mutation)
    max_tries: int = 8  # children drawn per generation at most: max_tries x the children wanted

    def __post_init__(self) -> None:
        if self.parents is None:
            object.__setattr__(self, "parents", max(1, self.population // 2))
        if self.population < 2 or self.generations < 0:
            raise ValueError("population must be >= 2 and generations >= 0")
        if not 1 <= self.parents < self.population:  # type: ignore[operator]
            raise ValueError(f"parents must be between 1 and population - 1 ({self.population - 1}), "
                             f"not {self.parents}")
        if not (0 <= self.mutation_prob <= 1 and 0 <= self.crossover_share <= 1 and self.max_tries >= 1):
            raise ValueError("mutation_prob and crossover_share must be within [0, 1], max_tries >= 1")

    @property
    def children(self) -> int:
        return self.population - int(self.parents)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Candidate:
    subnet: Subnet
    latency_ms: float
    params: float
    score: float


@dataclass
class SearchResult:
    best: list[Candidate]  # feasible, best score first, distinct
    evaluated: int  # distinct subnets this search considered (computed, or found in a shared Evaluator's cache)
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
        stages.append(space.mutate_stage(spec, st, rng, prob))
    return space.validate(Subnet(sub.space, res, tuple(repair_widths(space, stages))))


def crossover(space: SearchSpace, a: Subnet, b: Subnet, rng: random.Random) -> Subnet:
    stages = [x if rng.random() < 0.5 else y for x, y in zip(a.stages, b.stages)]
    res = rng.choice((a.resolution, b.resolution))
    return space.validate(Subnet(a.space, res, tuple(repair_widths(space, stages))))


class Evaluator:
    """Latency, size and objective of subnets, each computed once per distinct subnet and cached.

    One call makes one vectorised latency query for the subnets not cached yet, then one objective call for
    those that meet `limits` (all of them when `limits` is None) and have no score yet: an infeasible subnet
    costs a latency query only, and its score is nan until a wider limit admits it. Share one Evaluator
    between searches (a family) to reuse everything. `computed`: the distinct subnets scored."""

    def __init__(self, space: SearchSpace, latency: Callable[[Sequence[Subnet]], np.ndarray],
                 objective: Objective) -> None:
        self.space, self.latency, self.objective = space, latency, objective
        self._latency: dict[Subnet, float] = {}
        self._params: dict[Subnet, float] = {}  # only where needed: a size limit, or the latency fits
        self._score: dict[Subnet, float] = {}

    @property
    def computed(self) -> int:
        return len(self._score)

    @property
    def queried(self) -> int:
        """Distinct subnets whose latency was predicted."""
        return len(self._latency)

    def _size(self, s: Subnet) -> float:
        if s not in self._params:
            self._params[s] = subnet_size(self.space, s)[1]
        return self._params[s]

    def _meets(self, s: Subnet, limits: Constraints) -> bool:
        lat_ok = self._latency[s] <= limits.latency_ms
        return lat_ok and (limits.max_params is None or self._size(s) <= limits.max_params)

    def __call__(self, subnets: Sequence[Subnet], limits: Constraints | None = None) -> list[Candidate]:
        distinct = list(dict.fromkeys(subnets))
        new = [s for s in distinct if s not in self._latency]
        if new:
            lat = np.asarray(self.latency(new), dtype=float).reshape(-1)
            if len(lat) != len(new):
                raise ValueError(f"latency returned {len(lat)} values for {len(new)} subnets")
            self._latency.update(zip(new, lat.tolist()))
        todo = [s for s in distinct if s not in self._score and (limits is None or self._meets(s, limits))]
        if todo:
            lat = np.array([self._latency[s] for s in todo])
            score = np.asarray(self.objective(self.space, todo, lat), dtype=float).reshape(-1)
            if len(score) != len(todo):
                raise ValueError(f"the objective returned {len(score)} values for {len(todo)} subnets")
            if not np.isfinite(score).all():
                bad = todo[int(np.flatnonzero(~np.isfinite(score))[0])]
                raise ValueError(f"the objective is not finite for subnet {bad.to_dict(self.space.stage_names)}")
            self._score.update(zip(todo, score.tolist()))
        # params: computed for every subnet whose latency fits (or all, without limits); nan where not needed
        return [Candidate(s, self._latency[s],
                          self._size(s) if limits is None or self._latency[s] <= limits.latency_ms
                          else self._params.get(s, math.nan),
                          self._score.get(s, math.nan)) for s in subnets]


def feasible(c: Candidate, limits: Constraints) -> bool:
    return c.latency_ms <= limits.latency_ms and (limits.max_params is None or c.params <= limits.max_params)


def _objective(space: SearchSpace, objective: str | Objective) -> Objective:
    return create_objective(objective, space) if isinstance(objective, str) else objective


def search(space: SearchSpace, latency: Callable[[Sequence[Subnet]], np.ndarray], limits: Constraints,
           objective: str | Objective = "macs", settings: SearchSettings = SearchSettings(),
           rng: random.Random | None = None, top: int = 5, progress: bool = False,
           evaluator: Evaluator | None = None) -> SearchResult:
    """Evolve a population of feasible subnets towards the best `objective` under `limits`.

    `evaluator` (optional) is a shared cache of evaluated subnets (its objective is used, not `objective`).
    Raises Infeasible (naming the smallest subnet's latency and size) when not even the space's
    smallest subnet meets the limits."""
    rng = rng or random.Random(0)
    ev = evaluator or Evaluator(space, latency, _objective(space, objective))
    smallest = ev([space.min_subnet()], limits)[0]
    if not feasible(smallest, limits):
        want, have = f"latency <= {limits.latency_ms:g} ms", f"{smallest.latency_ms:.3f} ms"
        if limits.max_params is not None:
            want += f" and params <= {limits.max_params / 1e6:.2f} M"
            have += f", {subnet_size(space, smallest.subnet)[1] / 1e6:.2f} M params"
        raise Infeasible(f"no subnet of {space.name!r} meets {want}: the smallest is predicted at {have}")
    seen: dict[Subnet, Candidate] = {smallest.subnet: smallest}

    def admit(subnets: list[Subnet]) -> list[Candidate]:
        """The feasible ones among subnets this search has not seen yet (each seen once)."""
        fresh = ev([s for s in dict.fromkeys(subnets) if s not in seen], limits)
        for c in fresh:
            seen[c.subnet] = c
        return [c for c in fresh if feasible(c, limits)]

    # Initial population: random samples, plus mutants of the feasible ones so far (at first the smallest
    # subnet): under a tight limit few random samples fit.
    pop = [smallest]
    for _ in range(20):
        if len(pop) >= settings.population:
            break
        draws = [space.sample(rng) for _ in range(settings.population)]
        draws += [mutate(space, rng.choice(pop).subnet, rng, settings.mutation_prob)
                  for _ in range(settings.population)]
        pop += admit(draws)
    pop = sorted(pop, key=lambda c: -c.score)[:settings.population]
    want = settings.children
    n_cross = round(want * settings.crossover_share)
    history = []
    for _ in tqdm(range(settings.generations), desc=f"search {limits.latency_ms:g} ms", unit="gen",
                  disable=not progress, dynamic_ncols=True):
        parents = pop[:settings.parents]
        children: list[Candidate] = []
        for _ in range(settings.max_tries):  # infeasible and already seen children are dropped: draw again
            missing = want - len(children)
            if missing <= 0:
                break
            n_c = round(missing * n_cross / want) if len(parents) > 1 else 0  # the crossover share
            batch = [crossover(space, *(c.subnet for c in rng.sample(parents, 2)), rng) for _ in range(n_c)]
            batch += [mutate(space, rng.choice(parents).subnet, rng, settings.mutation_prob)
                      for _ in range(missing - n_c)]
            children += admit(batch)[:missing]
        pop = sorted(parents + children, key=lambda c: -c.score)
        history.append(pop[0].score)
    good = sorted((c for c in seen.values() if feasible(c, limits)), key=lambda c: -c.score)
    return SearchResult(best=good[:top], evaluated=len(seen), best_per_generation=history, feasible_seen=good)


def pareto_front(cands: Sequence[Candidate]) -> list[Candidate]:
    """The candidates no other one beats on both predicted latency (lower) and score (higher), fastest first;
    along the front both latency and score strictly increase (of equal ones, the first is kept)."""
    front: list[Candidate] = []
    best = -math.inf
    for c in sorted(cands, key=lambda c: (c.latency_ms, -c.score)):
        if c.score > best:
            front.append(c)
            best = c.score
    return front


@dataclass
class FamilyResult:
    """One search per latency limit, sharing one Evaluator (each distinct subnet computed once)."""

    limits: list[Constraints]
    results: list[SearchResult | Infeasible]  # per limit, in the order of `limits`
    pareto: list[Candidate]  # over every feasible candidate of every member, fastest first
    computed: int  # distinct subnets scored by the objective (each once)

    @property
    def feasible(self) -> list[tuple[Constraints, SearchResult]]:
        return [(lim, r) for lim, r in zip(self.limits, self.results) if isinstance(r, SearchResult)]


def search_family(space: SearchSpace, latency: Callable[[Sequence[Subnet]], np.ndarray],
                  limits: Sequence[Constraints], objective: str | Objective = "macs",
                  settings: SearchSettings = SearchSettings(), seed: int = 0, top: int = 5,
                  progress: bool = False, strategy: Callable[..., SearchResult] | None = None) -> FamilyResult:
    """`search` under each of `limits` (each with `random.Random(seed)`, so a member finds what a search of that
    limit alone finds), sharing one cache. An infeasible limit is recorded as its Infeasible error; the
    others run. `strategy`: another search with `search`'s signature (`nas.strategies`), default `search`."""
    ev = Evaluator(space, latency, _objective(space, objective))
    results: list[SearchResult | Infeasible] = []
    for lim in limits:
        try:
            results.append((strategy or search)(space, latency, lim, settings=settings, rng=random.Random(seed),
                                                top=top, progress=progress, evaluator=ev))
        except Infeasible as e:
            results.append(e)
    pool = {c.subnet: c for r in results if isinstance(r, SearchResult) for c in r.feasible_seen}
    return FamilyResult(list(limits), results, pareto_front(list(pool.values())), ev.computed)
