"""Predictor package: analytical fit, XGBoost round trip, sampler budget, LUT fill, subnet sums, CLI.

Synthetic devices only (an AnalyticalModel with chosen constants, plus noise), so these tests do
not depend on the published phone LUTs.
"""
from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import random
import struct

import numpy as np
import pytest

from nas.costs import OP_KINDS, block_ops
from nas.searchspace import InvalidSubnet
from predictor import metrics
from predictor.analytical import AnalyticalModel, NotFittedError
from predictor.composition import FIT0_MULTI_ROW_WEIGHT, Composition, n_ops, weight_mb
from predictor.lut import Lut
from predictor.lut_io import LutFormatError, export_nnmeter, load_flat, open_lut, save_lut
from predictor.lutfill import evaluate, fill
from predictor.lutfill import main as lutfill_main
from predictor.plots import fill_plot
from predictor.sampler import SamplerConfig, choose
from predictor.subnet_predictor import MissingKeyError, SubnetPredictor, predict_subnets
from predictor.xgb import LatencyPredictor, PredictorFormatError

TRUE_PARAMS = {
    **{f"peak_{k}": 2e6 for k in OP_KINDS},
    "peak_conv1x1": 8e6, "peak_linear": 6e6, "peak_dwconv": 1.5e6, "peak_matmul": 4e6,
    **{f"overhead_ms_{k}": 2e-3 for k in OP_KINDS},
    "bw_cache": 6e7, "bw_dram": 8e6, "cache_bytes": 5e5, "invoke_ms": 0.02,
}



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
    for name in ("peak_conv1x1", "peak_linear", "peak_dwconv"):
        assert fitted.params_[name] == pytest.approx(TRUE_PARAMS[name], rel=0.1), name
    # The invoke time trades off against the per-op overheads it is added to (13% off here).
    assert fitted.params_["invoke_ms"] == pytest.approx(TRUE_PARAMS["invoke_ms"], rel=0.25)


def test_analytical_sum_and_attention_projection_constants(blocks):
    attn = [b for b in blocks if b.type == "transattn"][:30]
    ffn = [b for b in blocks if b.type == "transffn"][:30]
    base = AnalyticalModel.from_params(TRUE_PARAMS, simd_width=8, threads=1)
    slow = AnalyticalModel.from_params({**TRUE_PARAMS, "peak_attn_linear": TRUE_PARAMS["peak_linear"] / 2}, 8, 1)
    assert np.all(slow.predict(attn) > base.predict(attn) * 1.05)  # the projections carry real time
    np.testing.assert_allclose(slow.predict(ffn), base.predict(ffn))  # FFN layers keep linear's constants
    shared = AnalyticalModel.from_state({**slow.get_state(), "split_attention": False})
    np.testing.assert_allclose(shared.predict(attn), base.predict(attn))
    roofline = AnalyticalModel.from_params(TRUE_PARAMS, simd_width=8, threads=1, combine="max")
    assert np.all(roofline.predict(blocks[:300]) < base.predict(blocks[:300]))  # a smooth max is below the sum
    with pytest.raises(ValueError, match="combine"):
        AnalyticalModel(combine="mean")


def test_a_model_fitted_from_a_prior_uses_the_prior_s_kinds(blocks):
    """Transfer's prior models share linear constants: the target model fitted from one must too (its attention
    projections must not use attn_linear constants the prior never fitted)."""
    params = {**TRUE_PARAMS, "peak_attn_linear": TRUE_PARAMS["peak_linear"] / 10}
    shared = AnalyticalModel.from_state({**AnalyticalModel.from_params(params, 8, 1, combine="max").get_state(),
                                         "split_attention": False})
    cfgs = [b for b in blocks if b.type in ("transattn", "transffn")][:40]
    target = AnalyticalModel(prior=shared, ridge=0.1).fit(cfgs, shared.predict(cfgs))
    assert target.combine == "max" and not target.split_attention
    np.testing.assert_allclose(target.predict(cfgs), shared.predict(cfgs), rtol=1e-3)


def test_analytical_state_saved_before_the_split_loads_unchanged(blocks):
    cfgs = _subset(blocks, 120, 4)
    old = AnalyticalModel(combine="max", split_attention=False, threads=(1,)).fit(
        cfgs, AnalyticalModel.from_params(TRUE_PARAMS, simd_width=8, threads=1).predict(cfgs))
    state = old.get_state()
    nk, theta = len(OP_KINDS), state["theta"]
    legacy = {k: v for k, v in state.items() if k not in ("combine", "split_attention")}
    legacy.update(op_kinds=list(OP_KINDS), theta=theta[:nk] + theta[nk + 1:2 * nk + 1] + theta[2 * nk + 2:])
    loaded = AnalyticalModel.from_state(json.loads(json.dumps(legacy)))
    assert loaded.combine == "max" and not loaded.split_attention
    np.testing.assert_allclose(loaded.predict(blocks), old.predict(blocks), rtol=1e-12)
    with pytest.raises(ValueError, match="op kinds"):
        AnalyticalModel.from_state({**legacy, "op_kinds": list(OP_KINDS[:-1])})


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
    # in a network each block re-fetches its weights. The probes: one-row layers cost 0.03 ms/MB more in a
    # chain than alone up to 48 MB and 0.07 from 64 MB; 16-row layers 0.06 and 0.12
    sizes, extra = [8.0, 48.0, 64.0, 128.0], {1: [0.03, 0.03, 0.07, 0.07], 16: [0.06, 0.06, 0.12, 0.12]}
    alone = {1: 0.01, 16: 0.05}  # one 1 MB layer alone
    chains = {(t, mb): mb * (alone[t] + e) for t, es in extra.items() for mb, e in zip(sizes, es)}
    probe = dataclasses.replace(Composition.from_probes(chains, alone), own_footprint=True)
    w_net = np.array([sum(weight_mb(b) for b, _ in n) for n in nets])
    assert w_net.min() < 48 and w_net.max() > 64  # the space spans both sides of the step

    def in_network(cfg, w, anchored=True, table=extra):  # op by op: its rows' cost per MB, linear in log rows 1-16
        if anchored:  # 0 at the 1 MB reference, linear up to the smallest probe
            per_mb = {t: np.interp(np.clip(w, 1, 128), [1.0, *sizes], [0.0, *es]) for t, es in table.items()}
        else:  # version 5: clamped at the smallest probe
            per_mb = {t: np.interp(np.clip(w, 8, 128), sizes, es) for t, es in table.items()}
        frac = [min(max(np.log(max(op.work_items, 1)) / np.log(16), 0.0), 1.0) for op in block_ops(cfg)]
        return sum(op.weight_bytes / 2**20 * ((1 - f) * per_mb[1] + f * per_mb[16])
                   for op, f in zip(block_ops(cfg), frac))

    assert {op.work_items for b in blocks for op in block_ops(b)} >= {1, 16, 64}  # rows below, at and beyond
    # each block pays what the network's footprint adds to its own (its alone entry streams its own weights)
    weights = np.array([sum(in_network(b, w) - in_network(b, weight_mb(b)) for b, _ in n) for n, w in zip(nets, w_net)])
    assert max(weight_mb(b) for n in nets for b, _ in n) > 8  # a block beyond the smallest probe (the head)
    truth = plain + weights
    np.testing.assert_allclose(probe.predict(nets), truth, rtol=1e-12)
    np.testing.assert_allclose(SubnetPredictor(lut, space, probe).predict(subnets), truth, rtol=1e-9)
    np.testing.assert_allclose([sum(probe.entries(n)) for n in nets[:5]], truth[:5], rtol=1e-12)  # entries sum up
    np.testing.assert_allclose(probe.extra_ms_per_mb([1.0, 4.5, 500.0]), [[0, 0], [0.015, 0.03], [0.07, 0.12]])
    v5 = dataclasses.replace(probe, own_footprint=False)  # the default, and a version-5 LUT's formula
    old = plain + np.array([sum(in_network(b, w, anchored=False) for b, _ in n) for n, w in zip(nets, w_net)])
    np.testing.assert_allclose(SubnetPredictor(lut, space, v5).predict(subnets), old, rtol=1e-9)
    np.testing.assert_allclose(v5.extra_ms_per_mb([1.0, 500.0]), [[0.03, 0.06], [0.07, 0.12]])
    # the device is 10% slower and its weights cost 1.3x what the probes say: a fit on a few networks finds it
    slower = 1.1 * (plain + 1.3 * weights)
    fitted = fitted_slower = probe.fit(nets[:10], slower[:10], ridge=1e-9)
    assert fitted.scale == pytest.approx(1.1, rel=1e-6) and fitted.weight_scale == pytest.approx(1.3, rel=1e-6)
    assert fitted.fitted_networks == 10 and fitted.curve_ms == probe.curve_ms
    np.testing.assert_allclose(SubnetPredictor(lut, space, fitted).predict(subnets), slower, rtol=1e-6)
    # ... and each op costs 0.01 ms more inside a network than alone: the third term finds it
    ops = np.array([sum(n_ops(b) for b, _ in n) for n in nets])
    with_ops = slower + 1.1 * 0.01 * ops
    fitted = probe.fit(nets[:10], with_ops[:10], ridge=1e-9)
    assert fitted.ms_per_op == pytest.approx(0.01, rel=1e-5) and fitted.weight_scale == pytest.approx(1.3, rel=1e-5)
    np.testing.assert_allclose(SubnetPredictor(lut, space, fitted).predict(subnets), with_ops, rtol=1e-6)
    np.testing.assert_allclose([sum(fitted.entries(n)) for n in nets[:5]], with_ops[:5], rtol=1e-9)
    # ... and a type's blocks run 1.3x slower inside a network than alone, beyond their weights: its scale finds it
    typed = with_ops + 1.1 * 0.3 * np.array([sum(ms for b, ms in n if b.type == "transffn") for n in nets])
    fitted = probe.fit(nets[:12], typed[:12], ridge=1e-9)
    assert dict(fitted.type_scales)["transffn"] / dict(fitted.type_scales)["conv"] == pytest.approx(1.3, rel=1e-5)
    np.testing.assert_allclose(SubnetPredictor(lut, space, fitted).predict(subnets), typed, rtol=1e-6)
    np.testing.assert_allclose([sum(fitted.entries(n)) for n in nets[:5]], typed[:5], rtol=1e-9)
    one = probe.fit(nets[:1], slower[:1])  # one network: the ridge keeps it near the probe's values
    assert abs(one.predict(nets[:1])[0] - slower[0]) < abs(probe.predict(nets[:1])[0] - slower[0])
    assert 0.9 < one.scale < 1.2
    # nothing fitted: the probes alone, charging each op the one-row curve plus half its rows' excess over it (the
    # multi-row probes' level is too noisy to charge in full)
    alone_only = probe.fit([], [])
    assert alone_only == probe.probes_only() and alone_only.fitted_networks == 0 and alone_only.tokens == (1, 16)
    assert alone_only.multi_row_weight == FIT0_MULTI_ROW_WEIGHT == 0.5 and alone_only.curve_ms == probe.curve_ms
    half = {1: extra[1], 16: [a + 0.5 * (b - a) for a, b in zip(extra[1], extra[16])]}
    fit0 = plain + np.array([sum(in_network(b, w, table=half) - in_network(b, weight_mb(b), table=half) for b, _ in n)
                             for n, w in zip(nets, w_net)])
    assert np.all(fit0 < truth) and np.all(fit0 > plain + weights / 2)  # between the one-row curve and the grid
    np.testing.assert_allclose(alone_only.predict(nets), fit0, rtol=1e-12)
    np.testing.assert_allclose(SubnetPredictor(lut, space, alone_only).predict(subnets), fit0, rtol=1e-9)
    np.testing.assert_allclose(alone_only.extra_ms_per_mb(500.0), [0.07, 0.095])
    assert alone_only.probes_only() is alone_only
    assert alone_only.fit(nets[:10], slower[:10], ridge=1e-9) == fitted_slower  # a fit charges every row in full
    # saved and read back; a version-6 state (made before the weight) reads with the rows in full, as it was made
    assert Composition.from_state(alone_only.get_state()) == alone_only
    v6 = {k: v for k, v in alone_only.get_state().items() if k != "multi_row_weight"} | {"format_version": 6}
    assert Composition.from_state(v6) == dataclasses.replace(alone_only, multi_row_weight=1.0)
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(LutFormatError, match="multi_row_weight"):
            dataclasses.replace(probe, multi_row_weight=bad)
    # fitted from the probes' default formula (no own footprint): the fit charges the own footprint (FIT_OWN_FOOTPRINT)
    refit = v5.fit(nets[:10], slower[:10], ridge=1e-9)
    assert refit.own_footprint and refit.scale == pytest.approx(1.1, rel=1e-6)
    np.testing.assert_allclose(refit.predict(nets), slower, rtol=1e-6)
    assert v5.fit([], []) == v5.probes_only() and not v5.fit([], []).own_footprint  # nothing fitted: as it was
    # a type the networks say takes less than no time (noise on the stem, one small block per network): held at
    # its prior, the others fitted (before: the whole fit was dropped for the probes' formula)
    stem = np.array([sum(ms for b, ms in n if b.type == "firstconv") for n in nets])
    odd = slower - 1.5 * stem
    fitted = probe.fit(nets[:10], odd[:10], ridge=1e-9)
    scales = dict(fitted.type_scales)
    assert fitted.fitted_networks == 10 and min(scales.values()) > 0
    assert fitted.scale * scales["firstconv"] == pytest.approx(1.0)  # its prior: scale 1 x type scale 1
    def err(c: Composition) -> float:
        return float(np.abs(np.log(c.predict(nets[:10]) / odd[:10])).mean())

    assert err(fitted) < err(probe)


def test_vectorised_prediction_equals_the_block_walk_in_every_space(any_space):
    """The stage-id index gives each subnet the sum of its blocks (as `blocks_of` lists them) and the block
    counts lutfill weighs by, in every space, also for stage choices first seen in a later batch."""
    blocks = any_space.enumerate_blocks()
    rng = np.random.default_rng(1)
    lut = {b.key: float(v) for b, v in zip(blocks, rng.uniform(0.05, 5.0, len(blocks)))}
    pred = SubnetPredictor(lut, any_space)
    r = random.Random(2)
    for batch in ([any_space.min_subnet(), any_space.max_subnet(), *any_space.released.values()],
                  [any_space.sample(r) for _ in range(300)]):
        plain = [sum(lut[b.key] for b in any_space.blocks_of(s)) for s in batch]
        np.testing.assert_allclose(pred.predict(batch), plain, rtol=1e-12)
        counts = pred.indexer.block_counts(pred.indexer.encode(batch))
        walked = collections.Counter(b.key for s in batch for b in any_space.blocks_of(s))
        assert {k: counts[i] for i, k in enumerate(lut) if counts[i]} == walked
    bad = dataclasses.replace(batch[0], resolution=1)
    with pytest.raises(InvalidSubnet, match="subnet 1"):
        pred.predict([batch[0], bad])
    wide = dataclasses.replace(batch[0], stages=(dataclasses.replace(batch[0].stages[0], width=999),
                                                 *batch[0].stages[1:]))
    with pytest.raises(InvalidSubnet, match="subnet 0: .*width"):
        pred.predict([wide])


def test_lut_fill_covers_reachable_keys(tmp_path, space, blocks, device):
    res = fill(space, device, budget=40, seed=0)
    lut = res.lut
    assert set(lut.entries) == {b.key for b in blocks}
    assert len(res.train_keys) == 40 == lut.count("measured")
    assert all(lut.entries[k].latency_ms == device[k] and lut.entries[k].source == "measured" for k in res.train_keys)
    report = evaluate(space, lut, device, res.train_keys, seed=0, n_subnets=200)
    assert report["subnet"]["mape"] < 0.1
    save_lut(lut, tmp_path / "lut.json")
    again = open_lut(tmp_path / "lut.json")
    assert isinstance(again, Lut) and again.entries == lut.entries and again.meta == lut.meta
    assert json.loads((tmp_path / "lut.json").read_text())["format_version"] == 1
    export_nnmeter(lut, tmp_path / "flat.json")
    assert json.loads((tmp_path / "flat.json").read_text()) == lut.flat() == load_flat(tmp_path / "flat.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.json", "lut.json"]  # no temporary files left
    with pytest.raises(LutFormatError, match="open_lut"):
        load_flat(tmp_path / "lut.json")  # sources and meta would be lost: a flat reader refuses it


@pytest.mark.slow
def test_lutfill_cli_end_to_end(tmp_path, capsys, device):
    full, prior, out = tmp_path / "full.json", tmp_path / "prior.json", tmp_path / "filled.json"
    full.write_text(json.dumps(device))
    prior.write_text(json.dumps({k: 1.3 * v for k, v in device.items()}))
    assert lutfill_main(["--lut", str(full), "--budget", "20", "--seed", "1", "--prior", str(prior),
                         "--out", str(out), "--plot", str(tmp_path / "fill.png")]) == 0
    assert (tmp_path / "fill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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


def test_fill_plot_draws_entries_and_subnets_also_with_every_entry_measured(tmp_path):
    rng = np.random.default_rng(0)
    true = np.exp(rng.uniform(-3, 2, 200))
    sub_true = rng.uniform(10, 90, 50)
    for name, entries in (("some.png", 200), ("none.png", 0)):  # budget = every key: no entry left to predict
        fill_plot(true[:entries] * 1.05, true[:entries], sub_true * 0.97, sub_true, "dev", tmp_path / "d" / name)
        png = (tmp_path / "d" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == (1200, 600)  # both panels, at 120 dpi


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


# ---- LUT files: every bad input is a LutFormatError naming the file and the key -------------------
def _gz(tmp_path, device, n_bytes=None):
    raw = gzip.compress(json.dumps(device).encode())
    path = tmp_path / "phone.json.gz"
    path.write_bytes(raw if n_bytes is None else raw[:n_bytes])
    return path


def test_gz_lut_reads_and_truncated_gz_is_a_format_error(tmp_path, device):
    path = _gz(tmp_path, device)
    assert load_flat(path) == device and open_lut(path).flat() == device
    size = path.stat().st_size
    for cut in (size // 2, 12):  # truncated (EOFError inside gzip), then cut inside the header
        _gz(tmp_path, device, cut)
        for reader in (load_flat, open_lut):
            with pytest.raises(LutFormatError, match="phone.json.gz.*(truncated|corrupt)"):
                reader(path)
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(LutFormatError, match="phone.json.gz"):
        load_flat(path)


@pytest.mark.parametrize("content, msg", [
    ({"nope_1": 1.0}, "bad block key 'nope_1'"),
    ({"firstconv_128_3_16_2_3": 0}, "firstconv_128_3_16_2_3 has latency 0"),
    ({"firstconv_128_3_16_2_3": float("nan")}, "firstconv_128_3_16_2_3 has latency nan"),
    ({"firstconv_128_3_16_2_3": "0.2"}, "firstconv_128_3_16_2_3 has latency '0.2'"),
    ({"firstconv_128_3_16_2_3": True}, "has latency True"),
    ({"firstconv_0128_3_16_2_3": 0.2}, "not canonical"),
    ([0.2], "JSON object"),
    ({}, "JSON object"),
])
def test_bad_flat_luts_name_file_and_key(tmp_path, content, msg):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    for reader in (load_flat, open_lut):
        with pytest.raises(LutFormatError, match="bad.json") as e:
            reader(path)
        assert msg in str(e.value)
    path.write_text("{not json")
    with pytest.raises(LutFormatError, match="bad.json is not JSON"):
        open_lut(path)


def test_project_lut_checks_format_version_space_and_entries(tmp_path, space, blocks, device):
    lut = Lut("phone", "cpu", space.name)
    for b in blocks[:5]:
        lut.set(b.key, device[b.key], "measured")
    path = tmp_path / "lut.json"
    save_lut(lut, path)
    good = json.loads(path.read_text())
    for change, msg in [({"format_version": 2}, "format version 2"),
                        ({"space": "otherspace"}, "LUT of space 'otherspace'"), ({"device": None}, "'device'"),
                        ({"entries": {blocks[0].key: {"latency_ms": 1.0, "source": "guessed"}}}, blocks[0].key),
                        ({"entries": {blocks[0].key: {"latency_ms": -1.0, "source": "measured"}}}, "has latency -1.0")]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(LutFormatError, match="lut.json") as e:
            open_lut(path, space)
        assert msg in str(e.value)


def test_lutfill_and_import_lut_report_a_truncated_gz_in_one_line(tmp_path, capsys, device):
    from profiler.import_lut import main as import_main

    path = _gz(tmp_path, device, 100)
    assert lutfill_main(["--lut", str(path), "--budget", "5", "--seed", "0", "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "phone.json.gz" in err and len(err.strip().splitlines()) == 1
    assert import_main([str(path), "--device", "x", "--store", str(tmp_path / "m.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "phone.json.gz" in err and len(err.strip().splitlines()) == 1


def test_missing_lut_key_names_the_key(space, blocks, device):
    lut = dict(device)
    gone = [b.key for b in blocks if b.type == "transattn"][:2]
    for k in gone:
        del lut[k]
    pred = SubnetPredictor(lut, space)
    with pytest.raises(MissingKeyError) as e:
        pred.predict([space.max_subnet()] + [space.sample(random.Random(i)) for i in range(2000)])
    assert isinstance(e.value, LutFormatError) and set(e.value.keys) == set(gone)
    assert gone[0] in str(e.value) and f"{len(gone)} block key(s)" in str(e.value)
    covered = [s for s in (space.sample(random.Random(i)) for i in range(200))
               if not {b.key for b in space.blocks_of(s)} & set(gone)]
    np.testing.assert_allclose(pred.predict(covered), predict_subnets(device, covered, space))


def test_composition_state_is_versioned_and_checked():
    comp = Composition.from_probes({(1, 8): 0.3, (1, 32): 1.2, (1, 64): 4.0, (4, 8): 0.4, (4, 32): 1.6, (4, 64): 5.0},
                                   {1: 0.01, 4: 0.02})
    state = comp.get_state()
    assert state["format"] == "mobilevit-nas/composition" and state["format_version"] == 7
    assert state["own_footprint"] is False and Composition.from_state(json.loads(json.dumps(state))) == comp
    assert state["multi_row_weight"] == 1.0  # every probed row in full, as probed (fit 0 charges half: probes_only)
    half = comp.probes_only()
    assert half.multi_row_weight == 0.5 and Composition.from_state(json.loads(json.dumps(half.get_state()))) == half
    own = dataclasses.replace(comp, own_footprint=True)
    assert Composition.from_state(json.loads(json.dumps(own.get_state()))) == own
    typed = dataclasses.replace(comp, type_scales=(("conv", 1.2), ("transattn", 0.9)), fitted_networks=3)
    assert Composition.from_state(json.loads(json.dumps(typed.get_state()))) == typed
    old = {k: v for k, v in state.items() if k not in ("own_footprint", "multi_row_weight")}  # read as made then
    v6 = {**old, "own_footprint": True, "format_version": 6}
    assert Composition.from_state(v6) == own
    v5 = {**old, "format_version": 5}
    assert Composition.from_state(v5) == dataclasses.replace(comp, own_footprint=False)
    v4 = {k: v for k, v in old.items() if k != "type_scales"} | {"format_version": 4}  # before per-type scales
    assert Composition.from_state(v4) == dataclasses.replace(comp, own_footprint=False)
    v1 = {"format": "mobilevit-nas/composition", "format_version": 1, "ms_per_weight_mb": 0.036, "scale": 1.0}
    v3 = {**state, "format_version": 3, "curve_ms": [0.3, 1.2, 4.0]}  # one curve for all rows: made another way
    for bad, msg in [(v1, "version 1 cannot be read.*made another way"), (v3, "version 3 cannot be read"),
                     ({**state, "format": "x"}, "'x'"), ({**state, "tokens": [4, 1]}, "must increase"),
                     ({**state, "scale": -1.0}, "non-positive"), ({**state, "extra": 1.0}, "malformed"),
                     ({**state, "type_scales": {"conv": 0.0}}, "non-positive"),
                     (old, "malformed"), ({**state, "own_footprint": "yes"}, "not true or false"),
                     ({**state, "own_footprint": True, "alone_mb": 8.0}, "must be smaller than the smallest probe"),
                     ({**state, "curve_mb": [8, 64, 32]}, "must increase"),
                     ({**state, "curve_ms": [[1.0]]}, "positive"), ({**state, "alone_ms": [0.01]}, "positive"),
                     ({**state, "curve_ms": [[0.3, 1.2, -4.0], [0.4, 1.6, 5.0]]}, "positive")]:
        with pytest.raises(LutFormatError, match=msg):
            Composition.from_state(bad)
    with pytest.raises(ValueError, match="not a usable grid"):
        Composition.from_probes({(1, 8): 0.0}, {1: 0.01})
    with pytest.raises(ValueError, match="missing"):  # a row count without its one-layer reference, a hole
        Composition.from_probes({(1, 8): 0.3, (4, 8): 0.4, (4, 32): 1.6}, {1: 0.01})


def test_lut_made_before_entries_composed_is_refused(space):
    from pathlib import Path

    lut = open_lut(Path(__file__).resolve().parent / "data" / "old_lut_with_correction.json", space)
    with pytest.raises(LutFormatError, match="before block entries composed"):
        SubnetPredictor(lut, space)
    assert SubnetPredictor(lut, space, plain=True).predict([space.subnet("T1")])[0] > 0
    assert Composition.of_lut(open_lut("pixel4", space)) is None  # published: plain sums, said so by the search


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_training_latencies_are_checked_in_one_place(bad):
    from predictor.features import check_latencies_ms

    assert check_latencies_ms([1.0, 2.5]).tolist() == [1.0, 2.5]
    with pytest.raises(ValueError, match="k2: latency_ms"):
        check_latencies_ms([1.0, bad], names=["k1", "k2"])


def test_predict_cli_prints_one_json_line_per_subnet(tmp_path, capsys, space):
    import json

    from predictor.composition import META_KEY
    from predictor.lut_io import save_lut
    from predictor.predict import main as predict_main

    lut = open_lut("pixel4", space)
    sub_file = tmp_path / "s.json"
    sub_file.write_text(json.dumps({"subnet": space.subnet("S1").to_dict(space.stage_names)}))
    assert predict_main(["--lut", "pixel4", "--subnet", "T1", "--subnet", str(sub_file)]) == 0
    out = capsys.readouterr()
    plain = [json.loads(line) for line in out.out.splitlines()]
    assert plain[0]["subnet"] == "T1" and plain[1]["subnet"] == space.subnet("S1").to_dict(space.stage_names)
    assert plain[0]["latency_ms"] == pytest.approx(SubnetPredictor(lut, space).predict([space.subnet("T1")])[0])
    assert "no in-network composition" in out.err
    lut.meta[META_KEY] = Composition.from_probes({(1, 32): 1.0}, {1: 0.01}).get_state()
    save_lut(lut, tmp_path / "lut.json")
    assert predict_main(["--lut", str(tmp_path / "lut.json"), "--subnet", "T1"]) == 0
    composed = json.loads(capsys.readouterr().out)
    assert composed["latency_ms"] > plain[0]["latency_ms"]
    assert predict_main(["--lut", str(tmp_path / "lut.json"), "--subnet", "L9"]) == 2
    assert predict_main(["--lut", str(tmp_path / "nope.json"), "--subnet", "T1"]) == 2


def test_block_features_and_models_are_per_family(tmp_path):
    """EfficientFormerV2's blocks get their family's type columns and every config field they have; a model is
    fitted within one family, saved with it, and refuses the other family's blocks in one line."""
    from nas.costs import block_features
    from nas.registry import create_space
    from predictor.features import column_names, config_fields, family_of, feature_matrix

    eff = create_space("efficientformerv2").enumerate_blocks()
    assert family_of(eff) == "efficientformerv2"
    x = feature_matrix(eff)
    assert x.shape == (len(eff), len(column_names("efficientformerv2"))) and np.isfinite(x).all()
    assert (x[:, :6].sum(1) == 1).all()  # one type column each
    attn = next(b for b in eff if b.type == "effattn" and b.stride == 2)
    assert config_fields(attn)["stride"] == 2 and config_fields(attn)["expand"] == attn.expand
    rng = np.random.default_rng(0)
    picks = [eff[i] for i in rng.choice(len(eff), 60, replace=False)]
    y = [0.05 + block_features(b)["macs"] / 1e8 for b in picks]
    model = LatencyPredictor(n_estimators=20, seed=0, n_jobs=1).fit(picks, y)
    model.save(tmp_path / "m.json")
    loaded = LatencyPredictor.load(tmp_path / "m.json")
    np.testing.assert_allclose(loaded.predict(picks), model.predict(picks))
    with pytest.raises(ValueError, match="fitted on efficientformerv2 blocks"):
        loaded.predict(create_space("elasticvit").enumerate_blocks()[:3])
    with pytest.raises(ValueError, match="families"):
        feature_matrix([eff[0], create_space("elasticvit").enumerate_blocks()[0]])


def test_one_pick_of_a_type_is_its_typical_block():
    from predictor.sampler import _maximin

    pts = np.array([[0.0], [1.0], [2.0], [10.0]])
    share = np.array([1.0, 1.0, 1.0, 0.0])  # the far block carries no subnet latency: the centre is at 1
    assert {tuple(_maximin(pts, 1, np.random.default_rng(s), share)) for s in range(10)} == {(1,)}
    spread = {tuple(_maximin(pts, 2, np.random.default_rng(s), share)) for s in range(20)}
    assert len(spread) > 1 and all(3 in p for p in spread)  # more picks: farthest-point from a random start
