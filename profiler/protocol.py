"""Measuring blocks: push, run (one model, or several in one device command), re-measure when the spread is too
wide."""
from __future__ import annotations

import logging
import posixpath
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from profiler.runners.base import BatchRunner, Runner, Samples
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


def _push(target: Target, model: Path) -> str:
    remote = posixpath.join(target.workdir, "models", model.name)
    push_if_changed(target, model, remote)
    return remote


def measure_model(target: Target, runner: Runner, model: Path, settings: RunSettings, protocol: ProtocolSettings,
                  mask: str | None, export_s: float = 0.0) -> BlockResult:
    """Push a model file and measure it; keep the attempt with the smallest spread."""
    t0 = time.perf_counter()
    target.shell(f"mkdir -p {sh_quote(posixpath.join(target.workdir, 'models'))}")
    remote = _push(target, model)
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
    assert best is not None
    target.shell(f"rm -f {sh_quote(remote)}")
    return BlockResult(best[0], best[1], attempts, {"export_s": export_s, "push_s": push_s, "run_s": run_s})


def measure_batch(target: Target, runner: BatchRunner, models: Sequence[Path], settings: RunSettings,
                  protocol: ProtocolSettings, mask: str | None, export_s: Sequence[float],
                  ) -> list[BlockResult | Exception]:
    """Push several models and measure them in one device command (`BatchRunner.measure_batch`: the runner
    times a model again while its spread is too wide, as `measure_model` does from the host). One result, or
    the model's ParseError/RunnerError, per model; a lost device raises."""
    t0 = time.perf_counter()
    target.shell(f"mkdir -p {sh_quote(posixpath.join(target.workdir, 'models'))}")
    remotes = [_push(target, m) for m in models]
    push_s = (time.perf_counter() - t0) / len(models)
    t1 = time.perf_counter()
    got = runner.measure_batch(target, remotes, settings, mask, protocol)
    run_s = (time.perf_counter() - t1) / len(models)
    target.shell("rm -f " + " ".join(sh_quote(r) for r in remotes))
    return [g if isinstance(g, Exception) else
            BlockResult(g, sample_stats(g.samples_us), int(g.info.get("attempts", 1)),
                        {"export_s": e_s, "push_s": push_s, "run_s": run_s})
            for g, e_s in zip(got, export_s)]


def timed(fn: Callable[[], Path]) -> tuple[Path, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
