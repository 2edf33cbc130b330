"""The search machinery in every registered space: mutation, slimming moves, both strategies, the command line
with a LUT of the space (its space read from the file), and the accuracy predictor's features."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from nas.accuracy import AccuracyPredictor, feature_names, features
from nas.costs import block_features, subnet_costs
from nas.evolution import Constraints, Evaluator, Infeasible, SearchSettings, crossover, mutate, search
from nas.objectives import MES_SCORE, ObjectiveConfig, create_objective, mes
from nas.search import main as search_main
from nas.slimming import slim
from predictor.lut import Lut
from predictor.lut_io import save_lut
from predictor.subnet_predictor import SubnetPredictor


def _analytical_lut(space) -> Lut:
    """A LUT of `space` whose entries follow the blocks' MACs and bytes (no device needed)."""
    lut = Lut("analytical", "cpu", space.name)
    for b in space.enumerate_blocks():
        f = block_features(b)
        lut.set(b.key, 0.02 + f["macs"] / 2e8 + f["total_bytes"] / 4e9, "predicted")
    return lut


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory, any_space) -> Path:
    path = tmp_path_factory.mktemp(any_space.name) / "lut.json"
    save_lut(_analytical_lut(any_space), path)
    return path


@pytest.fixture(scope="module")
def latency(any_space):
    return SubnetPredictor(_analytical_lut(any_space), any_space).predict


def test_mutation_and_crossover_stay_in_every_space(any_space):
    rng = random.Random(0)
    subs = [any_space.sample(rng) for _ in range(60)]
    for a, b in zip(subs, subs[1:]):
        for child in (mutate(any_space, a, rng, 0.5), crossover(any_space, a, b, rng)):
            assert any_space.validate(child) == child
    assert mutate(any_space, subs[0], rng, 0.0) == subs[0]
    moved = {mutate(any_space, subs[1], rng, 0.3) for _ in range(30)}
    assert len(moved) > 10  # mutation reaches every kind of choice, not a fixed few


def test_shrink_moves_are_members_one_step_smaller(any_space):
    rng = random.Random(1)
    for sub in [any_space.max_subnet(), *(any_space.sample(rng) for _ in range(20))]:
        macs = subnet_costs(any_space, sub)["macs"]
        moves = any_space.shrink_moves(sub)
        assert moves and len(set(moves)) == len(moves)
        for m in moves:
            assert any_space.validate(m) == m and subnet_costs(any_space, m)["macs"] < macs
    assert any_space.shrink_moves(any_space.min_subnet()) == []


def test_slimming_takes_the_smallest_drop_per_efficiency_gain_until_the_limit(any_space, latency):
    released = sorted(latency(list(any_space.released.values())))
    limit = Constraints(float(released[len(released) // 2]))
    res = slim(any_space, latency, limit, "macs")
    best = res.best[0]
    assert len(res.best) == 1 and best.latency_ms <= limit.latency_ms
    assert len(res.best_per_generation) > 3 and res.evaluated > len(res.best_per_generation)
    # step 1 by hand: of the largest subnet's moves, the least MACs lost per MES gained
    ev = Evaluator(any_space, latency, create_objective("macs", any_space))
    start = ev([any_space.max_subnet()])[0]
    eff = lambda c: float(mes(MES_SCORE, np.array([c.params]), np.array([c.latency_ms]))[0])  # noqa: E731
    moves = [c for c in ev(any_space.shrink_moves(start.subnet)) if eff(c) > eff(start)]
    first = min(moves, key=lambda c: (start.score - c.score) / (eff(c) - eff(start)))
    assert res.best_per_generation[:2] == [start.score, first.score]
    assert slim(any_space, latency, limit, "macs").best[0].subnet == best.subnet  # deterministic
    # a stricter efficiency weight on latency changes the path, not the guarantee
    other = slim(any_space, latency, limit, "macs", mes_config=ObjectiveConfig(mes_alpha_latency=3.0))
    assert other.best[0].latency_ms <= limit.latency_ms
    with pytest.raises(Infeasible, match="greedy slimming"):
        slim(any_space, latency, Constraints(latency([any_space.min_subnet()])[0] * 0.5), "macs")


def test_evolution_in_every_space(any_space, latency):
    limit = Constraints(float(np.median(latency(list(any_space.released.values())))))
    res = search(any_space, latency, limit, "mes", SearchSettings(population=24, generations=3, parents=8),
                 random.Random(0))
    assert res.best and all(c.latency_ms <= limit.latency_ms for c in res.best)


@pytest.mark.parametrize("strategy", ["evolution", "slimming"])
def test_cli_searches_the_luts_own_space(tmp_path: Path, capsys, any_space, lut_file, latency, strategy):
    limit = float(np.median(latency(list(any_space.released.values()))))
    out = tmp_path / "r.json"
    assert search_main(["--lut", str(lut_file), "--latency-ms", f"{limit:.4f}", "--strategy", strategy,
                        "--objective", "mes", "--population", "16", "--generations", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["strategy"] == strategy and doc["best"][0]["latency_ms"] <= limit
    assert doc["best"][0]["subnet"]["space"] == any_space.name
    with pytest.raises(SystemExit) as e:
        search_main(["--lut", str(lut_file), "--latency-ms", "5", "--strategy", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_accuracy_predictor_in_every_space(any_space):
    rng = random.Random(3)
    subs = list({any_space.sample(rng) for _ in range(80)})
    x = features(any_space, subs)
    assert x.shape == (len(subs), len(feature_names(any_space))) and np.isfinite(x).all()
    top1 = [0.5 + 0.4 * np.tanh(subnet_costs(any_space, s)["macs"] / 1e9) for s in subs]
    pred = AccuracyPredictor(seed=0).fit(any_space, subs[:60], top1[:60])
    got = pred.predict(any_space, subs[60:])
    assert np.corrcoef(got, top1[60:])[0, 1] > 0.8
