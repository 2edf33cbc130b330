"""Latency-constrained search over the published Pixel 4 LUT (real phone data shipped with the repo)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from nas.accuracy import AccuracyPredictor
from nas.costs import subnet_costs
from nas.evolution import (
    Candidate,
    Constraints,
    Infeasible,
    SearchSettings,
    crossover,
    mutate,
    pareto_front,
    search,
    search_family,
)
from nas.search import SearchJob, run
from nas.search import main as search_main
from predictor.composition import META_KEY, Composition
from predictor.lut import Lut
from predictor.lut_io import open_lut, save_lut
from predictor.subnet_predictor import SubnetPredictor

SMALL = SearchSettings(population=40, generations=8, parents=10)
FAST = ["--population", "24", "--generations", "3"]


@pytest.fixture(scope="module")
def pixel4(space):
    return SubnetPredictor(open_lut("pixel4"), space)


def test_mutation_and_crossover_stay_in_the_space(space):
    rng = random.Random(0)
    subs = [space.sample(rng) for _ in range(50)]
    for a, b in zip(subs, subs[1:]):
        for child in (mutate(space, a, rng, 0.5), crossover(space, a, b, rng)):
            assert space.validate(child) == child  # widths repaired to non-decreasing
    assert mutate(space, subs[0], rng, 0.0) == subs[0]


def test_search_meets_the_limit_and_beats_the_released_subnet(space, pixel4):
    s1 = space.subnet("S1")
    limit = float(pixel4.predict([s1])[0])  # S1's own latency on Pixel 4 (21.1 ms)
    res = search(space, pixel4.predict, Constraints(limit), "macs", SMALL, random.Random(0))
    assert res.best and all(c.latency_ms <= limit for c in res.best)
    np.testing.assert_allclose([c.latency_ms for c in res.best], pixel4.predict([c.subnet for c in res.best]))
    s1_macs = subnet_costs(space, s1)["macs"]
    assert res.best[0].score > s1_macs  # the most MACs the budget allows, more than S1 (searched for accuracy)
    assert res.best_per_generation == sorted(res.best_per_generation)  # elitist: never gets worse
    again = search(space, pixel4.predict, Constraints(limit), "macs", SMALL, random.Random(0))
    assert [c.subnet for c in again.best] == [c.subnet for c in res.best]  # seeded


def test_params_limit_is_joint_with_latency(space, pixel4):
    res = search(space, pixel4.predict, Constraints(40.0, max_params=9e6), "macs", SMALL, random.Random(1))
    assert res.best and all(c.params <= 9e6 and c.latency_ms <= 40.0 for c in res.feasible_seen)
    free = search(space, pixel4.predict, Constraints(40.0), "macs", SMALL, random.Random(1))
    assert free.best[0].params > 9e6  # the size limit binds
    with pytest.raises(Infeasible, match=r"params <= 4\.00 M: the smallest .* 5\.64 M params"):
        search(space, pixel4.predict, Constraints(40.0, max_params=4e6), "macs", SMALL, random.Random(1))


def test_infeasible_limit_names_the_smallest_subnet(space, pixel4):
    with pytest.raises(Infeasible, match=r"smallest is predicted at \d+\.\d+ ms"):
        search(space, pixel4.predict, Constraints(0.5), "macs", SMALL, random.Random(0))


def test_cli_prints_best_and_released_and_writes_json_and_plot(tmp_path: Path, capsys):
    out, png = tmp_path / "best.json", tmp_path / "best.png"
    assert search_main(["--lut", "pixel4", "--latency-ms", "22", "--population", "30", "--generations", "5",
                        "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "#1" in text and "S1" in text and "L3" not in text  # S1 (21.1 ms) fits 22 ms, L3 (78.8 ms) does not
    doc = json.loads(out.read_text())
    assert doc["best"] and all(b["latency_ms"] <= 22 for b in doc["best"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, msg", [
    (["--lut", "pixel4", "--latency-ms", "0.5"], "infeasible constraint"),
    (["--lut", "nokia3310", "--latency-ms", "10"], "no published LUT named 'nokia3310'"),
    (["--lut", "pixel4", "--latency-ms", "nan"], "--latency-ms must be a finite number > 0, not nan"),
    (["--lut", "pixel4", "--latency-ms", "inf"], "--latency-ms must be a finite number > 0, not inf"),
    (["--lut", "pixel4", "--latency-ms", "-3"], "--latency-ms must be a finite number > 0, not -3.0"),
    (["--lut", "pixel4", "--latency-ms", "0"], "--latency-ms must be a finite number > 0"),
    (["--lut", "pixel4", "--latency-ms", "20", "--max-params-m", "nan"], "--max-params-m must be a finite"),
    (["--lut", "pixel4", "--latency-ms", "20", "--population", "1"], "--population must be >= 2"),
    (["--lut", "pixel4", "--latency-ms", "20", "--space", "nope"], "unknown search space 'nope'"),
])
def test_cli_bad_input_is_one_line_error(capsys, argv, msg):
    assert search_main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_cli_lut_missing_blocks_is_one_line_error_naming_the_key(tmp_path: Path, capsys, space):
    lut = tmp_path / "partial.json"
    lut.write_text(json.dumps({"firstconv_128_3_16_2_3": 0.2}))
    assert search_main(["--lut", str(lut), "--latency-ms", "10"]) == 2
    err = capsys.readouterr().err
    assert "not among the LUT's keys" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    missing = space.blocks_of(space.min_subnet())[1].key  # the smallest subnet's first block after firstconv
    assert repr(missing) in err


def test_search_job_refuses_impossible_values_and_run_returns_the_json_document(tmp_path: Path, capsys):
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises(ValueError, match="--latency-ms must be a finite number > 0"):
            SearchJob(lut="pixel4", latency_ms=bad)
    with pytest.raises(ValueError, match="unknown objective 'top5'"):
        SearchJob(lut="pixel4", latency_ms=20, objective="top5")
    with pytest.raises(ValueError, match="objective 'accuracy' needs --accuracy-predictor"):
        SearchJob(lut="pixel4", latency_ms=20, objective="accuracy")
    job = SearchJob(lut="pixel4", latency_ms=22, population=20, generations=2, top=3, json_out=tmp_path / "r.json")
    doc = run(job)
    assert capsys.readouterr().out == ""  # the function prints nothing; main does
    assert doc == json.loads((tmp_path / "r.json").read_text())
    assert doc["limits"] == {"latency_ms": 22, "max_params": None} and len(doc["best"]) == 3
    assert all(b["latency_ms"] <= 22 and b["score"] == b["macs"] for b in doc["best"])
    assert "S1" in doc["released"] and "L3" not in doc["released"]


def test_composition_saved_with_the_lut_is_applied(tmp_path: Path, space, capsys):
    lut = open_lut("pixel4")
    sub = space.subnet("T1")
    comp = Composition.from_probes({(1, 16): 0.6, (1, 40): 1.6, (1, 64): 5.0}, {1: 0.01})
    lut.meta[META_KEY] = comp.get_state()
    save_lut(lut, tmp_path / "lut.json")
    loaded = open_lut(tmp_path / "lut.json")
    assert isinstance(loaded, Lut) and loaded.count("measured") == 12116
    assert Composition.of_lut(loaded) == comp
    net = [(b, lut.flat()[b.key]) for b in space.blocks_of(sub)]
    assert SubnetPredictor(loaded, space).predict([sub])[0] == pytest.approx(comp.predict([net])[0])
    assert SubnetPredictor(loaded, space, plain=True).predict([sub])[0] == pytest.approx(sum(ms for _, ms in net))
    assert search_main(["--lut", str(tmp_path / "lut.json"), "--latency-ms", "30", "--generations", "1",
                        "--population", "4"]) == 0
    out = capsys.readouterr()
    assert "composed block entries" in out.out and "no in-network composition" not in out.err


def test_cli_says_when_a_lut_has_no_composition(tmp_path: Path, capsys, space):
    lut = open_lut("pixel4")
    assert search_main(["--lut", "pixel4", "--latency-ms", "30", "--generations", "1", "--population", "4"]) == 0
    assert "no in-network composition" in capsys.readouterr().err
    other = Lut("x", "cpu", "otherspace", entries=dict(lut.entries))
    save_lut(other, tmp_path / "other.json")
    assert search_main(["--lut", str(tmp_path / "other.json"), "--latency-ms", "30", "--space", "elasticvit"]) == 2
    assert "LUT of space 'otherspace'" in capsys.readouterr().err
    assert search_main(["--lut", str(tmp_path / "other.json"), "--latency-ms", "30"]) == 2  # the LUT's own space
    assert "unknown search space 'otherspace'" in capsys.readouterr().err


def test_truncated_gz_lut_is_a_one_line_error(tmp_path: Path, capsys):
    from predictor.lut_io import PUBLISHED_DIR

    whole = (PUBLISHED_DIR / "elasticvit" / "pixel4.json.gz").read_bytes()
    cut = tmp_path / "phone.json.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert search_main(["--lut", str(cut), "--latency-ms", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "phone.json.gz" in err and len(err.strip().splitlines()) == 1


# ---- a family of limits in one run -----------------------------------------------------------------
def _assert_front(front: list[dict] | list[Candidate]) -> None:
    """Fastest first, scores strictly rising, and no member beaten on both latency and score by another."""
    get = (lambda e, k: e[k]) if front and isinstance(front[0], dict) else getattr
    lat = [get(e, "latency_ms") for e in front]
    score = [get(e, "score") for e in front]
    assert lat == sorted(lat) and all(a < b for a, b in zip(score, score[1:]))
    for i in range(len(front)):
        for j in range(len(front)):
            assert i == j or not (lat[j] <= lat[i] and score[j] >= score[i])


def test_pareto_front_is_non_dominated_sorted_and_covers_every_candidate(space):
    rng = random.Random(0)
    sub = space.min_subnet()
    cands = [Candidate(sub, rng.uniform(1, 10), 1.0, rng.uniform(0, 1)) for _ in range(300)]
    cands.append(Candidate(sub, cands[0].latency_ms, 1.0, cands[0].score))  # an exact tie is kept once
    front = pareto_front(cands)
    _assert_front(front)
    for c in cands:  # every candidate is on the front or beaten by (or equal to) a member of it
        assert any(f.latency_ms <= c.latency_ms and f.score >= c.score for f in front)


def test_family_member_finds_what_the_limit_alone_finds(space, pixel4):
    limits = [Constraints(x) for x in (0.5, 12.0, 22.0)]
    fam = search_family(space, pixel4.predict, limits, "macs", SMALL, seed=3)
    assert isinstance(fam.results[0], Infeasible) and "smallest is predicted at" in str(fam.results[0])
    for lim, res in fam.feasible:
        alone = search(space, pixel4.predict, lim, "macs", SMALL, random.Random(3))
        assert [c.subnet for c in res.best] == [c.subnet for c in alone.best]
        assert all(c.latency_ms <= lim.latency_ms for c in res.feasible_seen)
    _assert_front(fam.pareto)
    assert fam.pareto[-1].latency_ms <= 22.0


def test_cli_family_reports_an_infeasible_limit_and_writes_json_and_plot(tmp_path: Path, capsys):
    out, png = tmp_path / "fam.json", tmp_path / "fam.png"
    assert search_main(["--lut", "pixel4", "--latency-ms", "25", "0.5", "8", *FAST, "--top", "2",
                        "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "limit 0.5 ms: infeasible: no subnet" in text and "limit 8 ms:" in text and "limit 25 ms:" in text
    doc = json.loads(out.read_text())
    assert doc["latency_limits_ms"] == [0.5, 8.0, 25.0] and "best" not in doc  # the top-level best: one limit only
    bad, r8, r25 = doc["results"]
    assert "infeasible" in bad and "best" not in bad
    for r in (r8, r25):
        assert len(r["best"]) == 2 and all(b["latency_ms"] <= r["latency_ms"] for b in r["best"])
    assert r8["released"] == ["T1"] and r25["released"] == ["T1", "T2", "S1"]
    assert doc["released"]["T1"]["fits_ms"] == [8.0, 25.0] and doc["released"]["S1"]["fits_ms"] == [25.0]
    assert "M" not in doc["released"]  # 38.8 ms fits no limit
    _assert_front(doc["pareto"])
    assert doc["pareto"][-1]["latency_ms"] <= 25 and doc["settings"]["population"] == 24
    best = max(b["score"] for r in (r8, r25) for b in r["best"])
    assert doc["pareto"][-1]["score"] == best  # the front ends at the best subnet of the widest limit
    assert doc["released"]["T1"]["dominated"] is True  # a found subnet is faster and has more MACs
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_family_where_no_limit_is_feasible_is_one_line_exit_2(capsys):
    assert search_main(["--lut", "pixel4", "--latency-ms", "0.5", "1", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: infeasible constraint: ") and "<= 2 ms" in err and len(err.strip().splitlines()) == 1


def test_cli_lists_objectives_and_refuses_bad_ones_in_one_line(tmp_path: Path, capsys):
    assert search_main(["--list-objectives"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["accuracy", "macs", "mes", "params"]
    for argv, msg in [
        (["--objective", "top5"], "unknown objective 'top5'; known: ['accuracy', 'macs', 'mes', 'params']"),
        (["--objective", "accuracy"], "needs --accuracy-predictor PATH"),
        (["--objective", "accuracy", "--accuracy-predictor", str(tmp_path / "none.json")], "cannot be read"),
        (["--objective", "macs", "--accuracy-predictor", "p.json"], "read by objectives accuracy and mes"),
        (["--objective", "mes", "--mes-alpha-latency", "-1"], "--mes-alpha-latency must be a finite number >= 0"),
        (["--parents", "30", "--population", "20"], "--parents: parents must be between 1 and population - 1"),
    ]:
        assert search_main(["--lut", "pixel4", "--latency-ms", "20", *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err


def test_cli_accuracy_objective_scores_with_the_saved_predictor(tmp_path: Path, space, capsys):
    rng = random.Random(1)
    subs = [space.sample(rng) for _ in range(10)]
    model = AccuracyPredictor(model="ridge").fit(space, subs, [0.5 + 1e-10 * subnet_costs(space, s)["params"]
                                                               for s in subs])
    model.save(tmp_path / "acc.json")
    out = tmp_path / "acc_search.json"
    assert search_main(["--lut", "pixel4", "--latency-ms", "15", "--objective", "accuracy", "--accuracy-predictor",
                        str(tmp_path / "acc.json"), *FAST, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["objective_config"]["accuracy_predictor"] == str(tmp_path / "acc.json")
    best = [space.from_dict(b["subnet"]) for b in doc["best"]]
    np.testing.assert_allclose([b["score"] for b in doc["best"]], model.predict(space, best))
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_verifies_each_limits_best_on_this_host(tmp_path: Path, capsys):
    """--verify exports the winner, times it through the profiler's runner and stores the timing."""
    import sqlite3

    out, store = tmp_path / "v.json", tmp_path / "store.sqlite"
    lut = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "host_lut.json"
    code = search_main(["--lut", str(lut), "--latency-ms", "6", "--population", "8",
                        "--generations", "1", "--top", "1", "--verify", "--serial", "local", "--format", "onnx",
                        "--runs", "5", "--warmup", "1", "--store", str(store), "--json", str(out), "--passes", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    rows = json.loads(out.read_text())["verify"]["rows"]
    assert len(rows[0]["pass_ms"]) == 2 and rows[0]["measured_ms"] == min(rows[0]["pass_ms"])  # lower median
    assert [r["name"] for r in rows] == ["best under 6 ms"] and rows[0]["error"] is None
    assert rows[0]["measured_ms"] > 0 and rows[0]["model_format"] == "onnx" and "best under 6 ms" in printed
    with sqlite3.connect(store) as db:
        (n,) = db.execute("select count(*) from measurements where kind = 'network'").fetchone()
        (n_pass,) = db.execute("select count(*) from measurements where kind = 'network-pass'").fetchone()
        runners = db.execute("select distinct runner from measurements where kind = 'network'").fetchall()
    assert n == 1 and n_pass == 2
    assert len(runners) == 1 and runners[0][0].startswith("linux-python+ref:")  # paired, as validate times
