"""`linux-python`: device_scripts/linux_runner.py on a Linux device (or this host) with Python."""
from __future__ import annotations

import shlex
from pathlib import Path

from profiler.errors import RunnerError
from profiler.parsers.linux_python import parse_linux_runner_output
from profiler.runners._registry import register_runner
from profiler.runners.base import Samples
from profiler.runners.push import push_if_changed
from profiler.settings import RunSettings
from profiler.targets import Target, remote_path

SCRIPT = Path(__file__).resolve().parents[2] / "device_scripts" / "linux_runner.py"


class LinuxPythonRunner:
    name = "linux-python"

    def __init__(self, python: str = "python3") -> None:
        self.python = python

    def prepare(self, target: Target, settings: RunSettings) -> dict:
        if settings.backend not in ("cpu", "cpu-noxnnpack", "onnx"):
            raise RunnerError(f"runner linux-python runs backends cpu, cpu-noxnnpack, onnx, not {settings.backend!r}")
        push_if_changed(target, SCRIPT, remote_path(target, SCRIPT.name), mode=0o755)
        module = "onnxruntime" if settings.backend == "onnx" else "ai_edge_litert"
        r = target.shell(f"{self.python} -c 'import {module}' 2>&1")
        if r.exit_code != 0:
            raise RunnerError(f"{self.python} on {target.serial} cannot import {module} ({r.output.strip()[-120:]}); "
                              "on an Android phone use the tflite-benchmark runner: --benchmark-binary PATH")
        return {"python": self.python}

    def measure(self, target: Target, model_remote: str, settings: RunSettings, mask: str | None) -> Samples:
        cmd = (f"{self.python} {shlex.quote(remote_path(target, SCRIPT.name))} --model {shlex.quote(model_remote)} "
               f"--threads {settings.threads} --warmup {settings.warmup_runs} --runs {settings.num_runs}")
        if settings.backend == "cpu-noxnnpack":
            cmd += " --no-xnnpack"
        if mask:
            cmd = f"taskset {mask} {cmd}"
        r = target.shell(cmd)
        data = parse_linux_runner_output(r.output)
        info = {k: v for k, v in data.items() if k != "samples_us"}
        return Samples(tuple(float(s) for s in data["samples_us"]), info)


register_runner("linux-python")(LinuxPythonRunner)
