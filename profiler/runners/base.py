"""What a runner is: prepare the device once, build a command, hand the text to its parser."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from profiler.settings import RunSettings
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
