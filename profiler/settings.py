"""Typed settings of a profiling run; stored with every result they produced."""
from __future__ import annotations

from dataclasses import asdict, dataclass

# backend -> model format it runs
BACKEND_FORMATS = {"cpu": "tflite", "cpu-noxnnpack": "tflite", "gpu": "tflite", "nnapi": "tflite", "onnx": "onnx"}


@dataclass(frozen=True)
class RunSettings:
    """How one model is run on the device."""

    runner: str = "linux-python"
    backend: str = "cpu"  # one of BACKEND_FORMATS
    threads: int = 1
    warmup_runs: int = 10
    num_runs: int = 50
    cpu_mask: str | None = None  # hex affinity mask; None = the fastest cores, read from the device

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_FORMATS:
            raise ValueError(f"backend = {self.backend!r} is not allowed; allowed: {sorted(BACKEND_FORMATS)}")
        if self.threads < 1 or self.num_runs < 1 or self.warmup_runs < 0:
            raise ValueError("threads and num_runs must be >= 1, warmup_runs >= 0")

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
    batch_size: int = 10  # blocks between frequency/thermal snapshots
    cooldown_max_s: float = 60.0
    temp_margin_c: float = 3.0  # cool down while hotter than baseline + margin
    freq_drop: float = 0.05  # ... or while a core runs this much below its baseline frequency
    seed: int = 0  # order of blocks (shuffled so drift does not bias one block type)
    reconnect_s: float = 60.0  # wait this long for a lost device before giving up
    disconnect_retries: int = 3  # per block

    def to_dict(self) -> dict:
        return asdict(self)
