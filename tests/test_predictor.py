"""Predictor package: analytical fit, XGBoost round trip, sampler budget, LUT fill, subnet sums, CLI.

Synthetic devices only (an AnalyticalModel with chosen constants, plus noise), so these tests do
not depend on the published phone LUTs.
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from nas._registry import create_space
from nas.costs import OP_KINDS
from predictor import metrics
from predictor.analytical import AnalyticalModel, NotFittedError
from predictor.lut import Lut, NetworkCorrection, SubnetPredictor, predict_subnets, weight_mb
from predictor.lutfill import evaluate, fill, main as lutfill_main
from predictor.sampler import SamplerConfig, choose
from predictor.xgb import LatencyPredictor, PredictorFormatError

TRUE_PARAMS = {
    **{f"peak_{k}": 2e6 for k in OP_KINDS},
    "peak_conv1x1": 8e6, "peak_linear": 6e6, "peak_dwconv": 1.5e6, "peak_matmul": 4e6,
    **{f"overhead_ms_{k}": 2e-3 for k in OP_KINDS},
    "bw_cache": 6e7, "bw_dram": 8e6, "cache_bytes": 5e5, "invoke_ms": 0.02,
}


@pytest.fixture(scope="module")
def space():
    return create_space("elasticvit")


@pytest.fixture(scope="module")
def blocks(space):
    return space.enumerate_blocks()


@pytest.fixture(scope="module")
def device(blocks) -> dict[str, float]:
    """A synthetic phone: the analytical model with TRUE_PARAMS and 2% multiplicative noise."""
    truth = AnalyticalModel.from_params(TRUE_PARAMS, simd_width=8, threads=1).predict(blocks)
    noise = np.exp(np.random.default_rng(0).normal(0.0, 0.02, len(blocks)))
    return {b.key: float(v) for b, v in zip(blocks, truth * noise)}


def _subset(blocks, n: int, seed: int):
    idx = np.random.default_rng(seed).choice(len(blocks), n, replace=False)
    return [blocks[i] for i in idx]


def test_metrics_known_values():
    true = np.array([1.0, 2.0, 4.0, 10.0])
    pred = np.array([1.04, 2.3, 4.0, 9.0])
    assert metrics.acc_within(pred, true, 0.05) == pytest.approx(0.5)
    assert metrics.acc_within(pred, true, 0.10) == pytest.approx(0.75)
    assert metrics.mape(pred, true) == pytest.approx((0.04 + 0.15 + 0 + 0.1) / 4)
    assert metrics.rmse(pred, true) == pytest.approx(np.sqrt((0.04**2 + 0.3**2 + 1.0) / 4))
    with pytest.raises(ValueError):
        metrics.mape([1.0], [0.0])


def test_analytical_recovers_known_constants(blocks):
    cfgs = _subset(blocks, 250, 1)
    true_model = AnalyticalModel.from_params(TRUE_PARAMS, simd_width=8, threads=1)
    y = true_model.predict(cfgs)
    fitted = AnalyticalModel(threads=(1,), ridge=1e-6).fit(cfgs, y)  # width still chosen from 4/8/16
    assert fitted.simd_width_ == 8
    assert metrics.mape(fitted.predict(blocks), true_model.predict(blocks)) < 0.01
    # Constants that carry most of the time must come back; rarely binding ones are not identifiable.
    for name in ("peak_conv1x1", "peak_linear", "peak_dwconv", "invoke_ms"):
        assert fitted.params_[name] == pytest.approx(TRUE_PARAMS[name], rel=0.1), name


def test_unfitted_models_raise(blocks):
    with pytest.raises(NotFittedError, match="fit"):
        AnalyticalModel().predict(blocks[:3])
    with pytest.raises(NotFittedError, match="fit"):
        LatencyPredictor().predict(blocks[:3])


def test_xgb_fit_predict_save_load(tmp_path, blocks, device):
    train = _subset(blocks, 200, 2)
    model = LatencyPredictor(n_estimators=100).fit(train, [device[b.key] for b in train])
    pred = model.predict(blocks)
    assert pred.shape == (len(blocks),) and np.all(pred > 0)
    assert metrics.mape(pred, [device[b.key] for b in blocks]) < 0.05
    path = tmp_path / "model.json"
    model.save(path)
    doc = json.loads(path.read_text())
    assert doc["format_version"] >= 1 and {"xgboost", "numpy", "python"} <= set(doc["versions"])
    np.testing.assert_allclose(LatencyPredictor.load(path).predict(blocks), pred, rtol=1e-6)
    doc["format_version"] += 1
    path.write_text(json.dumps(doc))
    with pytest.raises(PredictorFormatError, match="format version"):
        LatencyPredictor.load(path)


def test_sampler_budget_and_determinism(blocks, device):
    cands = _subset(blocks, 300, 3)
    calls: list[int] = []

    def measure(batch):
        calls.append(len(batch))
        return [device[b.key] for b in batch]

    cfg = SamplerConfig(ensemble=2, coverage_share=0.8)
    budget = 80  # coverage (64) reaches the tree threshold, so uncertainty rounds run too
    a = choose(cands, budget, measure, np.random.default_rng(7), config=cfg)
    assert len(a) == budget == sum(calls) and len(calls) > 1
    b = choose(cands, budget, measure, np.random.default_rng(7), config=cfg)
    assert list(a) == list(b)
    assert all(a[k] == device[k] for k in a)
    assert choose(cands, 0, measure, np.random.default_rng(0)) == {}
    small = cands[:5]
    assert set(choose(small, 50, measure, np.random.default_rng(0))) == {b.key for b in small}


def test_predict_subnets_equals_plain_sum(space, blocks):
    rng = np.random.default_rng(4)
    lut = {b.key: float(v) for b, v in zip(blocks, rng.uniform(0.05, 5.0, len(blocks)))}
    r = random.Random(5)
    subnets = [space.sample(r) for _ in range(300)] + [space.min_subnet(), space.max_subnet()]
    plain = np.array([sum(lut[b.key] for b in space.blocks_of(s)) for s in subnets])
    np.testing.assert_allclose(predict_subnets(lut, subnets, space), plain, rtol=1e-12)
    nets = [[(b, lut[b.key]) for b in space.blocks_of(s)] for s in subnets]
    # network-level effects: attention 1.3x slower in a network, weights re-fetched at 0.05 ms/MB,
    # 0.02 ms per block boundary, 0.5 ms per graph
    truth = np.array([sum((1.3 if b.type == "transattn" else 1.0) * ms + 0.05 * weight_mb(b) + 0.02 for b, ms in n) + 0.5
                      for n in nets])
    corr = NetworkCorrection(ridge=1e-9).fit(nets, truth)
    assert corr.scale_["transattn"] == pytest.approx(1.3, rel=1e-4) and corr.per_block_ms_ == pytest.approx(0.02, rel=1e-3)
    assert corr.ms_per_weight_mb_ == pytest.approx(0.05, rel=1e-3)
    assert NetworkCorrection.from_state(corr.get_state()).predict(nets) == pytest.approx(truth, rel=1e-6)
    # and one that depends on the input resolution: networks at R=224 a further 10% slower
    res_truth = truth + np.array([0.1 * p if s.resolution == 224 else 0.0 for s, p in zip(subnets, plain)])
    rcorr = NetworkCorrection(ridge=1e-9).fit(nets, res_truth)
    eff = rcorr.scale_by_resolution_
    assert eff.get(224, 0.0) - eff.get(128, 0.0) == pytest.approx(0.1, rel=1e-3)
    np.testing.assert_allclose(SubnetPredictor(lut, space, rcorr).predict(subnets), res_truth, rtol=1e-6)
    np.testing.assert_allclose(rcorr.predict(nets), res_truth, rtol=1e-6)
    np.testing.assert_allclose(SubnetPredictor(lut, space, corr).predict(subnets), truth, rtol=1e-6)
    np.testing.assert_allclose(corr.predict(nets), truth, rtol=1e-6)
    one = NetworkCorrection().fit(nets[:1], truth[:1])  # one network: the ridge keeps it near the plain sum
    assert abs(one.predict(nets[:1])[0] - truth[0]) < abs(plain[0] - truth[0])
    assert all(0.5 < v < 2 for v in one.scale_.values())


def test_lut_fill_covers_reachable_keys(tmp_path, space, blocks, device):
    res = fill(space, device, budget=40, seed=0)
    lut = res.lut
    assert set(lut.entries) == {b.key for b in blocks}
    assert len(res.train_keys) == 40 == lut.count("measured")
    assert all(lut.entries[k].latency_ms == device[k] and lut.entries[k].source == "measured" for k in res.train_keys)
    report = evaluate(space, lut, device, res.train_keys, seed=0, n_subnets=200)
    assert report["subnet"]["mape"] < 0.1
    lut.save(tmp_path / "lut.json")
    assert Lut.load(tmp_path / "lut.json").entries == lut.entries
    lut.export_nnmeter(tmp_path / "flat.json")
    assert json.loads((tmp_path / "flat.json").read_text()) == lut.flat()


@pytest.mark.slow
def test_lutfill_cli_end_to_end(tmp_path, capsys, device):
    full, prior, out = tmp_path / "full.json", tmp_path / "prior.json", tmp_path / "filled.json"
    full.write_text(json.dumps(device))
    prior.write_text(json.dumps({k: 1.3 * v for k, v in device.items()}))
    assert lutfill_main(["--lut", str(full), "--budget", "20", "--seed", "1", "--prior", str(prior),
                         "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    report = json.loads(line)
    assert set(report["entry"]) == set(report["subnet"]) == {"acc5", "acc10", "mape", "rmse_ms"}
    filled = json.loads(out.read_text())
    train = json.loads((tmp_path / "filled.train_keys.json").read_text())
    assert len(filled) == len(device) and len(train) == 20
    assert all(filled[k] == device[k] for k in train)
    assert lutfill_main(["--lut", str(tmp_path / "missing.json"), "--budget", "5", "--seed", "0",
                         "--out", str(out)]) == 2


@pytest.mark.slow
def test_lutfill_cli_on_the_shipped_phone_luts(tmp_path, capsys):
    out = tmp_path / "mi11.json"
    assert lutfill_main(["--lut", "xiaomi11", "--prior", "pixel4", "--budget", "30", "--seed", "0",
                         "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_measured"] == 30 and report["n_keys"] == 3073 and report["prior"]
    assert report["subnet"]["acc10"] > 0.5  # a loose sanity bound; the accuracy figures are benchmarks/bench_lutfill.py's
    assert len(json.loads(out.read_text())) == 3073


def test_sampler_skips_blocks_the_device_cannot_run(blocks, device):
    cands = _subset(blocks, 200, 5)
    broken = {b.key for b in cands[::7]}
    asked: list[str] = []

    def measure(batch):
        asked.extend(b.key for b in batch)
        return [float("nan") if b.key in broken else device[b.key] for b in batch]

    got = choose(cands, 70, measure, np.random.default_rng(1), config=SamplerConfig(ensemble=2))
    assert len(asked) == 70 == len(set(asked))  # failures use budget and are never asked for twice
    assert not set(got) & broken and len(got) == 70 - len(set(asked) & broken)
    with pytest.raises(ValueError, match="positive"):
        choose(cands, 5, lambda batch: [0.0] * len(batch), np.random.default_rng(0))
