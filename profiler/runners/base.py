"""What a runner is: prepare the device once, build a command, hand the text to its parser."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from profiler.settings import ProtocolSettings, RunSettings
from profiler.targets import Target


@dataclass(frozen=True)
class Samples:
    """Raw per-run latencies of one model run, in microseconds, plus what the tool reported."""

    samples_us: tuple[float, ...]
    info: dict = field(default_factory=dict, hash=False, compare=False)


class Runner(Protocol):
    name: str

    def prepare(self, target: Target, settings: RunSettings) -> dict:
        """Push what the runner needs (once; re-push on hash change); return versions for the record."""
        ...

    def measure(self, target: Target, model_remote: str, settings: RunSettings, mask: str | None) -> Samples:
        """Run the model and return parsed samples; raises ParseError/RunnerError, never returns zeros."""
        ...


@runtime_checkable
class BatchRunner(Runner, Protocol):
    """A runner that can also measure several models in one device command (fewer start-ups)."""

    def measure_batch(self, target: Target, models_remote: Sequence[str], settings: RunSettings,
                      mask: str | None, protocol: ProtocolSettings) -> list[Samples | Exception]:
        """One Samples, or that model's ParseError/RunnerError, per model in order; each model is timed again on
        the device while its spread exceeds `protocol.max_spread`, up to `protocol.max_attempts` timings, and
        the runner reports its narrowest attempt and how many it made (info "attempts"); a lost device raises."""
        ...
