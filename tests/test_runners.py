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
