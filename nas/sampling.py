"""Which subnets a supernet trains on at each step, chosen by name (`SAMPLERS`).

`uniform`: every choice drawn uniformly (once-for-all's default). `complexity`: ElasticViT's
complexity-aware sampling: subnets are grouped into MACs buckets (log-spaced from the smallest to
the largest subnet) and the bucket moves by at most one per step, a random walk over all buckets.
Adjacent steps therefore train subnets of similar size (fewer conflicting gradients), while over
many steps every size is covered.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Protocol

from nas.costs import subnet_costs
from nas.evolution import mutate
from nas.searchspace import SearchSpace
from nas.subnet import Subnet


class SubnetSampler(Protocol):
    def sample(self, rng: random.Random) -> Subnet: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


SAMPLERS: dict[str, Callable[..., SubnetSampler]] = {}


def register_sampler(name: str):
    def deco(cls):
        SAMPLERS[name] = cls
        return cls
    return deco


def subnet_macs(space: SearchSpace, sub: Subnet) -> float:
    return subnet_costs(space, sub)["macs"]


@register_sampler("uniform")
class UniformSampler:
    def __init__(self, space: SearchSpace, rng: random.Random | None = None) -> None:
        self.space = space

    def sample(self, rng: random.Random) -> Subnet:
        return self.space.sample(rng)

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


@register_sampler("complexity")
class ComplexityAwareSampler:
    """A pool of subnets per MACs bucket, built once; the bucket random-walks by -1, 0 or +1 per step."""

    def __init__(self, space: SearchSpace, rng: random.Random | None = None, buckets: int = 8,
                 per_bucket: int = 16, max_draws: int = 4000) -> None:
        rng = rng or random.Random(0)
        self.space = space
        lo, hi = subnet_macs(space, space.min_subnet()), subnet_macs(space, space.max_subnet())
        self.edges = [lo * (hi / lo) ** (i / buckets) for i in range(buckets + 1)]
        self.pools: list[list[Subnet]] = [[] for _ in range(buckets)]
        self._add(space.min_subnet())
        self._add(space.max_subnet())
        # Uniform draws fill the middle buckets; mutants of the extremes fill the sparse ends.
        seeds = [space.min_subnet(), space.max_subnet()]
        for _ in range(max_draws):
            if all(len(p) >= per_bucket for p in self.pools):
                break
            sub = space.sample(rng) if rng.random() < 0.5 else mutate(space, rng.choice(seeds), rng, 0.2)
            b = self._add(sub, per_bucket)
            if b is not None and len(self.pools[b]) < per_bucket:
                seeds.append(sub)
        empty = [i for i, p in enumerate(self.pools) if not p]
        if empty:
            raise RuntimeError(f"complexity sampler: MACs buckets {empty} stayed empty after {max_draws} draws")
        self.bucket = 0

    def _add(self, sub: Subnet, cap: int | None = None) -> int | None:
        m = subnet_macs(self.space, sub)
        b = min(max(0, int(math.log(m / self.edges[0]) / math.log(self.edges[-1] / self.edges[0]) * len(self.pools))),
                len(self.pools) - 1)
        if sub in self.pools[b] or (cap is not None and len(self.pools[b]) >= cap):
            return None
        self.pools[b].append(sub)
        return b

    def sample(self, rng: random.Random) -> Subnet:
        self.bucket = min(max(self.bucket + rng.choice((-1, 0, 1)), 0), len(self.pools) - 1)
        return rng.choice(self.pools[self.bucket])

    def state(self) -> dict:
        return {"bucket": self.bucket}

    def load_state(self, state: dict) -> None:
        self.bucket = int(state.get("bucket", 0))


def create_sampler(name: str, space: SearchSpace, rng: random.Random | None = None) -> SubnetSampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {sorted(SAMPLERS)}")
    return SAMPLERS[name](space, rng)
