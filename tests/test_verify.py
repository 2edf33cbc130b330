"""predictor.verify: subnets exported with a checkpoint's weights, timed on a device, stored beside their prediction."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.checkpoint import CHECKPOINT_FORMAT, CheckpointError
from nas.export import load_supernet_weights
from nas.subnet import Subnet
from nas.supernet import Supernet, build_subnet
from predictor.verify import VerifySettings, export_candidate, verify, with_format
from predictor.verify import main as verify_main
from profiler.networks import subnet_key
from profiler.paired import LEVEL_KIND, reference_model
from profiler.settings import MeasureSettings, ProtocolSettings, RunSettings
from tests.runtimes import run_tflite

REPO = Path(__file__).resolve().parents[1]
FAST_RUN = {"warmup_runs": 1, "num_runs": 5}
# Largest |TFLite - PyTorch| over the largest |PyTorch| logit, on a batch of images: float32 kernels that sum in
# another order (XNNPACK, folded batch norm) differ by rounding only.
PARITY_TOL = 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, space) -> Path:
    """A checkpoint whose weights are not any seed's: every tensor perturbed, batch-norm statistics included."""
    net = Supernet(space, seed=5)
    g = torch.Generator().manual_seed(11)
    state = {}
    for name, t in net.state_dict().items():
        if not t.is_floating_point():
            state[name] = t
        elif name.endswith("running_var"):
            state[name] = t * torch.exp(0.3 * torch.randn(t.shape, generator=g))
        else:
            scale = float(t.std()) if t.numel() > 1 and float(t.std()) > 0 else 0.1
            state[name] = t + 0.2 * scale * torch.randn(t.shape, generator=g)
    path = tmp_path_factory.mktemp("ckpt") / "trained.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "step": 7, "supernet": state}, path)
    return path


def small_subnets(space) -> tuple[Subnet, Subnet]:
    """The min subnet and one a little deeper, both at the smallest resolution."""
    low = space.min_subnet()
    stages = list(low.stages)
    stages[1] = replace(stages[1], depth=stages[1].depth + 1)
    return low, replace(low, stages=tuple(stages))


def run_tflite_batch(path: Path, x: np.ndarray) -> np.ndarray:
    """The model takes one image: the batch goes through it one by one."""
    return np.concatenate([run_tflite(path, image[None]) for image in x])


@pytest.mark.slow
def test_exported_tflite_with_checkpoint_weights_matches_pytorch(space, trained: Path):
    net = load_supernet_weights(space, trained)
    sub = space.min_subnet()
    path = export_candidate(space, sub, "tflite", net)
    net.set_active_subnet(sub)
    r = sub.resolution
    x = torch.randn(4, 3, r, r, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = net.get_active_subnet().eval()(x).numpy()
        random_weights = build_subnet(sub, space, seed=5)(x).numpy()
    got = run_tflite_batch(path, x.permute(0, 2, 3, 1).numpy())  # NHWC in
    assert got.shape == want.shape == (4, 1000)
    scale = np.abs(want).max()
    assert np.abs(got - want).max() / scale < PARITY_TOL
    assert np.abs(random_weights - want).max() / scale > 0.1  # the checkpoint's weights, not a seed's


@pytest.mark.slow
@pytest.mark.device
def test_verify_over_the_loopback_device(space, trained: Path, loopback_device, tmp_path: Path):
    """The phone path through the real adb server: tflite-benchmark runner, trained weights, a real SQLite store;
    a subnet that cannot be converted is reported in its row and the others are timed."""
    low, deeper = small_subnets(space)
    broken = replace(low, stages=low.stages[:-1])  # a stage short: no such subnet in the space
    binary = REPO / "device_scripts" / "litert_benchmark_model.py"
    measure = MeasureSettings(RunSettings(runner="tflite-benchmark", **FAST_RUN),
                              ProtocolSettings(probe_mb=(2,)), binary)
    store = tmp_path / "m.sqlite"
    reference = reference_model(space, low, "tflite").name
    # the LUT's level (validate's run level): the timings are put on it from the store's level
    settings = VerifySettings(loopback_device.serial, measure, trained, store,
                              level={"reference": reference, "reference_ms": 10.0})
    lines: list[str] = []
    rows = verify(space, [("min", low, 1.5), ("broken", broken, 2.0), ("deeper", deeper, None)], settings,
                  echo=lines.append)
    assert [r["name"] for r in rows] == ["min", "broken", "deeper"]
    ok = [rows[0], rows[2]]
    for r in ok:
        assert r["error"] is None and r["measured_ms"] > 0 and r["model_format"] == "tflite"
        assert r["device"] == loopback_device.serial and "sha256:" in r["weights"]
    assert rows[0]["error_pct"] == pytest.approx(100 * (1.5 / rows[0]["measured_ms"] - 1))
    assert rows[2]["predicted_ms"] is None and rows[2]["error_pct"] is None
    assert rows[0]["subnet"] == low.to_dict(space.stage_names) and rows[0]["key"] == subnet_key(low)
    assert rows[1]["measured_ms"] is None and len(rows[1]["error"].splitlines()) == 1
    assert rows[1]["error"].startswith("could not convert to tflite: InvalidSubnet: ")
    assert len(lines) == 5 and lines[-1].startswith("2 of 3 measured") and "failed: could not convert" in lines[2]
    with sqlite3.connect(store) as c:
        stored = dict(c.execute("SELECT key, latency_ms FROM measurements WHERE kind='network'").fetchall())
        passes = dict(c.execute("SELECT key, latency_ms FROM measurements WHERE kind='network-pass'").fetchall())
        runners = c.execute("SELECT DISTINCT runner FROM measurements WHERE kind='network'").fetchall()
        info = json.loads(c.execute("SELECT info_json FROM measurements WHERE key=?", (subnet_key(low),)).fetchone()[0])
        failures = c.execute("SELECT kind, key FROM failures").fetchall()
        levels = c.execute("SELECT runner, key, latency_ms FROM measurements WHERE kind=?", (LEVEL_KIND,)).fetchall()
    # paired with validate's reference by default: filed apart from plain timings, on the store's level
    assert runners == [(f"tflite-benchmark+ref:{reference}",)]
    assert [row[:2] for row in levels] == [(f"tflite-benchmark+ref:{reference}", reference)]
    factor = 10.0 / levels[0][2]
    assert all(r["level_factor"] == pytest.approx(factor) for r in rows)  # shown on the LUT's level
    # the same rows validate stores for networks (on the store's level): a later validate or fit reads them
    assert stored == pytest.approx({subnet_key(low): rows[0]["measured_ms"] / factor,
                                    subnet_key(deeper): rows[2]["measured_ms"] / factor})
    assert info["subnet"] == rows[0]["subnet"] and info["weights"] == rows[0]["weights"]
    # each subnet timed in every pass (default 3); its row and network measurement are its median pass
    for r in ok:
        assert sorted(passes[f"{r['key']}#pass{n}"] for n in range(3)) == pytest.approx(
            sorted(ms / factor for ms in r["pass_ms"]))
        assert r["measured_ms"] == sorted(r["pass_ms"])[1]
    assert info["passes"] == 3
    assert info["pass_ms"][info["median_pass"]] == pytest.approx(rows[0]["measured_ms"] / factor)
    assert failures == [("network", subnet_key(broken))]


@pytest.mark.slow
def test_cli_times_onnx_on_this_host(trained: Path, tmp_path: Path, capsys):
    store, out = tmp_path / "m.sqlite", tmp_path / "v.json"
    code = verify_main(["--serial", "local", "--subnet", "min", "--lut", "pixel4", "--checkpoint", str(trained),
                        "--format", "onnx", "--store", str(store), "--json", str(out), "--warmup", "1", "--runs", "5",
                        "--no-paired", "--no-guard"])  # paired: the loopback test; the guard: test_validate
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["model_format"] == "onnx" and row["measured_ms"] > 0 and row["predicted_ms"] > 0
    assert report["settings"]["run"]["backend"] == "onnx" and report["summary"]["measured"] == 1
    assert "min" in text and "1 of 1 measured (onnx, local)" in text
    with sqlite3.connect(store) as c:
        assert c.execute("SELECT runner, backend FROM measurements WHERE kind='network'").fetchall() == [
            ("linux-python", "onnx")]  # --no-paired: timed alone, filed as plain
    assert report["settings"]["paired"] is False


def test_level_factor_puts_timings_on_the_luts_level(caplog):
    from predictor.verify import level_factor

    assert level_factor({"reference": "r.tflite", "reference_ms": 12.0}, "r.tflite", 10.0) == pytest.approx(1.2)
    assert level_factor(None, "r.tflite", 10.0) == 1.0  # a LUT without a paired level: the store's
    with caplog.at_level("WARNING"):
        assert level_factor({"reference": "other.tflite", "reference_ms": 12.0}, "r.tflite", 10.0) == 1.0
    assert "validated against other.tflite" in caplog.text


def test_format_picks_a_backend_that_runs_it():
    base = MeasureSettings()
    assert with_format(base, None) is base and with_format(base, "tflite") is base
    assert with_format(base, "onnx").run.backend == "onnx"
    gpu = MeasureSettings(RunSettings(backend="gpu"))
    with pytest.raises(ValueError, match="--format onnx does not run on --backend gpu"):
        with_format(gpu, "onnx")
    assert VerifySettings("local", with_format(base, "onnx")).model_format == "onnx"


def test_an_unreadable_checkpoint_stops_before_the_device(space, tmp_path: Path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    settings = VerifySettings("no-such-device", checkpoint=bad, store=tmp_path / "m.sqlite")
    with pytest.raises(CheckpointError, match=r"^checkpoint .*bad.pt is not readable as tensors"):
        verify(space, [("min", space.min_subnet(), 1.0)], settings)
    assert not (tmp_path / "m.sqlite").exists()
