"""Which subnets a supernet trains at each step, chosen by name (`SAMPLERS`): ElasticViT's sampling.

- `uniform`: every choice drawn uniformly (once-for-all's default).
- `complexity`: ElasticViT's complexity-aware sampling. MACs levels (its 8 FLOPs levels, 100..500 M step 100,
  700, 900, 1200 M, counted as its released counter counts: `macs_ref`); the level moves by -1, 0 or +1 each
  step (at an end, staying is twice as likely, as its `get_bank_id`), and every subnet of a step lies in the
  level's window [level, level + 20 M] (its `flops_bound` of 10, taken twice). Adjacent steps thus train
  subnets of similar size (fewer conflicting gradients), while the walk covers every level.
- `performance`: `complexity` plus ElasticViT's performance-aware sampling. Each level keeps a bank of the
  subnets with the lowest mini-batch loss seen at that level (the trainer reports each sampled subnet's loss
  through `observe`); a subnet comes from the bank with a probability that grows over training (`BankSchedule`),
  once the bank is more than half full, drawn with weights exp(-loss) (its `weighted_prob`).

Sources: shared/docs/field-notes.md section 1; the settings of Moonlit's ElasticViT/configs/final_3min_space.yaml
(min_flops 100, limit_flops 500, big_bank_choices [700, 900, 1200], flops_bound 10, bank_sampling_rate 0.2,
sampling_rate_inc 0.15 every 100 of 600 epochs) and its models/model.py (bank insertion and weighted draw).

Every decision comes from the `rng` the trainer passes (seeded alike on all ranks) and from the losses it
reports (averaged over the ranks), so every rank makes the same choices. `state()` is plain data (ints,
floats, strings, lists): a checkpoint read with `weights_only=True` restores it exactly.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Protocol

from nas.costs import block_ops, subnet_costs
from nas.evolution import mutate
from nas.searchspace import SearchSpace
from nas.subnet import Subnet

# ElasticViT's FLOPs levels in millions (final_3min_space.yaml: 100..500 step 100, then the "big bank" levels).
ELASTICVIT_LEVELS_MMACS: tuple[float, ...] = (100, 200, 300, 400, 500, 700, 900, 1200)


@dataclass(frozen=True)
class BankSchedule:
    """Probability of drawing a subnet from its level's bank at training progress p in [0, 1):
    `start + increment * floor(p * stages)`, capped at 1. ElasticViT: 0.2, raised by 0.15 every 100 of its
    600 epochs (train_eval_supernet.py), i.e. 0.2, 0.35, ..., 0.95 over six equal parts of training: explore
    early, exploit the good subnets late."""

    start: float = 0.2
    increment: float = 0.15
    stages: int = 6

    def probability(self, progress: float) -> float:
        part = math.floor(min(max(progress, 0.0), 1.0) * self.stages)
        return min(1.0, max(0.0, self.start + self.increment * part))


@dataclass(frozen=True)
class SamplerSettings:
    levels_mmacs: tuple[float, ...] = ELASTICVIT_LEVELS_MMACS  # levels outside the space's MACs range are dropped
    window_mmacs: float = 20.0  # a step's subnets lie in [level, level + window]
    bank_size: int = 50  # per level; ElasticViT: 150 below 500 M, 50 from 500 M on (600 epochs of ImageNet)
    schedule: BankSchedule = field(default_factory=BankSchedule)
    mutation_prob: float = 0.1  # per choice, while walking a subnet into a window (~2 of the ~25 choices)
    max_mutations: int = 5000  # the cap of that walk


class SubnetSampler(Protocol):
    def sample_step(self, rng: random.Random, n: int, progress: float) -> list[Subnet]:
        """The `n` subnets of one step; `progress` = the step / the run's steps, in [0, 1)."""
        ...

    def observe(self, sub: Subnet, loss: float) -> None:
        """The mini-batch loss of a subnet this sampler returned (the same value on every rank)."""
        ...

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


SAMPLERS: dict[str, Callable[[SearchSpace, SamplerSettings], SubnetSampler]] = {}


def register_sampler(name: str):
    def deco(cls):
        SAMPLERS[name] = cls
        return cls
    return deco


def subnet_macs(space: SearchSpace, sub: Subnet) -> float:
    return subnet_costs(space, sub)["macs"]


@lru_cache(maxsize=65536)
def level_macs(space: SearchSpace, sub: Subnet) -> float:
    """The MACs that place a subnet on a level: the released counter's (`macs_ref`), the one ElasticViT's
    levels were chosen with. Summed from the ops alone: the walk into a window evaluates thousands of subnets,
    and the full feature set (`subnet_costs`) costs ~40x more."""
    return float(sum(op.macs_ref for block in space.blocks_of(sub) for op in block_ops(block)))


def window_subnet(space: SearchSpace, rng: random.Random, lo: float, hi: float, prob: float = 0.1,
                  max_mutations: int = 5000) -> Subnet:
    """A subnet with lo <= level MACs <= hi: a uniform draw, walked into the window by mutations that never move
    it further away. (ElasticViT draws from offline pools per level; a window a few percent wide is too narrow
    to reach by rejecting uniform draws.)"""
    def gap(s: Subnet) -> float:
        m = level_macs(space, s)
        return max(lo - m, m - hi, 0.0)

    cur = space.sample(rng)
    d = gap(cur)
    for _ in range(max_mutations):
        if d == 0.0:
            return cur
        cand = mutate(space, cur, rng, prob)
        dc = gap(cand)
        if dc <= d:  # sideways moves too: plateaus of equal MACs are common
            cur, d = cand, dc
    if d == 0.0:
        return cur
    raise RuntimeError(f"no subnet of {space.name!r} with {lo / 1e6:.0f}..{hi / 1e6:.0f} MMACs found in "
                       f"{max_mutations} mutations; choose other levels or a wider window")


@register_sampler("uniform")
class UniformSampler:
    def __init__(self, space: SearchSpace, settings: SamplerSettings | None = None) -> None:
        self.space = space

    def sample_step(self, rng: random.Random, n: int, progress: float = 0.0) -> list[Subnet]:
        return [self.space.sample(rng) for _ in range(n)]

    def observe(self, sub: Subnet, loss: float) -> None:
        pass

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


@register_sampler("complexity")
class ComplexityAwareSampler:
    """MACs windows around the levels; the level random-walks by -1, 0 or +1 per step."""

    def __init__(self, space: SearchSpace, settings: SamplerSettings | None = None) -> None:
        self.space, self.settings = space, settings or SamplerSettings()
        lo, hi = level_macs(space, space.min_subnet()), level_macs(space, space.max_subnet())
        width = self.settings.window_mmacs * 1e6
        self.windows: list[tuple[float, float]] = [
            (m * 1e6, m * 1e6 + width) for m in sorted(self.settings.levels_mmacs) if m * 1e6 <= hi and
            m * 1e6 + width >= lo]
        if not self.windows:
            raise ValueError(f"no MACs level of {list(self.settings.levels_mmacs)} M lies within {space.name!r}'s "
                             f"range {lo / 1e6:.0f}..{hi / 1e6:.0f} MMACs")
        self.level = 0  # ElasticViT starts at its lowest level

    def level_of(self, sub: Subnet) -> int | None:
        """The level whose window holds the subnet, if any."""
        m = level_macs(self.space, sub)
        return next((i for i, (lo, hi) in enumerate(self.windows) if lo <= m <= hi), None)

    def sample_step(self, rng: random.Random, n: int, progress: float = 0.0) -> list[Subnet]:
        self.level = min(max(self.level + rng.choice((-1, 0, 1)), 0), len(self.windows) - 1)
        return [self._draw(rng, progress) for _ in range(n)]

    def _draw(self, rng: random.Random, progress: float) -> Subnet:
        lo, hi = self.windows[self.level]
        return window_subnet(self.space, rng, lo, hi, self.settings.mutation_prob, self.settings.max_mutations)

    def observe(self, sub: Subnet, loss: float) -> None:
        pass

    def state(self) -> dict:
        return {"level": self.level}

    def load_state(self, state: dict) -> None:
        level = int(state["level"])
        if not 0 <= level < len(self.windows):
            raise ValueError(f"sampler state: level {level} outside this sampler's {len(self.windows)} levels")
        self.level = level


@register_sampler("performance")
class PerformanceAwareSampler(ComplexityAwareSampler):
    """`complexity`, plus a bank per level of the lowest-loss subnets seen there, drawn from on a schedule.

    A subnet trained again (drawn from the bank) gets its fresh loss: entries are re-scored as they are used,
    where ElasticViT re-scores the whole bank on a mini-batch four times per epoch."""

    def __init__(self, space: SearchSpace, settings: SamplerSettings | None = None) -> None:
        super().__init__(space, settings)
        self.banks: list[list[tuple[Subnet, float]]] = [[] for _ in self.windows]

    def _draw(self, rng: random.Random, progress: float) -> Subnet:
        bank = self.banks[self.level]
        exploit = rng.random() < self.settings.schedule.probability(progress)  # drawn always: fixed RNG use
        if exploit and len(bank) > self.settings.bank_size // 2:
            best = min(loss for _, loss in bank)
            return rng.choices([s for s, _ in bank], weights=[math.exp(best - loss) for _, loss in bank])[0]
        return super()._draw(rng, progress)

    def observe(self, sub: Subnet, loss: float) -> None:
        level = self.level_of(sub)
        if level is None or not math.isfinite(loss) or self.settings.bank_size < 1:
            return
        bank = self.banks[level]
        for i, (s, _) in enumerate(bank):
            if s == sub:
                bank[i] = (sub, float(loss))
                return
        if len(bank) < self.settings.bank_size:
            bank.append((sub, float(loss)))
            return
        worst = max(range(len(bank)), key=lambda i: bank[i][1])
        if loss < bank[worst][1]:
            bank[worst] = (sub, float(loss))

    def state(self) -> dict:
        names = self.space.stage_names
        return {"level": self.level, "banks": [[[s.to_json(names), loss] for s, loss in bank] for bank in self.banks]}

    def load_state(self, state: dict) -> None:
        banks = state["banks"]
        if len(banks) != len(self.windows):
            raise ValueError(f"sampler state: {len(banks)} banks, this sampler has {len(self.windows)} levels")
        super().load_state(state)
        self.banks = [[(self.space.from_dict(json.loads(text)), float(loss)) for text, loss in bank]
                      for bank in banks]


def create_sampler(name: str, space: SearchSpace, settings: SamplerSettings | None = None) -> SubnetSampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {sorted(SAMPLERS)}")
    return SAMPLERS[name](space, settings or SamplerSettings())
