"""`tflite-benchmark`: the TFLite `benchmark_model` binary on the device, pinned with taskset.

benchmark_model reports per-loop statistics, not raw samples, so one measurement is `repeats`
invocations of exactly `num_runs` runs each; the samples are the invocations' inference averages
(or the raw per-run samples when the binary prints them), and every loop's stats go to `info`.

Paired (`settings.reference`, `profiler.paired`): the reference and the model are invoked alternately in one device
command, reference first and last; sample i is invocation i's time over the mean of the reference invocations
before and after it, times the reference's level. A change of the device's speed that is slow next to one
invocation (throttling, a background job) cancels; one that is faster does not.
"""
from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import statistics
from pathlib import Path

from profiler.errors import BenchmarkBinaryError, RunnerError
from profiler.parsers.tflite_benchmark import BenchmarkResult, parse_benchmark_output
from profiler.runners._registry import register_runner
from profiler.runners.base import Samples
from profiler.runners.push import push_if_changed, push_reference
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
        self._pushed: dict[tuple[str, str], str] = {}  # (serial, local reference) -> its path on the device

    def prepare(self, target: Target, settings: RunSettings) -> dict:
        if settings.backend not in ("cpu", "cpu-noxnnpack", "gpu", "nnapi"):
            raise RunnerError(f"runner tflite-benchmark runs cpu, cpu-noxnnpack, gpu, nnapi, not {settings.backend!r}")
        if self.binary is None:
            raise BenchmarkBinaryError("the tflite-benchmark runner needs --benchmark-binary PATH "
                                       "(benchmark_model for the device's ABI)")
        if not self.binary.is_file():
            raise BenchmarkBinaryError(f"benchmark binary {self.binary} does not exist")
        self._remote = remote_path(target, "benchmark_model")
        self._pushed.clear()  # prepared again (e.g. a phone that rebooted): push the reference again too
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
        reference = push_reference(target, settings, self._pushed)
        if reference is not None:
            return self._measure_paired(target, model_remote, reference, settings, mask)
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

    def _measure_paired(self, target: Target, model_remote: str, reference_remote: str, settings: RunSettings,
                        mask: str | None) -> Samples:
        """`repeats` invocations of the model, each between two of the reference, in one device command."""
        ref_cmd = self.command(reference_remote, settings, mask) + " 2>&1"
        model_cmd = self.command(model_remote, settings, mask) + " 2>&1"
        parts = [ref_cmd]
        for _ in range(self.repeats):
            parts += [model_cmd, ref_cmd]
        out = target.shell(f"; echo {SPLIT}; ".join(parts)).output
        texts = out.split(SPLIT)
        if len(texts) != len(parts):
            raise RunnerError(f"paired timing: expected {len(parts)} benchmark_model outputs, got {len(texts)}")
        times = [_invocation_us(parse_benchmark_output(t)) for t in texts]
        ref, model = times[0::2], times[1::2]
        level_us = 1e3 * float(settings.reference_ms or 0.0)  # RunSettings holds both or neither
        samples = tuple(m / (0.5 * (ref[i] + ref[i + 1])) * level_us for i, m in enumerate(model))
        return Samples(samples, {"repeats": self.repeats, "model": posixpath.basename(model_remote),
                                 "model_samples_us": model, "reference_samples_us": ref})


SPLIT = "==mobilevit-nas-next-invocation=="


def _invocation_us(result: BenchmarkResult) -> float:
    """One invocation's time: the median of its raw samples when the binary prints them, else its average."""
    return statistics.median(result.raw_samples_us) if result.raw_samples_us else result.inference_avg_us


register_runner("tflite-benchmark")(TFLiteBenchmarkRunner)
