"""Transfer from prior LUTs with few target measurements, on real data: the shipped phone LUTs and this
host's measured blocks (an x86 CPU, a device no phone prior fits).

Properties, not accuracy figures (those are benchmarks/bench_lutfill.py's): a prior that fits is kept
and helps, one that does not is dropped so the fill equals the prior-free one, several priors combine,
the blend saves and loads, and the command line still takes a single `--prior`.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from predictor import fewshot
from predictor.analytical import AnalyticalModel
from predictor.fewshot import FewShotBlend, fit_free, misfit
from predictor.lut import fill_lut
from predictor.lut_io import load_flat
from predictor.lutfill import fill, subnet_weights
from predictor.lutfill import main as lutfill_main
from predictor.sampler import choose
from predictor.transfer import fit_prior_model
from predictor.xgb import LatencyPredictor, PredictorFormatError

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 30


@pytest.fixture(scope="module")
def blocks(space):
    return space.enumerate_blocks()


@pytest.fixture(scope="module")
def phones(space) -> dict[str, dict[str, float]]:
    return {name: load_flat(name, space) for name in ("pixel4", "xiaomi11")}


@pytest.fixture(scope="module")
def host(blocks) -> dict[str, float]:
    """This host's measured blocks (TFLite CPU, 1 thread): a partial LUT of a very different device."""
    measured = json.loads((ROOT / "tests" / "data" / "host_blocks_tflite_cpu1.json").read_text())["latency_ms"]
    reachable = {b.key for b in blocks}
    return {k: v for k, v in measured.items() if k in reachable}


@pytest.fixture(scope="module")
def prior_models(phones) -> dict[str, AnalyticalModel]:
    # A small subsample keeps the fixture fast; the fill uses 800 entries.
    return {name: fit_prior_model(lut, max_entries=200, seed=0) for name, lut in phones.items()}


@pytest.fixture(scope="module")
def weights(space, blocks) -> dict[str, float]:
    """How often each block occurs in subnets (what lutfill weighs errors by)."""
    return subnet_weights(space, blocks, random.Random(0), n=1000)


def _measure_from(lut, blocks, prior, weights, prior_model=None, seed: int = 0, budget: int = BUDGET):
    """(cfgs, ms) of `budget` blocks the sampler picks among the keys `lut` has (`prior_model`: the prior's
    analytical model(s), given so the sampler does not fit them again; None: it fits them)."""
    cands = [b for b in blocks if b.key in lut]
    got = choose(cands, budget, lambda batch: [lut[b.key] for b in batch], np.random.default_rng(seed), prior,
                 weights=weights, prior_model=prior_model)
    cfgs = [b for b in cands if b.key in got]
    return cfgs, np.array([got[b.key] for b in cfgs])


def test_misfit_is_small_between_phones_and_large_from_a_phone_to_the_host(blocks, phones, host, prior_models,
                                                                          weights):
    cfgs, y = _measure_from(phones["pixel4"], blocks, phones["xiaomi11"], weights, prior_models["xiaomi11"])
    phone_to_phone = misfit(cfgs, y, phones["xiaomi11"], prior_models["xiaomi11"], weights)
    cfgs, y = _measure_from(host, blocks, phones["xiaomi11"], weights, prior_models["xiaomi11"])
    phone_to_host = misfit(cfgs, y, phones["xiaomi11"], prior_models["xiaomi11"], weights)
    assert phone_to_phone < 0.1 < 0.15 < phone_to_host


@pytest.mark.slow
def test_a_fitting_prior_is_kept_and_beats_no_prior(blocks, phones, prior_models, weights):
    """10 measurements (at 30 the prior-free model is about as good on this pair and may win the test)."""
    target = phones["pixel4"]
    cfgs, y = _measure_from(target, blocks, phones["xiaomi11"], weights, prior_models["xiaomi11"], budget=10)
    rest = [b for b in blocks if b.key not in {c.key for c in cfgs}]
    truth = np.array([target[b.key] for b in rest])
    blend = FewShotBlend([phones["xiaomi11"]], [prior_models["xiaomi11"]], everything=blocks, weights=weights)
    blend.fit(cfgs, y)
    assert blend.names_ == ["prior0"]
    free = fit_free(cfgs, y, weights)
    share = np.array([weights.get(b.key, 0.0) for b in rest]) * truth  # what subnet sums weigh a block by

    def error(pred: np.ndarray) -> float:
        return float(np.sum(share * np.abs(np.log(pred / truth))) / share.sum())
    assert error(blend.predict(rest)) < 0.8 * error(free.predict(rest))


@pytest.mark.slow
def test_a_prior_that_does_not_fit_is_dropped_and_changes_nothing(blocks, phones, host, prior_models, weights):
    """Target: the host's measured blocks; priors: the phones. Scored on the host's other measured blocks."""
    cfgs, y = _measure_from(host, blocks, phones["pixel4"], weights, prior_models["pixel4"])
    priors = [phones["pixel4"], phones["xiaomi11"]]
    blend = FewShotBlend(priors, [prior_models["pixel4"], prior_models["xiaomi11"]], everything=blocks,
                         weights=weights).fit(cfgs, y)
    assert blend.names_ == ["analytical"]
    assert min(blend.misfit_) > max(blend.free_error_)
    rest = [b for b in blocks if b.key in host and b.key not in {c.key for c in cfgs}]
    np.testing.assert_allclose(blend.predict(rest), fit_free(cfgs, y, weights).predict(rest), rtol=1e-9)


@pytest.mark.slow
def test_a_prior_the_target_s_own_points_reject_is_dropped_at_10_measurements(space, blocks, phones, host):
    """This host's full LUT as the only prior of a 10-measurement fill of Pixel 4 (seed 0, a case the rule was
    chosen on): the simulated bar lets it through, the target's own cross-validated evidence drops it (the
    prior-free model does better on the same points, and the transfer is off by more than VETO_MISFIT), so the
    fill is exactly the one without a prior."""
    target = phones["pixel4"]
    train = [b for b in blocks if b.key in host]
    host = fill_lut("host", "cpu", space, blocks, {b.key: host[b.key] for b in train},
                    LatencyPredictor(seed=0).fit(train, [host[b.key] for b in train])).flat()
    with_host = fill(space, target, 10, 0, prior=[host], prior_models=[fit_prior_model(host, seed=0)])
    blend = with_host.predictor.base_
    assert blend.misfit_[0] < np.nanmean(blend.free_error_)  # the simulated bar alone would keep it
    assert blend.misfit_[0] > max(blend.free_cv_, fewshot.VETO_MISFIT) and blend.names_ == ["analytical"]
    alone = fill(space, target, 10, 0)
    assert with_host.train_keys == alone.train_keys
    a, b = with_host.lut.flat(), alone.lut.flat()
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-12) for k in a)  # float rounding only


@pytest.mark.slow
def test_several_priors_keep_the_fitting_one(tmp_path, blocks, phones, prior_models, weights):
    """The other phone plus a prior made to misfit (the target's own LUT with 40% noise per key)."""
    target = phones["pixel4"]
    noisy = {k: v * float(np.exp(z)) for (k, v), z in
             zip(target.items(), np.random.default_rng(1).normal(0.0, 0.4, len(target)))}
    cfgs, y = _measure_from(target, blocks, [phones["xiaomi11"], noisy], weights)
    model = LatencyPredictor(prior=[phones["xiaomi11"], noisy], prior_model=[prior_models["xiaomi11"], None],
                             block_weights=weights)
    model.fit(cfgs, y)
    assert model.base_.names_ == ["prior0"]
    path = tmp_path / "model.json"
    model.save(path)
    back = LatencyPredictor.load(path)
    np.testing.assert_allclose(back.predict(blocks[:50]), model.predict(blocks[:50]), rtol=1e-9)


def test_version_1_predictor_files_still_load_and_unknown_kinds_are_refused(tmp_path, blocks, phones):
    cfgs = blocks[::100]
    model = LatencyPredictor().fit(cfgs, [phones["pixel4"][b.key] for b in cfgs])
    path = tmp_path / "v1.json"
    model.save(path)
    doc = json.loads(path.read_text())
    doc["format_version"] = 1
    path.write_text(json.dumps(doc))
    np.testing.assert_allclose(LatencyPredictor.load(path).predict(cfgs), model.predict(cfgs))
    doc["base"]["kind"] = "oracle"
    path.write_text(json.dumps(doc))
    with pytest.raises(PredictorFormatError, match="oracle"):
        LatencyPredictor.load(path)


@pytest.mark.slow
@pytest.mark.parametrize("priors", [["pixel4"], ["pixel4", "xiaomi11"]])
def test_lutfill_cli_takes_one_or_several_priors(tmp_path, capsys, priors):
    """The target's own LUT as a second prior fits exactly: it is kept with the larger weight."""
    out = tmp_path / "filled.json"
    args = ["--lut", "xiaomi11", "--budget", "10", "--seed", "0", "--out", str(out)]
    for p in priors:
        args += ["--prior", p]
    assert lutfill_main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"budget", "seed", "prior", "n_measured", "n_keys", "entry", "subnet"}
    assert report["prior"] is True and report["n_measured"] == 10 and report["n_keys"] == 3073
    assert len(json.loads(out.read_text())) == 3073
    if len(priors) == 2:  # the target itself among the priors: near exact
        assert report["subnet"]["acc5"] > 0.99
    else:  # a loose sanity bound; accuracy figures are benchmarks/bench_lutfill.py's
        assert report["subnet"]["acc10"] > 0.5


def test_analytical_sample_weights_are_checked(blocks, phones):
    cfgs = blocks[::300]
    y = [phones["pixel4"][b.key] for b in cfgs]
    with pytest.raises(ValueError, match="sample_weight"):
        AnalyticalModel().fit(cfgs, y, sample_weight=[1.0] * (len(cfgs) - 1))
    with pytest.raises(ValueError, match="sample_weight"):
        AnalyticalModel().fit(cfgs, y, sample_weight=[-1.0] * len(cfgs))


@pytest.mark.slow
def test_with_ten_measurements_several_priors_are_told_apart_across_types(space, blocks, phones, host, prior_models,
                                                                          weights):
    """10 measurements over six block types score almost nothing within a type; the host's LUT (x86) beside the
    other phone must still be dropped for a phone target, by how each predicts types it has not seen."""
    train = [b for b in blocks if b.key in host]
    host_full = dict(zip((b.key for b in blocks),
                         LatencyPredictor(seed=0).fit(train, [host[b.key] for b in train]).predict(blocks)))
    priors = [phones["xiaomi11"], host_full]
    target = phones["pixel4"]
    cands = [b for b in blocks if b.key in target]
    got = choose(cands, 10, lambda batch: [target[b.key] for b in batch], np.random.default_rng(0), priors,
                 weights=weights)
    cfgs = [b for b in cands if b.key in got]
    blend = FewShotBlend(priors, [prior_models["xiaomi11"], None], everything=blocks, weights=weights)
    blend.fit(cfgs, np.array([got[b.key] for b in cfgs]))
    assert fewshot.scored_points(cfgs) < fewshot.MIN_SCORED
    assert blend.names_ == ["prior0"]
    assert blend.cross_misfit_[0] < blend.cross_misfit_[1] / fewshot.FewShotBlend().rival_ratio
