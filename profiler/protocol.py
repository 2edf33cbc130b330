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


def _retry(target: Target, runner: Runner, remote: str, settings: RunSettings, protocol: ProtocolSettings,
           mask: str | None, best: tuple[Samples, dict[str, float]] | None, attempts: int,
           ) -> tuple[tuple[Samples, dict[str, float]], int]:
    """Measure until the spread is small enough or attempts run out; keep the attempt with the smallest spread."""
    while best is None or (best[1]["spread"] > protocol.max_spread and attempts < protocol.max_attempts):
        if best is not None:
            log.info("%s: spread %.1f%% > %.1f%%, measuring again", posixpath.basename(remote),
                     100 * best[1]["spread"], 100 * protocol.max_spread)
        attempts += 1
        samples = runner.measure(target, remote, settings, mask)
        stats = sample_stats(samples.samples_us)
        if best is None or stats["spread"] < best[1]["spread"]:
            best = (samples, stats)
    return best, attempts


def measure_model(target: Target, runner: Runner, model: Path, settings: RunSettings, protocol: ProtocolSettings,
                  mask: str | None, export_s: float = 0.0) -> BlockResult:
    """Push a model file and measure it; keep the attempt with the smallest spread."""
    t0 = time.perf_counter()
    target.shell(f"mkdir -p {sh_quote(posixpath.join(target.workdir, 'models'))}")
    remote = _push(target, model)
    push_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    best, attempts = _retry(target, runner, remote, settings, protocol, mask, None, 0)
    run_s = time.perf_counter() - t1
    target.shell(f"rm -f {sh_quote(remote)}")
    return BlockResult(best[0], best[1], attempts, {"export_s": export_s, "push_s": push_s, "run_s": run_s})


def measure_batch(target: Target, runner: BatchRunner, models: Sequence[Path], settings: RunSettings,
                  protocol: ProtocolSettings, mask: str | None, export_s: Sequence[float],
                  ) -> list[BlockResult | Exception]:
    """Push several models and measure them in one device command (`BatchRunner.measure_batch`); the models
    whose spread is too wide are measured again, together, as `measure_model` would each (up to
    `max_attempts`, keeping each model's attempt with the smallest spread). One result, or the model's
    ParseError/RunnerError from its first attempt, per model; a lost device raises."""
    t0 = time.perf_counter()
    target.shell(f"mkdir -p {sh_quote(posixpath.join(target.workdir, 'models'))}")
    remotes = [_push(target, m) for m in models]
    push_s = (time.perf_counter() - t0) / len(models)
    best: list[tuple[Samples, dict[str, float]] | Exception | None] = [None] * len(models)
    attempts = [0] * len(models)
    run_s = [0.0] * len(models)
    pending = list(range(len(models)))
    while pending:
        t1 = time.perf_counter()
        got = runner.measure_batch(target, [remotes[i] for i in pending], settings, mask)
        per_model_s = (time.perf_counter() - t1) / len(pending)
        for i, g in zip(pending, got):
            attempts[i] += 1
            run_s[i] += per_model_s
            if isinstance(g, Exception):
                best[i] = best[i] or g  # a failed re-measure keeps the valid attempt before it
                continue
            stats = sample_stats(g.samples_us)
            b = best[i]
            if b is None or isinstance(b, Exception) or stats["spread"] < b[1]["spread"]:
                best[i] = (g, stats)
        pending = [i for i in pending if not isinstance(best[i], Exception)
                   and best[i][1]["spread"] > protocol.max_spread and attempts[i] < protocol.max_attempts]
        if pending:
            log.info("%d models: spread > %.1f%%, measuring again", len(pending), 100 * protocol.max_spread)
    target.shell("rm -f " + " ".join(sh_quote(r) for r in remotes))
    out: list[BlockResult | Exception] = []
    for b, n, r_s, e_s in zip(best, attempts, run_s, export_s):
        assert b is not None
        out.append(b if isinstance(b, Exception) else
                   BlockResult(b[0], b[1], n, {"export_s": e_s, "push_s": push_s, "run_s": r_s}))
    return out


def timed(fn: Callable[[], Path]) -> tuple[Path, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
