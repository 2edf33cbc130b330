"""Runners build device shell commands in which every value is quoted (paths, masks, flag values)."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from profiler.runners.linux_python import runner_command
from profiler.runners.tflite_benchmark import TFLiteBenchmarkRunner, benchmark_command
from profiler.settings import RunSettings
from profiler.targets import LocalTarget

REPO = Path(__file__).resolve().parents[1]
HOSTILE = ["a b", "a;b", "x; touch PWNED", "$(touch PWNED)", "`touch PWNED`", "it's", "f0 | sh"]
SETTINGS = RunSettings(runner="tflite-benchmark", backend="cpu", threads=2, warmup_runs=1, num_runs=3)


def _fake_tool(folder: Path) -> Path:
    """An executable that prints each argument it got on its own line."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "tool"
    tool.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
    tool.chmod(0o755)
    return tool


@pytest.mark.parametrize("value", HOSTILE)
def test_benchmark_command_quotes_mask_and_paths(value: str) -> None:
    binary, model = f"/data/local/tmp/{value}/benchmark_model", f"/data/local/tmp/{value}.tflite"
    cmd = benchmark_command(binary, model, SETTINGS, mask=value)
    argv = shlex.split(cmd)
    assert argv[:4] == ["taskset", value, binary, f"--graph={model}"]
    assert "--num_threads=2" in argv and "--num_runs=3" in argv


@pytest.mark.parametrize("value", HOSTILE)
def test_linux_runner_command_quotes_mask_and_paths(value: str) -> None:
    python, script, model = f"/opt/{value}/python3", f"/tmp/{value}/linux_runner.py", f"/tmp/{value}.tflite"
    settings = RunSettings(backend="cpu-noxnnpack", threads=1, warmup_runs=2, num_runs=4)
    argv = shlex.split(runner_command(python, script, model, settings, mask=value))
    assert argv == ["taskset", value, python, script, "--model", model, "--threads", "1",
                    "--warmup", "2", "--runs", "4", "--no-xnnpack"]


def test_plain_values_stay_unquoted() -> None:
    # Device path prefixes must stay visible (the loopback device rewrites /data/local/tmp).
    cmd = benchmark_command("/data/local/tmp/benchmark_model", "/data/local/tmp/m.tflite", SETTINGS, mask="f0")
    assert cmd.startswith("taskset f0 /data/local/tmp/benchmark_model --graph=/data/local/tmp/m.tflite ")
    assert "'" not in cmd


@pytest.mark.parametrize("value", HOSTILE)
def test_quoted_command_runs_as_one_argument_per_value(tmp_path: Path, value: str) -> None:
    tool = _fake_tool(tmp_path / value)
    model = str(tmp_path / f"{value}.tflite")
    cmd = benchmark_command(str(tool), model, SETTINGS, mask=None)
    p = subprocess.run(["/bin/sh", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert p.stdout.splitlines()[0] == f"--graph={model}"
    cmd = runner_command(str(tool), str(tool), model, SETTINGS, mask=None)
    p = subprocess.run(["/bin/sh", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert p.stdout.splitlines()[:2] == [str(tool), "--model"]
    assert p.stdout.splitlines()[2] == model
    assert not list(tmp_path.rglob("PWNED"))


def test_hostile_mask_reaches_taskset_as_one_argument(tmp_path: Path) -> None:
    tool = _fake_tool(tmp_path)
    cmd = benchmark_command(str(tool), "m.tflite", SETTINGS, mask="1; touch PWNED")
    p = subprocess.run(["/bin/sh", "-c", cmd], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode != 0  # taskset rejects the mask; nothing after ';' runs
    assert not (tmp_path / "PWNED").exists()


def test_prepare_quotes_a_workdir_with_space_and_semicolon(tmp_path: Path) -> None:
    target = LocalTarget(workdir=tmp_path / "work dir; touch PWNED")
    runner = TFLiteBenchmarkRunner(binary=REPO / "device_scripts" / "litert_benchmark_model.py", repeats=1)
    info = runner.prepare(target, SETTINGS)
    assert info["benchmark_binary"] == "litert_benchmark_model.py"
    assert shlex.split(runner.command("m.tflite", SETTINGS, None))[0] == str(tmp_path / "work dir; touch PWNED"
                                                                            / "benchmark_model")
    assert not list(tmp_path.rglob("PWNED"))


# --- several models in one command (linux-python) -------------------------------------------------

def _onnx_blocks(space, n: int) -> list[Path]:
    from nas.export import export_block
    from profiler.plan import candidate_blocks

    blocks = [b for b in candidate_blocks(space, []) if b.key.startswith("conv")][:n]
    return [export_block(b, "onnx") for b in blocks]


def test_batch_measures_each_model_in_its_own_process(tmp_path: Path, space) -> None:
    from profiler.errors import RunnerError
    from profiler.runners.base import BatchRunner, Samples
    from profiler.runners.linux_python import LinuxPythonRunner
    from profiler.settings import ProtocolSettings

    target = LocalTarget(workdir=tmp_path)
    runner = LinuxPythonRunner()
    assert isinstance(runner, BatchRunner)
    settings = RunSettings(backend="onnx", warmup_runs=1, num_runs=4)
    runner.prepare(target, settings)
    a, b = (str(p) for p in _onnx_blocks(space, 2))
    got = runner.measure_batch(target, [a, str(tmp_path / "missing.onnx"), b], settings, None, ProtocolSettings())
    assert [type(g) for g in got] == [Samples, RunnerError, Samples]
    assert "missing.onnx" in str(got[1])
    for g in (got[0], got[2]):
        assert len(g.samples_us) == 4 and all(s > 0 for s in g.samples_us)
        assert g.info["process"] == "fork" and g.info["runtime"] == "onnxruntime"
    one = runner.measure(target, a, settings, None)
    assert one.info["process"] == "own"


def test_batch_parser_names_the_model_that_has_no_result() -> None:
    from profiler.errors import ParseError, RunnerError
    from profiler.parsers.linux_python import parse_linux_runner_batch

    text = ('{"model": "a", "samples_us": [10.0, 11.0]}\nnoise\n{"model": "b", "error": "boom"}\n'
            '{"model": "c", "samples_us": [0]}\n{"model": "d", "samp')
    got = parse_linux_runner_batch(text, ["a", "b", "c", "d"])
    assert got[0]["samples_us"] == [10.0, 11.0]
    assert isinstance(got[1], RunnerError) and "boom" in str(got[1])
    assert isinstance(got[2], ParseError)  # a zero sample is an error, never a latency
    assert isinstance(got[3], ParseError) and "no JSON result for d" in str(got[3])


def test_runner_spread_is_the_hosts() -> None:
    """The device script decides on re-timing with its own copy of the spread: it must be the host's."""
    import importlib.util
    import random

    from profiler.protocol import sample_stats

    spec = importlib.util.spec_from_file_location("linux_runner", REPO / "device_scripts" / "linux_runner.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = random.Random(0)
    for n in (1, 2, 5, 10, 50, 51):
        xs = [rng.lognormvariate(0, 0.3) for _ in range(n)]
        assert mod.spread(xs) == pytest.approx(sample_stats(tuple(xs))["spread"], rel=1e-12)


@pytest.mark.parametrize("max_spread, attempts", [(1e-9, 3), (100.0, 1)])
def test_batch_times_a_too_spread_model_again_in_its_process(tmp_path: Path, space, max_spread: float,
                                                             attempts: int) -> None:
    from profiler.protocol import measure_batch, sample_stats
    from profiler.runners.linux_python import LinuxPythonRunner
    from profiler.settings import ProtocolSettings

    target = LocalTarget(workdir=tmp_path)
    runner = LinuxPythonRunner()
    settings = RunSettings(backend="onnx", warmup_runs=1, num_runs=5)
    runner.prepare(target, settings)
    models = _onnx_blocks(space, 2)
    out = measure_batch(target, runner, models, settings, ProtocolSettings(max_spread=max_spread, max_attempts=3),
                        None, [0.0, 0.0])
    for res in out:
        assert res.attempts == attempts == len(res.samples.info["spreads"])
        assert sample_stats(res.samples.samples_us)["spread"] == pytest.approx(min(res.samples.info["spreads"]))
    assert not list((tmp_path / "models").iterdir())  # pushed copies removed


def test_a_batch_that_fails_as_a_whole_is_measured_model_by_model(tmp_path: Path) -> None:
    from profiler.errors import DeviceDisconnected, DeviceError, RunnerError
    from profiler.session import _measure_ready

    class Sess:  # only what _measure_ready uses
        target = LocalTarget(workdir=tmp_path)

        def __init__(self, batch_error: Exception) -> None:
            self.batch_error = batch_error

        def measure_batch(self, models, export_s):
            raise self.batch_error

        def measure(self, model, export_s):
            if model.name == "bad":
                raise RunnerError("bad model")
            return f"measured {model.name}"

    models = [Path("a"), Path("bad"), Path("b")]
    got = _measure_ready(Sess(DeviceError("command timed out")), models, [0.0] * 3, batch=True)
    assert got[0] == "measured a" and got[2] == "measured b"
    assert isinstance(got[1], RunnerError)
    with pytest.raises(DeviceDisconnected):  # a lost device stops the run, as before
        _measure_ready(Sess(DeviceDisconnected("gone")), models, [0.0] * 3, batch=True)
