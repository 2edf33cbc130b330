"""predictor.validate end to end on this host: profile, fill, export whole subnets, measure, compare."""
from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from nas.costs import subnet_costs
from nas.registry import create_space
from nas.search import main as search_main
from predictor.correction import NetworkCorrection
from predictor.lut_io import open_lut
from predictor.validate import cross_validated_correction, spread_over_macs
from predictor.validate import main as validate_main
from profiler.run import main as run_main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--runs", "5", "--warmup", "1"]

def test_subnets_spread_over_macs_range():
    space = create_space("elasticvit")
    subs = spread_over_macs(space, 10, random.Random(0))
    macs = [subnet_costs(space, s)["macs"] for s in subs]
    assert len(set(subs)) == 10 and macs == sorted(macs)
    assert macs[-1] > 5 * macs[0]  # covers small to large networks


def test_cross_validated_correction_recovers_a_network_level_effect():
    rng = np.random.default_rng(0)
    blocks = create_space("elasticvit").enumerate_blocks()
    firsts = [b for b in blocks if b.type == "firstconv"]
    catalogue = [b for b in blocks if b.type in ("conv", "transattn", "transffn")]
    nets = [[(firsts[int(rng.integers(len(firsts)))], 0.2)]
            + [(catalogue[i], float(rng.uniform(0.1, 2)))
               for i in rng.integers(0, len(catalogue), rng.integers(10, 40))]
            for _ in range(40)]
    truth = np.array([sum((1.2 if b.type == "conv" else 1.0) * ms + 0.03 for b, ms in n) + 1.0 for n in nets])
    pred = cross_validated_correction(nets, truth, 5, rng)
    plain = np.array([sum(ms for _, ms in n) for n in nets])
    err, plain_err = np.abs(pred / truth - 1), np.abs(plain / truth - 1)
    assert err.mean() < plain_err.mean() / 4  # the ridge towards the plain sum costs a little accuracy


def test_validate_refuses_without_measurements(tmp_path: Path, capsys):
    assert validate_main(["--serial", "local", "--store", str(tmp_path / "m.sqlite"), "--n", "2"]) == 2
    assert "profiler.run --serial local --budget" in capsys.readouterr().err


@pytest.mark.slow
def test_validate_on_this_host(tmp_path: Path, capsys):
    store = tmp_path / "m.sqlite"
    assert run_main(["--serial", "local", "--budget", "24", "--store", str(store), "--runs", "5", "--warmup", "1"]) == 0
    out = tmp_path / "report.json"
    assert validate_main(["--serial", "local", "--store", str(store), "--n", "2", "--runs", "5", "--json", str(out),
                          "--noise-networks", "1", "--noise-repeats", "2",
                          "--lut-out", str(tmp_path / "lut.json")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads(out.read_text())
    assert {"n", "acc10", "acc5", "mape", "rmse_ms"} <= set(report) and report["n"] == 2
    assert line["n"] == 2 and 0 <= line["acc10"] <= 1
    assert all(p["measured_ms"] > 0 and p["predicted_ms"] > 0 for p in report["pairs"])
    assert Path(report["plot"]).stat().st_size > 10_000
    assert report["noise_floor"]["repeats"] == 2
    assert len(json.loads((tmp_path / "lut.json").read_text())) == 3073
    # the full LUT beside it carries the fitted correction, and the search reads both
    full = open_lut(tmp_path / "lut.sources.json")
    assert NetworkCorrection.of_lut(full).get_state() == report["correction"]
    assert search_main(["--lut", str(tmp_path / "lut.sources.json"), "--latency-ms", "1000", "--generations", "1",
                        "--population", "4"]) == 0
    assert "block sum + network correction" in capsys.readouterr().out
    with sqlite3.connect(store) as c:
        assert c.execute("SELECT COUNT(*) FROM validations").fetchone()[0] == 1
        assert c.execute("SELECT COUNT(*) FROM measurements WHERE kind='network'").fetchone()[0] == 2


@pytest.mark.slow
@pytest.mark.device
def test_validate_on_an_android_device_through_benchmark_model(loopback_device, tmp_path: Path, capsys):
    """The phone path end to end over adb: the tflite-benchmark runner with a benchmark_model binary."""
    store, serial = tmp_path / "m.sqlite", loopback_device.serial
    binary = ["--benchmark-binary", str(REPO / "device_scripts" / "litert_benchmark_model.py")]
    assert run_main(["--serial", serial, "--budget", "20", "--pick", "random", "--store", str(store), *binary,
                     *FAST]) == 0
    out = tmp_path / "report.json"
    assert validate_main(["--serial", serial, "--store", str(store), "--n", "2", "--json", str(out),
                          "--noise-networks", "0", *binary, *FAST]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["run"]["runner"] == "tflite-benchmark" and report["n"] == 2
    assert all(p["measured_ms"] > 0 for p in report["pairs"])
    with sqlite3.connect(store) as c:
        runners = c.execute("SELECT DISTINCT runner FROM measurements WHERE kind='network'").fetchall()
        devices = c.execute("SELECT COUNT(*) FROM devices").fetchone()[0]
    assert runners == [("tflite-benchmark",)] and devices == 1
