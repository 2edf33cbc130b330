"""Subnet evaluation from a checkpoint, the accuracy store, the accuracy predictor and its rank report."""
from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import nas.evaluate as evaluate_cli
from nas.accuracy import (
    AccuracyPredictor,
    AccuracyStore,
    Context,
    NotFittedError,
    PredictorFormatError,
    data_identity,
    fit_and_test,
    holdout_split,
    subnet_key,
    weights_sha256,
)
from nas.checkpoint import CHECKPOINT_FORMAT
from nas.costs import subnet_costs
from nas.data import SyntheticImages
from nas.trainer import TrainSettings, train


@pytest.fixture(scope="module")
def checkpoint(small_space, tmp_path_factory) -> Path:
    """A supernet trained 2 steps on the synthetic classes the CLI tests evaluate on (synthetic:16:4, seed 0)."""
    path = tmp_path_factory.mktemp("ckpt") / "supernet.pt"
    train(small_space, SyntheticImages(16, 4, 128, seed=0),
          TrainSettings(steps=2, batch_size=8, subnets_per_step=1, sampler="uniform", checkpoint_every=2), path)
    return path


@pytest.fixture
def cli(small_space, monkeypatch):
    """nas.evaluate's main on the small space, counting the subnets it really evaluates."""
    calls: list[int] = []
    real_top1 = evaluate_cli.top1

    def counting_top1(*args, **kwargs):
        calls.append(1)
        return real_top1(*args, **kwargs)

    monkeypatch.setattr(evaluate_cli, "create_space", lambda name: small_space)
    monkeypatch.setattr(evaluate_cli, "top1", counting_top1)
    return evaluate_cli.main, calls


def _distinct_subnets(space, n: int, seed: int = 0) -> list:
    rng, out = random.Random(seed), []
    while len(out) < n:
        sub = space.sample(rng)
        if sub not in out:
            out.append(sub)
    return out


# ---- the CLI and the store --------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_evaluates_each_subnet_once_and_fits_a_predictor(cli, small_space, checkpoint: Path, tmp_path: Path,
                                                              capsys):
    main, calls = cli
    store = tmp_path / "acc.sqlite"
    common = ["--checkpoint", str(checkpoint), "--data", "synthetic:16:4", "--store", str(store)]
    base = [*common, "--subnet", "min", "--subnet", "max", "--sample", "4", "--seed", "1"]
    assert main(base) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(calls) == 6 and first["evaluated"] == 6 and first["cached"] == 0
    assert [r["name"] for r in first["results"]] == ["min", "max", *(f"sample-{i}" for i in range(4))]
    assert all(0.0 <= r["top1"] <= 1.0 for r in first["results"])
    assert first["checkpoint"]["step"] == 2 and len(first["checkpoint"]["sha256"]) == 64

    # the same arguments: nothing evaluated, the stored results printed
    assert main(base) == 0
    second = json.loads(capsys.readouterr().out)
    assert len(calls) == 6 and second["evaluated"] == 0 and second["cached"] == 6
    assert [(r["id"], r["top1"]) for r in second["results"]] == [(r["id"], r["top1"]) for r in first["results"]]

    # one more sample: only the new subnet is evaluated (the first four draws are the same)
    assert main([*base[:-4], "--sample", "5", "--seed", "1"]) == 0
    assert len(calls) == 7 and json.loads(capsys.readouterr().out)["evaluated"] == 1

    # other calibration images are another question
    assert main([*common, "--subnet", "min", "--calib", "synthetic:8:4"]) == 0
    assert len(calls) == 8 and json.loads(capsys.readouterr().out)["evaluated"] == 1

    # the predictor: fitted on the store's 7 results of this context when the command names no subnet
    out = tmp_path / "predictor.json"
    assert main([*common, "--seed", "1", "--fit-predictor", str(out), "--holdout", "0.4"]) == 0
    everything = json.loads(capsys.readouterr().out)["predictor"]
    assert len(everything["fit_ids"]) + len(everything["test_ids"]) == 7
    # ... and on this command's own 6 subnets when it names some (the seventh stays out), ranked on held-out ones
    assert main([*base, "--fit-predictor", str(out), "--holdout", "0.4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(calls) == 8  # fitting evaluates nothing
    pred = report["predictor"]
    fit_ids, test_ids = set(pred["fit_ids"]), set(pred["test_ids"])
    assert not fit_ids & test_ids and fit_ids | test_ids == {r["id"] for r in first["results"]}
    assert len(test_ids) == 3  # max(MIN_SIDE, round(0.4 x 6))
    assert pred["fraction"] == 0.4 and pred["seed"] == 1 and "spearman" in pred and "kendall" in pred
    # the reported correlation is the saved predictor's on the held-out subnets
    loaded = AccuracyPredictor.load(out)
    with AccuracyStore(store) as s:
        ctx = Context.of(report["checkpoint"]["sha256"], report["data"], report["calibration"])
        by_id = {r.id: r for r in s.results(ctx)}
    held = sorted(test_ids)
    predicted = loaded.predict(small_space, [small_space.from_dict(json.loads(by_id[i].subnet)) for i in held])
    assert [t[2] for t in pred["test"]] == pytest.approx(predicted.tolist())
    truth = [by_id[i].top1 for i in held]
    if pred["spearman"] is not None:
        assert pred["spearman"] == pytest.approx(stats.spearmanr(predicted, truth).statistic)
    assert json.loads(out.read_text())["provenance"]["holdout"]["test_ids"] == held


def test_store_answers_each_question_once(tmp_path: Path):
    ctx = Context.of("ab" * 32, {"synthetic": "synthetic:8"}, {"data": None, "batches": 8})
    other = Context.of("cd" * 32, {"synthetic": "synthetic:8"}, {"data": None, "batches": 8})
    with AccuracyStore(tmp_path / "a.sqlite") as store:
        assert store.get(ctx, "s1") is None
        first = store.add(ctx, "s1", 0.5, 1.0, {"run": 1})
        again = store.add(ctx, "s1", 0.9, 2.0, {"run": 2})  # a second answer to the same question is ignored
        assert again == first and first.top1 == 0.5 and first.info == {"run": 1}
        store.add(other, "s1", 0.7, 1.0, {})
        assert [r.top1 for r in store.results(ctx)] == [0.5] and store.get(other, "s1").top1 == 0.7
    with AccuracyStore(tmp_path / "a.sqlite") as store:  # persisted
        assert store.get(ctx, "s1") == first


def test_identities(tmp_path: Path):
    w = {"a": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    assert weights_sha256(w) == weights_sha256({"n": torch.tensor(3), "a": torch.arange(6.0).reshape(2, 3)})
    assert weights_sha256(w) != weights_sha256({**w, "a": torch.arange(6.0).reshape(3, 2)})
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(b"x" * 10)
    before = data_identity(str(tmp_path), 128, 0)
    assert before["files"] == 1 and before["size_bytes"] == 10
    (tmp_path / "cat" / "b.png").write_bytes(b"y")
    assert data_identity(str(tmp_path), 128, 0) != before
    assert data_identity("synthetic:8:2", 128, 0) != data_identity("synthetic:8:2", 128, 1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_identity(str(tmp_path / "missing"), 128, 0)


def _write_bad(kind: str, path: Path) -> None:
    if kind == "truncated":
        torch.save({"format": 2, "supernet": {"w": torch.arange(10_000.0)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "four junk bytes":
        path.write_bytes(b"junk")
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "a model state dict":
        torch.save({"weight": torch.zeros(3), "bias": torch.zeros(3)}, path)
    elif kind == "JSON":
        path.write_text(json.dumps({"format": 2}))
    elif kind == "weights of another network":
        torch.save({"format": CHECKPOINT_FORMAT, "step": 1, "supernet": {"w": torch.zeros(3)}}, path)


@pytest.mark.parametrize("kind", ["missing", "truncated", "four junk bytes", "random bytes", "a model state dict",
                                  "JSON", "weights of another network"])
def test_cli_refuses_a_corrupt_or_foreign_checkpoint_in_one_line(kind: str, cli, tmp_path: Path, capsys):
    main, calls = cli
    ckpt = tmp_path / "c.pt"
    _write_bad(kind, ckpt)
    code = main(["--checkpoint", str(ckpt), "--data", "synthetic:16:2", "--subnet", "min",
                 "--store", str(tmp_path / "s.sqlite")])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert str(ckpt) in err and ("checkpoint" in err or "supernet" in err), err
    if kind == "weights of another network":  # read, then refused by the supernet's shapes
        assert "do not fit" in err, err
    assert not calls and not captured.out


def test_cli_usage_errors_are_one_line(cli, tmp_path: Path, capsys):
    main, _ = cli
    assert main(["--checkpoint", str(tmp_path / "c.pt"), "--data", "synthetic"]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "c.pt"), "--data", "synthetic", "--subnet", "nope"]) == 2
    assert "unknown subnet" in capsys.readouterr().err


# ---- the predictor ---------------------------------------------------------------------------------
def _monotone_in_macs(space, subs) -> np.ndarray:
    """A known monotone (not linear, not log-linear) function of MACs: a saturating accuracy curve."""
    macs = np.array([subnet_costs(space, s)["macs"] for s in subs])
    return 0.85 - 0.6 / (1.0 + (macs / 2e8) ** 1.5)


@pytest.mark.parametrize("model", ["ridge", "xgboost", "auto"])
def test_predictor_ranks_a_monotone_function_of_macs_and_not_noise(space, model: str):
    subs = _distinct_subnets(space, 400)
    y = _monotone_in_macs(space, subs)
    ids = list(range(100, 500))
    _, report = fit_and_test(space, subs, y, ids, AccuracyPredictor(model=model), fraction=0.3, seed=0)
    assert not set(report.fit_ids) & set(report.test_ids) and len(report.test_ids) == 120
    assert set(report.fit_ids) | set(report.test_ids) == set(ids)
    assert report.spearman > 0.95 and report.kendall > 0.8, report
    # the same subnets with the targets shuffled: nothing to learn, the held-out ranking must be near chance
    shuffled = np.random.default_rng(0).permutation(y)
    _, noise = fit_and_test(space, subs, shuffled, ids, AccuracyPredictor(model=model), fraction=0.3, seed=0)
    assert abs(noise.spearman) < 0.3 and abs(noise.kendall) < 0.2, noise


def test_holdout_split_is_seeded_and_independent_of_order():
    keys = [f"subnet-{i}" for i in range(20)]
    fit, test = holdout_split(keys, 0.3, seed=0)
    assert len(test) == 6 and sorted(fit + test) == list(range(20))
    rev_fit, rev_test = holdout_split(keys[::-1], 0.3, seed=0)
    assert sorted(keys[::-1][i] for i in rev_test) == sorted(keys[i] for i in test)
    assert holdout_split(keys, 0.3, seed=1)[1] != test
    with pytest.raises(ValueError, match="too few"):
        holdout_split(keys[:5], 0.3, seed=0)


@pytest.mark.parametrize("model", ["ridge", "xgboost"])
def test_predictor_save_load_round_trip_and_version_refusal(space, model: str, tmp_path: Path):
    subs = _distinct_subnets(space, 60, seed=3)
    y = _monotone_in_macs(space, subs)
    with pytest.raises(NotFittedError):
        AccuracyPredictor().predict(space, subs)
    p = AccuracyPredictor(model=model).fit(space, subs[:40], y[:40])
    path = tmp_path / "acc.json"
    p.save(path, {"checkpoint": "x"})
    loaded = AccuracyPredictor.load(path)
    assert loaded.model_ == model and loaded.n_samples_ == 40
    np.testing.assert_allclose(loaded.predict(space, subs[40:]), p.predict(space, subs[40:]), rtol=1e-6, atol=1e-7)
    doc = json.loads(path.read_text())
    for field, value, words in (("format_version", 99, "version 99"), ("format", "other/thing", "other/thing")):
        bad = tmp_path / f"bad-{field}.json"
        bad.write_text(json.dumps({**doc, field: value}))
        with pytest.raises(PredictorFormatError, match=words) as e:
            AccuracyPredictor.load(bad)
        assert len(str(e.value).splitlines()) == 1
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(PredictorFormatError, match="not a JSON"):
        AccuracyPredictor.load(tmp_path / "junk.json")
    other = replace(space, stages=space.stages[:-1])  # other features: refused, not silently mis-read
    with pytest.raises(PredictorFormatError, match="refit"):
        loaded.predict(other, [])


def test_subnet_key_is_canonical(space):
    sub = space.released["S1"]
    assert subnet_key(space, sub) == subnet_key(space, space.from_dict(json.loads(subnet_key(space, sub))))
