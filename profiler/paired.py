"""Paired timing: each model timed alternately with one reference model, its latency its ratio to the reference.

On a shared machine a disturbed period slows every model running at that moment by about the same factor, and the
factor changes from second to second (`benchmarks/results/paired_noise.md`: six networks timed over 12 rounds moved
7.5% alone, their ratio to a reference invoked between their runs 1.4%). The linux-python device script times blocks
of a few invokes of each, the first after a switch untimed: invoked one after the other, the reference evicted a
small model's weights and a block ran up to 2x slower than alone (a dev run of validate: every anchor 1.56x its
entry). The tflite-benchmark runner alternates whole benchmark_model invocations (one model a process), so on a
phone it follows slower changes only (throttling, background jobs). A paired timing is the median of the per-pair
ratios times the reference's level: one number per device, run
settings and reference, timed plainly once (median of a few timings) and stored, so that a resumed run and every
later run against the same reference use the same level. Predicted / measured does not depend on the level when
everything compared is timed paired (a level that is off moves every timing alike); the level sets the absolute ms.
A few timings in a row can all fall in one disturbed moment (a validate run: 3 of its 5 level timings 20-30%
slow, the median of its in-pair reference timings over the next 39 minutes 0.82x that level, so its whole LUT was
about 20% high), so `predictor.validate` times the reference plainly again at the end and puts its run and LUT on
`run_level`, the median of the timings at both ends.
The store files paired timings under their own runner name (`RunSettings.store_runner`): never mixed with plain
ones.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from nas.export import export_subnet
from nas.searchspace import SearchSpace
from nas.subnet import Subnet
from profiler.errors import ProfilerError
from profiler.protocol import BlockResult, measure_model
from profiler.session import DeviceSession
from profiler.settings import store_runner
from profiler.store import MeasurementRow

LEVEL_KIND = "reference-level"


def time_plainly(sess: DeviceSession, reference: Path, repeats: int) -> list[BlockResult]:
    """`repeats` plain timings of `reference` (each its own measurement), also while `sess` times paired."""
    run = dataclasses.replace(sess.job.run, reference=None, reference_ms=None)
    return [measure_model(sess.target, sess.runner, reference, run, sess.job.protocol, sess.mask)
            for _ in range(repeats)]


def run_level(timings_ms: Sequence[float]) -> float:
    """The reference's level over a run: the median of its plain timings at the run's start and end."""
    if not timings_ms or not all(t > 0 for t in timings_ms):
        raise ProfilerError(f"the reference's level needs positive timings, got {list(timings_ms)}")
    return float(statistics.median(timings_ms))


def pair_with(sess: DeviceSession, reference: Path, repeats: int = 5,
              timed: Sequence[BlockResult] | None = None) -> float:
    """Switch `sess` to timing every model paired with `reference`; return the reference's level (ms): the one
    stored for this device, run settings and reference, else the median of `repeats` plain timings of it now
    (or of `timed`, plain timings the caller just made), then stored."""
    run = sess.job.run
    if run.reference is not None:
        raise ProfilerError("this session already times paired")
    runner_name = store_runner(run.runner, str(reference))
    stored = sess.store.latencies(sess.device_id, runner_name, run.backend, run.threads, LEVEL_KIND)
    level = stored.get(reference.name)
    if level is None:
        started = time.time()
        results = list(timed) if timed else time_plainly(sess, reference, repeats)
        timings = [r.stats["median_ms"] for r in results]
        level = statistics.median(timings)
        mid = min(results, key=lambda r: abs(r.stats["median_ms"] - level))
        sess.store.add(MeasurementRow(sess.device_id, runner_name, run.backend, run.threads, LEVEL_KIND,
                                      reference.name, level, mid.samples.samples_us, mid.stats, len(results),
                                      sess.settings, {"timings_ms": timings}, started, time.time()), sess.run_id)
    sess.use_run(dataclasses.replace(run, reference=str(reference), reference_ms=level))
    return level


def reference_model(space: SearchSpace, fallback: Subnet, fmt: str) -> Path:
    """The reference network of paired timing and of the guard (validate, verify and their benchmarks): a mid-size
    released network (else `fallback`), converted."""
    released = list(space.released.values())
    sub = released[len(released) // 2] if released else fallback
    try:
        return export_subnet(sub, fmt)
    except Exception as e:  # noqa: BLE001 - a converter's failure is reported in one line, not as a traceback
        raise ProfilerError(f"could not convert the reference network to {fmt}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from e
