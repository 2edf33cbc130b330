"""`tflite-benchmark`: the TFLite `benchmark_model` binary on the device, pinned with taskset.

benchmark_model reports per-loop statistics, not raw samples, so one measurement is `repeats`
invocations of exactly `num_runs` runs each; the samples are the invocations' inference averages
(or the raw per-run samples when the binary prints them), and every loop's stats go to `info`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import posixpath
from pathlib import Path

from profiler.errors import BenchmarkBinaryError, RunnerError
from profiler.parsers.tflite_benchmark import parse_benchmark_output
from profiler.runners._registry import register_runner
from profiler.runners.base import Samples
from profiler.runners.push import push_if_changed
from profiler.settings import RunSettings
from profiler.targets import Target, remote_path, sh_quote


def benchmark_command(binary_remote: str, model_remote: str, settings: RunSettings, mask: str | None) -> str:
    """The device shell command for one ``benchmark_model`` invocation; every value is quoted."""
    argv = [
        binary_remote, f"--graph={model_remote}", f"--num_threads={settings.threads}",
        f"--warmup_runs={settings.warmup_runs}", f"--num_runs={settings.num_runs}",
        # exact run counts: without these the tool runs for at least 1 s / 0.5 s instead
        "--min_secs=0", "--warmup_min_secs=0",
        f"--use_xnnpack={'false' if settings.backend == 'cpu-noxnnpack' else 'true'}",
    ]
    if settings.backend == "gpu":
        argv.append("--use_gpu=true")
    if settings.backend == "nnapi":
        argv.append("--use_nnapi=true")
    if mask:
        argv = ["taskset", mask, *argv]
    return " ".join(sh_quote(a) for a in argv)


class TFLiteBenchmarkRunner:
    name = "tflite-benchmark"

    def __init__(self, binary: Path | None = None, repeats: int = 3) -> None:
        self.binary = binary
        self.repeats = repeats
        self._remote: str | None = None

    def prepare(self, target: Target, settings: RunSettings) -> dict:
        if settings.backend not in ("cpu", "cpu-noxnnpack", "gpu", "nnapi"):
            raise RunnerError(f"runner tflite-benchmark runs cpu, cpu-noxnnpack, gpu, nnapi, not {settings.backend!r}")
        if self.binary is None:
            raise BenchmarkBinaryError("the tflite-benchmark runner needs --benchmark-binary PATH "
                                       "(benchmark_model for the device's ABI)")
        if not self.binary.is_file():
            raise BenchmarkBinaryError(f"benchmark binary {self.binary} does not exist")
        self._remote = remote_path(target, "benchmark_model")
        push_if_changed(target, self.binary, self._remote, mode=0o755)
        r = target.shell(f"[ -x {sh_quote(self._remote)} ] && echo executable")
        if "executable" not in r.output:
            raise BenchmarkBinaryError(f"{self._remote} on {target.serial} is not executable")
        # Run without --graph: benchmark_model answers by asking for --graph (and lists its flags).
        # Anything else (exec format error, a shell choking on a binary, a different tool) is not it.
        r = target.shell(f"{sh_quote(self._remote)} 2>&1 | head -n 20")
        if "graph" not in r.output:
            first = r.output.strip().splitlines()[0][:160] if r.output.strip() else "no output"
            raise BenchmarkBinaryError(f"benchmark binary does not run on {target.serial} as benchmark_model ({first})")
        digest = hashlib.sha256(self.binary.read_bytes()).hexdigest()[:16]
        return {"benchmark_binary_sha256": digest, "benchmark_binary": self.binary.name}

    def command(self, model_remote: str, settings: RunSettings, mask: str | None) -> str:
        assert self._remote, "prepare() first"
        return benchmark_command(self._remote, model_remote, settings, mask)

    def measure(self, target: Target, model_remote: str, settings: RunSettings, mask: str | None) -> Samples:
        if settings.reference is not None:
            raise RunnerError("paired timing needs the linux-python runner: benchmark_model times one model a process")
        cmd = self.command(model_remote, settings, mask)
        samples: list[float] = []
        loops: list[dict] = []
        for _ in range(self.repeats):
            result = parse_benchmark_output(target.shell(cmd + " 2>&1").output)
            if result.raw_samples_us:
                samples.extend(result.raw_samples_us)
            else:
                samples.append(result.inference_avg_us)
            loops.append(dataclasses.asdict(result.inference) if result.inference else {})
        return Samples(tuple(samples), {"loops": loops, "repeats": self.repeats,
                                        "model": posixpath.basename(model_remote)})


register_runner("tflite-benchmark")(TFLiteBenchmarkRunner)
