"""Objectives by name (nas.objectives) and the search's cache of evaluated subnets."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from nas.accuracy import AccuracyPredictor
from nas.costs import subnet_costs, subnet_size
from nas.evolution import Constraints, Evaluator, SearchSettings, search, search_family
from nas.objectives import (
    ObjectiveConfig,
    ObjectiveError,
    create_objective,
    list_objectives,
    mes,
)
from predictor.lut_io import open_lut
from predictor.subnet_predictor import SubnetPredictor

TINY = SearchSettings(population=16, generations=3, parents=8)


@pytest.fixture(scope="module")
def pixel4(space):
    return SubnetPredictor(open_lut("pixel4"), space)


@pytest.fixture(scope="module")
def fitted(space, tmp_path_factory) -> tuple[Path, AccuracyPredictor]:
    """A ridge predictor fitted on 12 subnets whose 'top-1' grows with log MACs (a real fit, tiny data)."""
    rng = random.Random(0)
    subs = [space.sample(rng) for _ in range(12)]
    top1 = [0.2 + 0.05 * np.log(subnet_costs(space, s)["macs"] / 1e7) for s in subs]
    model = AccuracyPredictor(model="ridge").fit(space, subs, top1)
    path = tmp_path_factory.mktemp("acc") / "acc.json"
    model.save(path)
    return path, model


def test_registry_lists_every_objective_and_refuses_an_unknown_name(space):
    assert list_objectives() == ["accuracy", "macs", "mes", "params"]
    with pytest.raises(ObjectiveError, match=r"unknown objective 'top5'; known: \['accuracy', 'macs', 'mes', "):
        create_objective("top5", space)


def test_macs_and_params_objectives_are_the_subnets_costs(space):
    subs = [space.subnet("S1"), space.min_subnet()]
    lat = np.array([20.0, 4.0])
    for name in ("macs", "params"):
        got = create_objective(name, space)(space, subs, lat)
        np.testing.assert_array_equal(got, [subnet_costs(space, s)[name] for s in subs])
    rng = random.Random(3)
    for s in [space.sample(rng) for _ in range(20)]:  # the block sums equal the full feature function's
        assert subnet_size(space, s) == (subnet_costs(space, s)["macs"], subnet_costs(space, s)["params"])


def test_mes_matches_a_hand_computation(space):
    s1 = space.subnet("S1")
    params = subnet_costs(space, s1)["params"]  # 10.83 M
    # defaults (EfficientFormerV2): Score 100, U_size 3 M params, U_latency 1 ms, alpha_size 0.5, alpha_latency 1
    want = 100 * (params / 3e6) ** -0.5 * (21.0 / 1.0) ** -1.0
    got = create_objective("mes", space)(space, [s1], np.array([21.0]))
    assert got[0] == pytest.approx(want, rel=1e-12)
    assert got[0] == pytest.approx(100 / (params / 3e6) ** 0.5 / 21.0)
    cfg = ObjectiveConfig(mes_params_unit=1e6, mes_latency_unit_ms=2.0, mes_alpha_params=1.0, mes_alpha_latency=0.5)
    assert mes(80.0, np.array([4e6]), np.array([8.0]), cfg)[0] == pytest.approx(80 * 4 ** -1 * 4 ** -0.5)  # = 10
    with pytest.raises(ObjectiveError, match="--mes-params-unit must be a finite number > 0"):
        ObjectiveConfig(mes_params_unit=0.0)


def test_accuracy_objective_reads_a_saved_predictor_and_mes_uses_it_as_score(space, fitted):
    path, model = fitted
    subs = [space.subnet("T1"), space.subnet("S1"), space.subnet("L3")]
    lat = np.array([6.8, 21.1, 78.8])
    top1 = create_objective("accuracy", space, ObjectiveConfig(accuracy_predictor=path))(space, subs, lat)
    np.testing.assert_allclose(top1, model.predict(space, subs))
    assert top1[0] < top1[1] < top1[2]  # fitted to grow with MACs
    m = create_objective("mes", space, ObjectiveConfig(accuracy_predictor=path))(space, subs, lat)
    params = np.array([subnet_costs(space, s)["params"] for s in subs])
    np.testing.assert_allclose(m, 100 * top1 * (params / 3e6) ** -0.5 / lat)


@pytest.mark.parametrize("content, msg", [
    (None, "cannot be read"),
    ("{not json", "not a JSON accuracy predictor"),
    ('{"format": "something-else"}', "is not 'mobilevit-nas/accuracy-predictor'"),
])
def test_missing_or_corrupt_predictor_is_one_line(space, tmp_path: Path, content, msg):
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ObjectiveError, match=msg) as e:
        create_objective("accuracy", space, ObjectiveConfig(accuracy_predictor=path))
    assert len(str(e.value).splitlines()) == 1 and str(path) in str(e.value)
    with pytest.raises(ObjectiveError, match="needs an accuracy predictor file"):
        create_objective("accuracy", space)


def test_predictor_of_another_space_or_cut_short_is_refused(space, fitted, tmp_path: Path):
    doc = json.loads(fitted[0].read_text())
    (tmp_path / "other.json").write_text(json.dumps({**doc, "space": "otherspace"}))
    with pytest.raises(ObjectiveError, match="fitted on search space 'otherspace', not 'elasticvit'"):
        create_objective("accuracy", space, ObjectiveConfig(accuracy_predictor=tmp_path / "other.json"))
    del doc["state"]
    (tmp_path / "cut.json").write_text(json.dumps(doc))
    with pytest.raises(ObjectiveError, match="not a readable accuracy predictor"):
        create_objective("mes", space, ObjectiveConfig(accuracy_predictor=tmp_path / "cut.json"))


class Counting:
    """The macs objective, counting how often each subnet is scored."""

    def __init__(self, space):
        self.inner, self.calls, self.seen = create_objective("macs", space), 0, []

    def __call__(self, space, subnets, latency_ms):
        self.calls += 1
        self.seen += list(subnets)
        return self.inner(space, subnets, latency_ms)


def test_each_distinct_subnet_is_scored_once_across_a_family(space, pixel4):
    count = Counting(space)
    fam = search_family(space, pixel4.predict, [Constraints(x) for x in (10.0, 20.0, 30.0)], count, TINY, seed=0)
    assert len(count.seen) == len(set(count.seen)) == fam.computed  # never twice, also across the limits
    per_limit = sum(r.evaluated for _, r in fam.feasible)
    assert fam.computed < per_limit  # the members share subnets (the smallest at least) and compute them once
    # an Evaluator scores only what fits the limits it is asked with; the rest costs a latency query
    ev = Evaluator(space, pixel4.predict, count)
    before = len(count.seen)
    big, small = space.subnet("L3"), space.min_subnet()
    cands = ev([big, small, small], Constraints(10.0))
    assert np.isnan(cands[0].score) and cands[1].score == cands[2].score > 0
    assert len(count.seen) == before + 1 and ev.queried == 2
    ev([big], Constraints(100.0))  # a wider limit admits it: scored now, once
    ev([big, small])
    assert len(count.seen) == before + 2


def test_mes_search_latency_is_what_the_objective_gets(space, pixel4):
    got: list[tuple[list, np.ndarray]] = []

    def spy(sp, subs, lat):
        got.append((list(subs), np.asarray(lat)))
        return create_objective("mes", sp)(sp, subs, lat)

    res = search(space, pixel4.predict, Constraints(15.0), spy, TINY, random.Random(0))
    subs, lat = got[-1]
    np.testing.assert_allclose(lat, pixel4.predict(subs))
    # without an accuracy predictor MES (Score 100) rewards only small and fast: the fastest feasible wins
    assert res.best[0].latency_ms == min(c.latency_ms for c in res.feasible_seen)
