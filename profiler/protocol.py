"""Measuring one block: export (cached), push, run, re-measure when the spread is too wide."""
from __future__ import annotations

import logging
import posixpath
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from profiler.runners.base import Runner, Samples
from profiler.runners.push import push_if_changed
from profiler.settings import ProtocolSettings, RunSettings
from profiler.targets import Target, sh_quote

log = logging.getLogger(__name__)


def sample_stats(samples_us: tuple[float, ...]) -> dict[str, float]:
    xs = sorted(samples_us)
    med = statistics.median(xs)
    p10 = xs[int(0.1 * (len(xs) - 1))]
    p90 = xs[int(round(0.9 * (len(xs) - 1)))]
    return {
        "median_ms": med / 1e3,
        "mean_ms": statistics.fmean(xs) / 1e3,
        "std_ms": (statistics.pstdev(xs) / 1e3) if len(xs) > 1 else 0.0,
        "min_ms": xs[0] / 1e3,
        "max_ms": xs[-1] / 1e3,
        "spread": (p90 - p10) / med,
    }


@dataclass(frozen=True)
class BlockResult:
    samples: Samples
    stats: dict[str, float]
    attempts: int
    timings_s: dict[str, float]  # where the time went: export, push, run


def measure_model(target: Target, runner: Runner, model: Path, settings: RunSettings, protocol: ProtocolSettings,
                  mask: str | None, export_s: float = 0.0) -> BlockResult:
    """Push a model file and measure it; keep the attempt with the smallest spread."""
    remote = posixpath.join(target.workdir, "models", model.name)
    t0 = time.perf_counter()
    target.shell(f"mkdir -p {sh_quote(posixpath.dirname(remote))}")
    push_if_changed(target, model, remote)
    push_s = time.perf_counter() - t0
    best: tuple[Samples, dict[str, float]] | None = None
    attempts = 0
    t1 = time.perf_counter()
    while attempts < protocol.max_attempts:
        attempts += 1
        samples = runner.measure(target, remote, settings, mask)
        stats = sample_stats(samples.samples_us)
        if best is None or stats["spread"] < best[1]["spread"]:
            best = (samples, stats)
        if stats["spread"] <= protocol.max_spread:
            break
        log.info("%s: spread %.1f%% > %.1f%%, measuring again", model.name, 100 * stats["spread"],
                 100 * protocol.max_spread)
    run_s = time.perf_counter() - t1
    target.shell(f"rm -f {sh_quote(remote)}")
    assert best is not None
    return BlockResult(best[0], best[1], attempts, {"export_s": export_s, "push_s": push_s, "run_s": run_s})


def timed(fn: Callable[[], Path]) -> tuple[Path, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
