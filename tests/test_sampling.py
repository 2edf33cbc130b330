"""ElasticViT's sampling: MACs levels and windows, the level walk, the performance banks, their schedule and state."""
from __future__ import annotations

import random
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.sampling import (
    BankSchedule,
    PerformanceAwareSampler,
    SamplerSettings,
    create_sampler,
    level_macs,
    window_subnet,
)


def _fake_loss(sub) -> float:
    """A deterministic stand-in for a mini-batch loss."""
    return zlib.crc32(repr(sub).encode()) / 2**32


def test_the_level_moves_by_at_most_one_per_step_and_covers_every_level(space):
    s = create_sampler("complexity", space)
    assert [lo / 1e6 for lo, _ in s.windows] == [100, 200, 300, 400, 500, 700, 900, 1200]  # ElasticViT's levels
    assert all(hi - lo == 20e6 for lo, hi in s.windows)
    rng, levels = random.Random(1), []
    for _ in range(5000):
        assert s.sample_step(rng, 0, 0.0) == []  # the level moves even when the step draws no subnet
        levels.append(s.level)
    moves = np.diff([0, *levels])
    assert np.abs(moves).max() <= 1 and set(levels) == set(range(len(s.windows)))
    # at an end the walk stays twice as often as it leaves (ElasticViT's get_bank_id: [0, 0, 1])
    at_bottom = [m for prev, m in zip([0, *levels[:-1]], moves) if prev == 0]
    assert np.mean(np.array(at_bottom) == 0) == pytest.approx(2 / 3, abs=0.06)


@pytest.mark.parametrize("name", ["complexity", "performance"])
def test_every_subnet_of_a_step_lies_in_the_window_of_its_level(space, name: str):
    s = create_sampler(name, space, SamplerSettings(bank_size=4, schedule=BankSchedule(start=0.5)))
    rng, seen = random.Random(2), set()
    for step in range(60):
        subs = s.sample_step(rng, 3, step / 60)
        lo, hi = s.windows[s.level]
        for sub in subs:
            assert lo <= level_macs(space, sub) <= hi and s.level_of(sub) == s.level
            s.observe(sub, _fake_loss(sub))
        seen.update(subs)
    if name == "complexity":
        assert len(seen) > 150  # of 180: fresh draws, not a small fixed pool
    else:
        assert len(seen) < 150  # bank draws repeat subnets


def test_levels_outside_the_space_are_dropped_and_none_left_is_an_error(space):
    small = replace(space, resolutions=(128,))
    top = level_macs(small, small.max_subnet())
    s = create_sampler("complexity", small)
    assert s.windows and all(lo <= top for lo, _ in s.windows) and len(s.windows) < 8
    with pytest.raises(ValueError, match="no MACs level"):
        create_sampler("complexity", small, SamplerSettings(levels_mmacs=(50_000,)))
    with pytest.raises(RuntimeError, match="no subnet"):
        window_subnet(space, random.Random(0), 1.0, 2.0, max_mutations=20)  # below the min subnet: unreachable
    with pytest.raises(ValueError, match="unknown sampler"):
        create_sampler("nope", space)


def test_the_bank_keeps_the_lowest_loss_subnets_of_each_level(space):
    s = PerformanceAwareSampler(space, SamplerSettings(bank_size=5))
    rng, seen = random.Random(3), {0: {}, 3: {}}
    for level, subs in seen.items():
        for _ in range(25):
            sub = window_subnet(space, rng, *s.windows[level])
            subs[sub] = rng.random()
            s.observe(sub, subs[sub])
    for level, subs in seen.items():
        best = sorted(subs.items(), key=lambda kv: kv[1])[:5]
        assert sorted(s.banks[level], key=lambda e: e[1]) == best
    assert not s.banks[1] and not s.banks[2]
    kept, loss = s.banks[0][0]
    s.observe(kept, 7.0)  # trained again: its entry takes the fresh loss instead of a second place
    assert (kept, 7.0) in s.banks[0] and len(s.banks[0]) == 5
    before = [list(b) for b in s.banks]
    s.observe(space.max_subnet(), 0.0)  # on no level: ignored
    s.observe(window_subnet(space, rng, *s.windows[0]), float("nan"))  # a diverged loss: ignored
    assert s.banks == before


def test_the_bank_is_drawn_from_with_the_scheduled_probability(space):
    sched = BankSchedule()  # ElasticViT: 0.2, +0.15 every sixth of training
    assert [sched.probability(p) for p in (0.0, 0.16, 1 / 6, 0.5, 0.99)] == pytest.approx([0.2, 0.2, 0.35, 0.65, 0.95])
    assert BankSchedule(0.5, 0.2).probability(0.9) == 1.0  # capped
    s = PerformanceAwareSampler(space, SamplerSettings(levels_mmacs=(300,), bank_size=4))  # one level: no walk
    rng = random.Random(4)
    bank = [window_subnet(space, rng, *s.windows[0]) for _ in range(2)]
    for sub in bank:
        s.observe(sub, 1.0)
    assert not any(sub in bank for sub in s.sample_step(rng, 50, 0.99))  # at most half full: never drawn from
    bank += [window_subnet(space, rng, *s.windows[0]) for _ in range(2)]
    for sub, loss in zip(bank, (0.0, 1.0, 1.0, 6.0)):
        s.observe(sub, loss)
    n = 400
    for progress in (0.0, 0.5, 0.9):
        hits = sum(sub in bank for sub in s.sample_step(rng, n, progress))
        p = sched.probability(progress)
        assert abs(hits - n * p) < 4 * np.sqrt(n * p * (1 - p)), (progress, hits)
    # weights exp(-loss): the best subnet comes about e times as often as a subnet 1 worse
    drawn = s.sample_step(rng, 1500, 0.99)
    counts = [drawn.count(sub) for sub in bank]
    assert counts[0] > 1.8 * counts[1] and counts[0] > 1.8 * counts[2] and counts[3] < counts[1] / 10


def test_state_is_plain_data_and_a_resumed_sampler_continues_exactly(space, tmp_path: Path):
    settings = SamplerSettings(bank_size=2, schedule=BankSchedule(start=0.8))

    def run(s, rng, steps: range) -> list:
        out = []
        for step in steps:
            subs = s.sample_step(rng, 2, step / 40)
            for sub in subs:
                s.observe(sub, _fake_loss(sub))
            out.append(subs)
        return out

    whole = create_sampler("performance", space, settings)
    rng = random.Random(5)
    uninterrupted = run(whole, rng, range(40))
    first, rng = create_sampler("performance", space, settings), random.Random(5)
    head = run(first, rng, range(20))
    torch.save({"sampler": first.state(), "rng": rng.getstate()}, tmp_path / "s.pt")
    saved = torch.load(tmp_path / "s.pt", weights_only=True)  # plain data only
    resumed, rng = create_sampler("performance", space, settings), random.Random()
    version, internal, gauss = saved["rng"]
    rng.setstate((version, tuple(internal), gauss))
    resumed.load_state(saved["sampler"])
    assert head + run(resumed, rng, range(20, 40)) == uninterrupted
    assert resumed.state() == whole.state() and any(whole.banks)
    trained = [sub for subs in uninterrupted for sub in subs]
    assert len(set(trained)) < len(trained) - 5  # repeats: drawn from the banks, which the resume carried over
    with pytest.raises(ValueError, match="banks"):
        resumed.load_state({"level": 0, "banks": []})
