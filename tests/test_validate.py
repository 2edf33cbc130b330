"""predictor.validate end to end on this host: profile, fill, export whole subnets, measure, compare."""
from __future__ import annotations

import json
import random
import shutil
import sqlite3
import statistics
from pathlib import Path

import numpy as np
import pytest

from nas.costs import subnet_costs
from nas.registry import create_space
from nas.search import main as search_main
from predictor.composition import Composition
from predictor.lut_io import open_lut
from predictor.validate import (
    ValidateConfig,
    anchor_drift,
    draw_networks,
    error_split,
    more_passes,
    pass_noise,
    pick_anchors,
    spread_over_macs,
)
from predictor.validate import main as validate_main
from profiler.errors import ProfilerError
from profiler.run import main as run_main

REPO = Path(__file__).resolve().parents[1]
# Few timings and no re-measuring of a spread-out one: these tests check what is run and stored, not how well.
TIMING = ["--runs", "5", "--warmup", "1", "--max-spread", "100"]
FAST = [*TIMING, "--probe-mb", "2", "4", "--probe-tokens", "1", "4"]
PROFILED_BUDGET = 24  # blocks in the `profiled` fixture's store

def test_subnets_spread_over_macs_range():
    space = create_space("elasticvit")
    subs = spread_over_macs(space, 10, random.Random(0))
    macs = [subnet_costs(space, s)["macs"] for s in subs]
    assert len(set(subs)) == 10 and macs == sorted(macs)
    assert macs[-1] > 5 * macs[0]  # covers small to large networks


def test_fit_and_held_out_networks_are_disjoint_and_random():
    space = create_space("elasticvit")
    fitting, held = draw_networks(space, 10, 40, seed=0)
    assert len(fitting) == 10 and len(held) == 40 and not set(fitting) & set(held) and len(set(held)) == 40
    assert draw_networks(space, 10, 40, seed=0) == (fitting, held)  # seeded
    assert draw_networks(space, 0, 5, seed=0)[0] == []


def test_validate_refuses_without_measurements(tmp_path: Path, capsys):
    assert validate_main(["--serial", "local", "--store", str(tmp_path / "m.sqlite"), "--n", "2"]) == 2
    assert "profiler.run --serial local --budget" in capsys.readouterr().err


@pytest.mark.parametrize("flags, msg", [
    (["--probe-tokens", "4", "1"], "--probe-tokens 4 1: give increasing"),
    (["--probe-mb", "1", "8"], "--probe-mb 1 8: give increasing whole MB sizes >= 2"),
    (["--guard-tolerance", "0"], "--guard-tolerance must be between 0 and 1")])
def test_a_bad_probe_grid_or_guard_tolerance_is_a_one_line_error(tmp_path: Path, capsys, flags, msg):
    assert validate_main(["--serial", "local", "--store", str(tmp_path / "m.sqlite"), *flags]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 24 blocks measured by `profiler.run` on this host: each test validates on its own copy."""
    store = tmp_path_factory.mktemp("profiled") / "m.sqlite"
    assert run_main(["--serial", "local", "--budget", str(PROFILED_BUDGET), "--store", str(store), *FAST]) == 0
    with sqlite3.connect(store) as c:  # everything in the file itself (WAL mode), so that a copy of it is whole
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


@pytest.mark.slow
def test_validate_on_this_host(profiled: Path, tmp_path: Path, capsys):
    store = Path(shutil.copy(profiled, tmp_path / "m.sqlite"))
    out = tmp_path / "report.json"
    assert validate_main(["--serial", "local", "--store", str(store), "--fit", "2", "--n", "2", "--json", str(out),
                          "--noise-networks", "1", "--noise-repeats", "2", "--lut-out", str(tmp_path / "lut.json"),
                          "--anchors", "4", "--passes", "2", "--max-passes", "4", "--pass-noise-target", "0",
                          "--no-paired", "--guard-tolerance", "0.5", *FAST]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads(out.read_text())
    assert {"n", "acc10", "acc5", "mape", "rmse_ms", "fit", "composed_fit0", "block_sum"} <= set(report)
    assert report["n"] == 2 and report["fit"]["networks"] == 2 and line["n"] == 2 and 0 <= line["acc10"] <= 1
    held = {p["subnet"] for p in report["pairs"]}
    assert len(held) == 2 and not held & {p["subnet"] for p in report["fit_pairs"]}  # scored on unseen networks
    # every figure is a latency; whether the composed ones exceed the plain sum is noise here (2-4 MB probes sit in
    # cache, where a MB costs ~0 more in a chain; 5 runs each): the composition's arithmetic is tested in test_predictor
    assert all(p["measured_ms"] > 0 and p["predicted_ms"] > 0 and p["fit0_ms"] > 0 and p["plain_ms"] > 0
               for p in report["pairs"])
    probes = report["probes"]["probes"]  # each row count: its one-layer reference, then the sizes
    assert [(p["tokens"], p["weight_mb"]) for p in probes] == [(t, mb) for t in (1, 4) for mb in (1.0, 2.0, 4.0)]
    assert all(p["before_ms"] > 0 and p["after_ms"] > 0 for p in probes) and report["probes"]["shift"] >= 0
    assert report["fit"]["composition"]["tokens"] == [1, 4]
    assert report["noise_floor_reference"]["checks"] >= 2  # before and after the chunk
    assert Path(report["plot"]).stat().st_size > 10_000
    # one file carries the LUT and its composition; the search and predictor.predict read it
    lut = open_lut(tmp_path / "lut.json")
    assert len(lut.entries) == 3073
    assert Composition.of_lut(lut).get_state() == report["fit"]["composition"]
    assert search_main(["--lut", str(tmp_path / "lut.json"), "--latency-ms", "1000", "--generations", "1",
                        "--population", "4"]) == 0
    assert "composed block entries" in capsys.readouterr().out
    with sqlite3.connect(store) as c:
        assert c.execute("SELECT COUNT(*) FROM validations").fetchone()[0] == 1
        nets = {k: (ms, json.loads(info)) for k, ms, info in
                c.execute("SELECT key, latency_ms, info_json FROM measurements WHERE kind='network'")}
        passes = dict(c.execute("SELECT key, latency_ms FROM measurements WHERE kind='network-pass'").fetchall())
        # validate's probes: the timing after the networks replaced the one before (both are in the report)
        rows = c.execute("SELECT key, latency_ms FROM measurements WHERE kind='probe' ORDER BY key").fetchall()
        assert dict(rows) == {p["key"]: p["after_ms"] for p in probes}
        # the anchors: re-timed under their own kind, the stored blocks untouched; every entry rescaled by the drift
        anchors = dict(c.execute("SELECT key, latency_ms FROM measurements WHERE kind='anchor'").fetchall())
        blocks = dict(c.execute("SELECT key, latency_ms FROM measurements WHERE kind='block'").fetchall())
    # a target of 0 asks for more passes until --max-passes: every network timed in 2 + 2 passes; its network row is
    # its lower-median pass (the second fastest of four), all passes in info
    assert len(nets) == 4 and len(passes) == 16
    for key, (ms, info) in nets.items():
        every = [passes[f"{key}#pass{n}"] for n in range(4)]
        assert info["pass_ms"] == every and ms == sorted(every)[1] == every[info["median_pass"]]
    assert {p["subnet"]: p["measured_ms"] for p in report["pairs"]} == {k: nets[k][0] for k in held}
    noise = report["noise_floor_passes"]
    assert noise["networks"] == 2 and noise["passes"] == 4 and len(noise["pass_level"]) == 4
    assert noise["scored_cv"] == pytest.approx(noise["pass_cv"] / 2) and report["settings"]["passes"] == 2
    assert report["settings"]["max_passes"] == 4 and report["settings"]["pass_noise_target"] == 0
    assert report["settings"]["guard_tolerance"] == 0.5
    assert "error_split" in line and report["error_split"] is None  # 2 held-out networks: too few to split
    drift = report["anchors"]
    assert len(anchors) == drift["blocks"] == 4 and set(anchors) <= set(blocks) and len(blocks) == 24
    assert drift["p10"] <= drift["factor"] <= drift["p90"] and drift["shift"] >= 0
    assert lut.meta["anchor_drift"] == drift["factor"] and {"acc10", "mape"} <= set(report["composed_fit0_as_stored"])
    for key, ms in blocks.items():
        assert lut.entries[key].latency_ms == pytest.approx(ms * drift["factor"], rel=1e-9)


@pytest.mark.slow
def test_validate_paired_times_everything_against_the_reference_and_resumes(profiled: Path, tmp_path: Path, capsys):
    store = Path(shutil.copy(profiled, tmp_path / "m.sqlite"))
    out = tmp_path / "report.json"
    cmd = ["--serial", "local", "--store", str(store), "--fit", "2", "--n", "2", "--json", str(out), "--noise-networks",
           "1", "--noise-repeats", "2", "--anchors", "4", "--passes", "2", "--max-passes", "2",
           "--lut-out", str(tmp_path / "lut.json"), *FAST]  # 2 passes, none added: the resumed run below times none
    assert validate_main(cmd) == 0
    report = json.loads(out.read_text())
    paired = report["paired"]
    assert paired["reference"].endswith(".tflite") and report["settings"]["paired"]
    start, end = paired["timings_ms"]["start"], paired["timings_ms"]["end"]
    # the run's level: the reference's plain timings at both ends; the store's level: the first five of them
    assert len(start) == len(end) == 5 and paired["reference_ms"] == pytest.approx(statistics.median(start + end))
    assert paired["stored_level_ms"] == pytest.approx(statistics.median(start))
    assert open_lut(tmp_path / "lut.json").meta["paired"] == paired  # the LUT keeps the level it is on
    assert report["noise_floor_reference"] is None  # no guard: the pairing takes its place
    assert all(p["measured_ms"] > 0 for p in report["pairs"]) and report["anchors"]["blocks"] == 4

    def rows() -> dict[str, set[str]]:
        with sqlite3.connect(store) as c:
            got: dict[str, set[str]] = {}
            for runner, kind, key in c.execute("SELECT runner, kind, key FROM measurements"):
                got.setdefault(kind, set()).add(runner)
                got.setdefault(f"{kind} keys", set()).add(key)
            return got

    first = rows()
    runner = f"linux-python+ref:{paired['reference']}"
    assert first["block"] == {"linux-python"}  # the profiler's entries, read as stored
    for kind in ("network", "network-pass", "anchor", "probe", "reference-level"):
        assert first[kind] == {runner}, kind  # everything validate timed is filed as paired, never mixed with plain
    assert len(first["network-pass keys"]) == 8 and len(first["reference-level keys"]) == 1
    assert validate_main(cmd) == 0  # the same command again: the stored level and pass timings are reused
    again = json.loads(out.read_text())
    assert again["paired"]["stored_level_ms"] == paired["stored_level_ms"]
    assert rows()["network-pass keys"] == first["network-pass keys"]
    # ... and put on the level of the new run's own period
    rescale = again["paired"]["reference_ms"] / paired["reference_ms"]
    assert [p["measured_ms"] for p in again["pairs"]] == pytest.approx([rescale * p["measured_ms"]
                                                                        for p in report["pairs"]])
    capsys.readouterr()


@pytest.mark.slow
@pytest.mark.device
def test_validate_on_an_android_device_through_benchmark_model(loopback_device, tmp_path: Path, capsys):
    """The phone path end to end over adb: the tflite-benchmark runner with a benchmark_model binary."""
    store, serial = tmp_path / "m.sqlite", loopback_device.serial
    binary = ["--benchmark-binary", str(REPO / "device_scripts" / "litert_benchmark_model.py")]
    # the smallest probe grid that takes every step (each benchmark_model invocation over adb costs ~0.25 s)
    fast = [*TIMING, "--probe-mb", "2", "--probe-tokens", "1"]
    # the `profiled` fixture's budget and pick: the same blocks, already converted in a full test session
    assert run_main(["--serial", serial, "--budget", str(PROFILED_BUDGET), "--store", str(store), *binary,
                     *fast]) == 0
    out = tmp_path / "report.json"
    assert validate_main(["--serial", serial, "--store", str(store), "--fit", "0", "--n", "2", "--json", str(out),
                          "--noise-networks", "0", "--passes", "1", "--anchors", "2", *binary, *fast]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["run"]["runner"] == "tflite-benchmark" and report["n"] == 2
    assert all(p["measured_ms"] > 0 for p in report["pairs"])
    with sqlite3.connect(store) as c:
        runners = c.execute("SELECT DISTINCT runner FROM measurements WHERE kind='network'").fetchall()
        devices = c.execute("SELECT COUNT(*) FROM devices").fetchone()[0]
    # paired by default: whole benchmark_model invocations alternate with the reference's, filed apart from plain
    assert runners == [(f"tflite-benchmark+ref:{report['paired']['reference']}",)] and devices == 1


def test_anchors_spread_over_types_and_drift_is_their_median_ratio():
    blocks = create_space("elasticvit").enumerate_blocks()
    measured = dict.fromkeys([b.key for b in blocks if b.type == "conv"][:3]
                             + [b.key for b in blocks if b.type == "transffn"][:2], 1.0)
    picks = pick_anchors(measured, 4, seed=0)
    assert len({p.key for p in picks}) == 4 and {p.type for p in picks} == {"conv", "transffn"}
    assert pick_anchors(measured, 4, seed=0) == picks and len(pick_anchors(measured, 9, seed=0)) == 5
    stored = {"a": 1.0, "b": 2.0, "c": 4.0}
    drift = anchor_drift(stored, {"a": 1.1, "b": 2.0, "c": 4.8}, {"a": 1.1, "b": 2.4, "c": 4.8})
    assert drift["factor"] == pytest.approx(1.1) and drift["blocks"] == 3  # ratios 1.1, 1.1, 1.2
    assert drift["shift"] == pytest.approx(0.0)  # median of 0, 0.2, 0
    with pytest.raises(ProfilerError, match="anchor"):
        anchor_drift(stored, {"a": 1.0}, {"b": 2.0})


def test_network_timings_rescale_every_timing_and_the_anchors_drift():
    from nas.probes import weight_stream_grid
    from predictor.validate import NetworkTimings

    probe = weight_stream_grid((2,), (1,))[0]
    drift = {"blocks": 3, "factor": 1.1, "p10": 1.0, "p90": 1.2, "shift": 0.03}
    timed = NetworkTimings({"a": 2.0}, {probe: 1.0}, {probe: 1.5}, drift, None, {"a": {0: 2.0, 1: 2.2}})
    got = timed.rescaled(0.5)
    assert got.truth_ms == {"a": 1.0} and got.probes_before == {probe: 0.5} and got.probes_after == {probe: 0.75}
    assert got.held_passes_ms == {"a": {0: 1.0, 1: 1.1}}
    assert got.drift == pytest.approx({"blocks": 3, "factor": 0.55, "p10": 0.5, "p90": 0.6, "shift": 0.03})
    assert timed.truth_ms == {"a": 2.0}  # a new one; the run's own timings stay as they were


def test_pass_noise_separates_one_timing_s_noise_from_the_period_s_level():
    # network a: passes 10, 12, 11; network b: 20, 23, 20 -> pass 1 ran slower for both (a shared level)
    rep = pass_noise({"a": {0: 10.0, 1: 12.0, 2: 11.0}, "b": {0: 20.0, 1: 23.0, 2: 20.0}, "c": {0: 5.0}})
    assert rep["networks"] == 2 and rep["passes"] == 3  # a network with one pass says nothing about noise
    cv = (statistics.pstdev([10.0, 12.0, 11.0]) / 11.0 + statistics.pstdev([20.0, 23.0, 20.0]) / 21.0) / 2
    assert rep["pass_cv"] == pytest.approx(cv) and rep["scored_cv"] == pytest.approx(cv / 3 ** 0.5)
    # per pass, the median of pass / the network's mean pass - 1 (of two networks: their mean)
    assert rep["pass_level"] == pytest.approx([(10 / 11 + 20 / 21) / 2 - 1, (12 / 11 + 23 / 21) / 2 - 1,
                                               (11 / 11 + 20 / 21) / 2 - 1])
    assert pass_noise({"a": {0: 1.0}}) is None


def test_more_passes_while_the_scored_cv_is_above_the_target_and_two_more_fit():
    noisy = {"a": {0: 10.0, 1: 12.0, 2: 11.0}, "b": {0: 20.0, 1: 23.0, 2: 20.0}}  # scored CV 4.3%
    quiet = {"a": {0: 10.0, 1: 10.1, 2: 10.0}, "b": {0: 20.0, 1: 20.1, 2: 20.0}}  # 0.2%
    assert pass_noise(noisy)["scored_cv"] > 0.04 and pass_noise(quiet)["scored_cv"] < 0.003
    assert more_passes(noisy, 3, 7, 0.01) and more_passes(noisy, 5, 7, 0.01)
    assert not more_passes(noisy, 6, 7, 0.01)  # two more would exceed the most passes allowed
    assert not more_passes(quiet, 3, 7, 0.01) and not more_passes(noisy, 3, 7, 0.05)
    assert not more_passes({"a": {0: 1.0}}, 1, 7, 0.0)  # one pass: no spread to judge by, none added


def test_validate_config_checks_the_passes():
    assert ValidateConfig(None).passes_at_most == 7 and ValidateConfig(None, passes=9).passes_at_most == 9
    assert ValidateConfig(None, passes=3, max_passes=3).passes_at_most == 3
    with pytest.raises(ValueError, match="--max-passes"):
        ValidateConfig(None, passes=5, max_passes=3)
    with pytest.raises(ValueError, match="--pass-noise-target"):
        ValidateConfig(None, pass_noise_target=-0.01)


def test_error_split_recovers_the_predictor_s_error_and_the_timing_noise():
    # 400 networks whose prediction is off by 4% (SD) and whose every timing adds 3% of noise of its own
    rng = np.random.default_rng(0)
    truth = rng.uniform(5, 50, 400)
    pred = {f"n{i}": t * np.exp(rng.normal(-0.05, 0.04)) for i, t in enumerate(truth)}  # 5% low, on average
    passes = {f"n{i}": {p: t * np.exp(rng.normal(0, 0.03)) for p in range(3)} for i, t in enumerate(truth)}
    rep = error_split(pred, passes)
    assert rep["networks"] == 400 and rep["passes"] == 3 and rep["bias"] == pytest.approx(0.05, abs=0.006)
    assert rep["predictor_sd"] == pytest.approx(0.04, abs=0.004)
    assert rep["timing_noise_sd"] == pytest.approx(0.03, abs=0.003)
    assert rep["one_pass_sd"] == pytest.approx(0.05, abs=0.004)
    # a perfect predictor: all that is left is the noise
    exact = error_split({k: float(t) for k, t in zip(pred, truth)}, passes)
    assert exact["predictor_sd"] < 0.005 and exact["timing_noise_sd"] == pytest.approx(0.03, abs=0.003)
    assert abs(exact["bias"]) < 0.003
    assert error_split(pred, {k: {0: v[0]} for k, v in passes.items()}) is None  # one pass: nothing to split
    assert error_split(pred, {}) is None


def test_guard_waits_out_a_disturbed_period(tmp_path: Path):
    from profiler.networks import Guard

    timings = iter([10.0, 10.2, 14.0, 13.0, 10.1])  # quiet, quiet, disturbed twice, quiet again
    guard = Guard(tmp_path / "ref.tflite", tolerance=0.05, poll_s=0.0)
    guard._time = lambda sess: next(timings)  # the device's answers, in order
    for _ in range(3):
        guard.wait_until_quiet(None)
    rep = guard.report()
    assert guard.timings_ms == [10.0, 10.2, 10.1] and rep["disturbed"] == 2 and rep["checks"] == 3
    assert rep["cv"] < 0.01


def test_guard_gives_up_on_a_device_that_stays_disturbed(tmp_path: Path):
    from profiler.networks import Guard

    # quiet; off twice (a wait each, then measured anyway); quiet again resets; then off three waits in a row
    timings = iter([10.0, 15.0, 15.0, 10.1, 16.0, 16.0, 16.0])
    guard = Guard(tmp_path / "ref.tflite", tolerance=0.05, max_wait_s=0.0, poll_s=0.0, give_up_after=3)
    guard._time = lambda sess: next(timings)
    for _ in range(6):
        guard.wait_until_quiet(None)
    assert guard.timeouts_in_row == 2
    with pytest.raises(ProfilerError, match=r"^the device stayed disturbed: the reference model ran \+60% off its "
                                            r"first timing after 3 waits of 0 s in a row; .* \(it resumes\)$"):
        guard.wait_until_quiet(None)


@pytest.mark.slow
def test_efficientformerv2_profiles_validates_and_predicts_on_this_host(tmp_path: Path, capsys):
    """The second space through the same commands: profiler.run, predictor.validate (held-out figures) and
    predictor.predict on the LUT validate wrote (its space read from the file)."""
    from predictor.predict import main as predict_main

    store = tmp_path / "m.sqlite"
    assert run_main(["--serial", "local", "--space", "efficientformerv2", "--budget", "20", "--store", str(store),
                     *FAST]) == 0
    out, lut = tmp_path / "report.json", tmp_path / "lut.json"
    assert validate_main(["--serial", "local", "--space", "efficientformerv2", "--store", str(store), "--fit", "0",
                          "--n", "2", "--json", str(out), "--noise-networks", "0", "--lut-out", str(lut),
                          "--anchors", "2", "--passes", "1", *FAST]) == 0
    report = json.loads(out.read_text())
    assert report["space"] == "efficientformerv2" and report["n"] == 2 and report["fit"]["networks"] == 0
    assert all(p["measured_ms"] > 0 and p["predicted_ms"] > 0 for p in report["pairs"])
    space = create_space("efficientformerv2")
    assert len(open_lut(lut, space).entries) == len(space.enumerate_blocks())
    capsys.readouterr()
    assert predict_main(["--lut", str(lut), "--subnet", "S0", "--subnet", "L"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["subnet"] for r in rows] == ["S0", "L"] and 0 < rows[0]["latency_ms"] < rows[1]["latency_ms"]
