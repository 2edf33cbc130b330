"""`linux-python`: device_scripts/linux_runner.py on a Linux device (or this host) with Python."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from profiler.errors import ParseError, RunnerError
from profiler.parsers.linux_python import parse_linux_runner_batch, parse_linux_runner_output
from profiler.runners._registry import register_runner
from profiler.runners.base import Samples
from profiler.runners.push import push_if_changed, push_reference
from profiler.settings import ProtocolSettings, RunSettings
from profiler.targets import Target, remote_path, sh_quote

SCRIPT = Path(__file__).resolve().parents[2] / "device_scripts" / "linux_runner.py"


def runner_command(python: str, script_remote: str, model_remote: str | Sequence[str], settings: RunSettings,
                   mask: str | None, retry: ProtocolSettings | None = None, reference_remote: str | None = None) -> str:
    """The device shell command that runs one model (or several, each in its own forked process, one after
    another; with `retry`, each timed again in its process while too spread; with `reference_remote`, each
    timed alternately with that model); every value is quoted."""
    models = [model_remote] if isinstance(model_remote, str) else list(model_remote)
    argv: list[object] = [python, script_remote]
    for m in models:
        argv += ["--model", m]
    argv += ["--threads", settings.threads, "--warmup", settings.warmup_runs, "--runs", settings.num_runs]
    if reference_remote is not None:
        argv += ["--reference", reference_remote]
    if retry is not None:
        argv += ["--max-spread", retry.max_spread, "--max-attempts", retry.max_attempts]
    if settings.backend == "cpu-noxnnpack":
        argv.append("--no-xnnpack")
    if mask:
        argv = ["taskset", mask, *argv]
    return " ".join(sh_quote(a) for a in argv)


class LinuxPythonRunner:
    name = "linux-python"

    def __init__(self, python: str = "python3") -> None:
        self.python = python
        self._pushed: dict[tuple[str, str], str] = {}  # (serial, local reference) -> its path on the device

    def prepare(self, target: Target, settings: RunSettings) -> dict:
        if settings.backend not in ("cpu", "cpu-noxnnpack", "onnx"):
            raise RunnerError(f"runner linux-python runs backends cpu, cpu-noxnnpack, onnx, not {settings.backend!r}")
        push_if_changed(target, SCRIPT, remote_path(target, SCRIPT.name), mode=0o755)
        self._pushed.clear()  # prepared again (e.g. a phone that rebooted): push the reference again too
        module = "onnxruntime" if settings.backend == "onnx" else "ai_edge_litert"
        r = target.shell(f"{sh_quote(self.python)} -c {sh_quote(f'import {module}')} 2>&1")
        if r.exit_code != 0:
            raise RunnerError(f"{self.python} on {target.serial} cannot import {module} ({r.output.strip()[-120:]}); "
                              "on an Android phone use the tflite-benchmark runner: --benchmark-binary PATH")
        return {"python": self.python}

    def command(self, target: Target, model_remote: str, settings: RunSettings, mask: str | None) -> str:
        return runner_command(self.python, remote_path(target, SCRIPT.name), model_remote, settings, mask,
                              reference_remote=push_reference(target, settings, self._pushed))

    def measure(self, target: Target, model_remote: str, settings: RunSettings, mask: str | None) -> Samples:
        r = target.shell(self.command(target, model_remote, settings, mask))
        return _samples(parse_linux_runner_output(r.output), settings)

    def measure_batch(self, target: Target, models_remote: Sequence[str], settings: RunSettings,
                      mask: str | None, protocol: ProtocolSettings) -> list[Samples | Exception]:
        """Several models in one device command (imports paid once, each model in a fresh forked process, timed
        again there while its spread exceeds the protocol's); one Samples (info: "attempts") or the model's
        ParseError/RunnerError per model, in order."""
        cmd = runner_command(self.python, remote_path(target, SCRIPT.name), models_remote, settings, mask, protocol,
                             push_reference(target, settings, self._pushed))
        r = target.shell(cmd)
        out: list[Samples | Exception] = []
        for d in parse_linux_runner_batch(r.output, list(models_remote)):
            try:
                out.append(d if isinstance(d, Exception) else _samples(d, settings))
            except ParseError as e:
                out.append(e)
        return out


def _samples(data: dict, settings: RunSettings) -> Samples:
    """The model's samples; paired (`settings.reference`), each is its ratio to the reference's timing in the same
    pair times the reference's level `reference_ms` (µs): the device's speed at that moment cancels. The raw
    timings stay in the info ("model_samples_us", "reference_samples_us")."""
    info = {k: v for k, v in data.items() if k not in ("samples_us", "model")}
    samples = tuple(float(s) for s in data["samples_us"])
    if settings.reference is None:
        return Samples(samples, info)
    ref = data.get("reference_samples_us")
    if not isinstance(ref, list) or len(ref) != len(samples) or any(
            not isinstance(r, (int, float)) or r <= 0 for r in ref):
        raise ParseError("paired timing: the runner's output has no valid reference_samples_us, one per sample")
    info["model_samples_us"] = list(samples)
    level_us = 1e3 * float(settings.reference_ms or 0.0)  # RunSettings holds both or neither
    return Samples(tuple(s / float(r) * level_us for s, r in zip(samples, ref)), info)


register_runner("linux-python")(LinuxPythonRunner)
