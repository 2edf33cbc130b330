"""How to measure on a device: one definition, shared by every tool that measures.

`RunSettings` (how one model runs), `ProtocolSettings` (repeats, spread, thermal guard, seed) and
`MeasureSettings` (both, plus the benchmark binary and conversion workers); their command-line
flags are defined once, in `profiler/measure_args.py`. Stored with every result they produced.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

# backend -> model format it runs
BACKEND_FORMATS = {"cpu": "tflite", "cpu-noxnnpack": "tflite", "gpu": "tflite", "nnapi": "tflite", "onnx": "onnx"}
_HEX_MASK = re.compile(r"(0x)?[0-9a-fA-F]{1,16}")


def store_runner(runner: str, reference: str | None) -> str:
    """The runner as the store records it: paired timings are another way of measuring, kept apart from plain
    ones (and from timings paired with another reference) so that the two are never mixed."""
    return runner if reference is None else f"{runner}+ref:{Path(reference).name}"


@dataclass(frozen=True)
class RunSettings:
    """How one model is run on the device."""

    runner: str = "linux-python"
    backend: str = "cpu"  # one of BACKEND_FORMATS
    threads: int = 1
    warmup_runs: int = 10
    num_runs: int = 50
    cpu_mask: str | None = None  # hex affinity mask; None = the fastest cores, read from the device
    # Paired timing: every model is invoked alternately with this reference model (a local file),
    # and its latency is the median of its per-pair ratios to the reference times `reference_ms` (the reference's
    # own level, one number per store): a disturbance that slows both alike cancels (both runners; on a phone
    # whole benchmark_model invocations alternate).
    reference: str | None = None
    reference_ms: float | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_FORMATS:
            raise ValueError(f"backend = {self.backend!r} is not allowed; allowed: {sorted(BACKEND_FORMATS)}")
        if self.threads < 1 or self.num_runs < 1 or self.warmup_runs < 0:
            raise ValueError("threads and runs must be >= 1, warm-up runs >= 0")
        if self.cpu_mask is not None:  # it reaches a device shell (taskset): only a plain hex number passes
            if not _HEX_MASK.fullmatch(self.cpu_mask) or int(self.cpu_mask, 16) == 0:
                raise ValueError(f"--cpu-mask {self.cpu_mask!r} is not a non-zero hex CPU mask (e.g. f0 or 0x80)")
        if (self.reference is None) != (self.reference_ms is None) or (
                self.reference_ms is not None and not (math.isfinite(self.reference_ms) and self.reference_ms > 0)):
            raise ValueError(f"paired timing needs a reference model and its positive level in ms, got "
                             f"{self.reference!r} and {self.reference_ms!r}")

    @property
    def store_runner(self) -> str:
        return store_runner(self.runner, self.reference)

    @property
    def model_format(self) -> str:
        return BACKEND_FORMATS[self.backend]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProtocolSettings:
    """The measurement protocol: repeats, spread threshold, thermal/frequency guard."""

    max_spread: float = 0.10  # (p90 - p10) / median above this triggers a re-measure
    max_attempts: int = 3
    batch_size: int = 10  # models between frequency/thermal snapshots; a batch runner's models per command
    cooldown_max_s: float = 60.0
    temp_margin_c: float = 3.0  # cool down while hotter than baseline + margin
    freq_drop: float = 0.05  # ... or while a core runs this much below its baseline frequency
    seed: int = 0  # order of blocks (shuffled so drift does not bias one block type)
    reconnect_s: float = 60.0  # wait this long for a lost device before giving up
    disconnect_retries: int = 3  # per block
    # MB of weights each weight-stream probe cycles through (nas.probes): the in-network term's curve
    probe_mb: tuple[int, ...] = (8, 16, 32, 48, 64, 96, 128)
    # rows (tokens) each probe layer multiplies: cold weights cost a multi-row product more per MB
    probe_tokens: tuple[int, ...] = (1, 4, 16, 64)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_spread) and self.max_spread > 0):
            raise ValueError(f"--max-spread {self.max_spread} must be a positive number")
        mb = list(self.probe_mb)
        if not mb or any(not isinstance(m, int) or m < 2 for m in mb) or mb != sorted(set(mb)):  # 1: the reference
            raise ValueError(f"--probe-mb {' '.join(map(str, mb))}: give increasing whole MB sizes >= 2")
        tk = list(self.probe_tokens)
        if not tk or any(not isinstance(m, int) or m < 1 for m in tk) or tk != sorted(set(tk)):
            raise ValueError(f"--probe-tokens {' '.join(map(str, tk))}: give increasing whole row counts >= 1")
        if self.max_attempts < 1 or self.batch_size < 1:
            raise ValueError("max_attempts and batch_size must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MeasureSettings:
    """Everything a tool that measures on a device needs to know about how to measure."""

    run: RunSettings = field(default_factory=RunSettings)
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    benchmark_binary: Path | None = None  # the device's TFLite benchmark_model (tflite-benchmark runner)
    export_workers: int = 1  # >1: convert every model in a process pool before measuring

    def __post_init__(self) -> None:
        if self.run.runner == "tflite-benchmark" and self.benchmark_binary is None:
            raise ValueError("the tflite-benchmark runner needs --benchmark-binary (the device's benchmark_model)")
        if self.benchmark_binary is not None:
            b = Path(self.benchmark_binary)
            if not b.is_file():
                raise ValueError(f"--benchmark-binary {b}: no such file")
            if not os.access(b, os.R_OK):
                raise ValueError(f"--benchmark-binary {b}: not readable")
        if self.export_workers < 1:
            raise ValueError("--export-workers must be >= 1")
