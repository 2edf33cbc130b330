"""Measuring whole exported subnets on a device (validation of the predictor), stored as kind='network'.

A shared machine or a throttling phone changes speed while it is measured. `Guard` re-times a
reference model before every chunk of networks and waits while it runs more than `tolerance` away from
its first timing, and re-times it after the chunk: a chunk that ended disturbed is measured again (up
to `remeasure` times), so no chunk stands that was measured in a disturbed period; its timings over
the run are the run's own noise floor.
"""
from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from nas.subnet import Subnet
from profiler.prefetch import prefetch
from profiler.protocol import measure_model
from profiler.session import DeviceSession, Summary, measure_models

log = logging.getLogger(__name__)
KIND = "network"


def subnet_key(subnet: Subnet) -> str:
    """Stable id of a subnet in the store: `net_<space>_<sha256 of its JSON, 16 hex>`."""
    return f"net_{subnet.space}_{hashlib.sha256(subnet.to_json().encode()).hexdigest()[:16]}"


@dataclass
class Guard:
    """A reference model re-timed between chunks; waits out disturbed periods."""

    model: Path
    tolerance: float = 0.05  # relative distance from the first timing that counts as disturbed
    max_wait_s: float = 180.0
    poll_s: float = 5.0
    timings_ms: list[float] = field(default_factory=list)
    waited_s: float = 0.0
    disturbed: int = 0  # checks that found the device disturbed
    remeasured: int = 0  # chunks measured again because the check after them found the device disturbed

    def _time(self, sess: DeviceSession) -> float:
        ms = measure_model(sess.target, sess.runner, self.model, sess.job.run, sess.job.protocol, sess.mask)
        return float(ms.stats["median_ms"])

    def _check(self, sess: DeviceSession) -> tuple[bool, float, float]:
        """Time the reference: (quiet, ms, relative distance from the first timing); a quiet one is kept."""
        ms = self._time(sess)
        off = ms / (self.timings_ms[0] if self.timings_ms else ms) - 1
        quiet = abs(off) <= self.tolerance
        if quiet:
            self.timings_ms.append(ms)
        else:
            self.disturbed += 1
        return quiet, ms, off

    def still_quiet(self, sess: DeviceSession) -> bool:
        """Re-time the reference after a chunk: False when the device was disturbed by then."""
        quiet, ms, off = self._check(sess)
        if not quiet:
            log.info("reference %.3f ms is %.1f%% off after a chunk: it is measured again", ms, 100 * off)
        return quiet

    def wait_until_quiet(self, sess: DeviceSession) -> None:
        deadline = time.monotonic() + self.max_wait_s
        while True:
            quiet, ms, off = self._check(sess)
            if quiet:
                return
            if time.monotonic() > deadline:
                log.warning("reference still %.1f%% off after %.0f s; measuring anyway", 100 * off, self.max_wait_s)
                self.timings_ms.append(ms)
                return
            log.info("reference %.3f ms is %.1f%% off: waiting", ms, 100 * off)
            time.sleep(self.poll_s)
            self.waited_s += self.poll_s

    def report(self) -> dict:
        t = self.timings_ms
        cv = statistics.pstdev(t) / statistics.fmean(t) if len(t) > 1 else 0.0
        return {"model": self.model.name, "checks": len(t), "cv": cv, "disturbed": self.disturbed,
                "remeasured_chunks": self.remeasured, "waited_s": self.waited_s, "tolerance": self.tolerance}


T = TypeVar("T")


def in_guarded_chunks(sess: DeviceSession, items: Sequence[T], measure: Callable[[list[T], bool], None], bar: tqdm,
                      guard: Guard | None = None, chunk: int = 5, remeasure: int = 2) -> None:
    """`measure(part, again)` each `chunk` of `items` after the guard found the device quiet, and again (with
    `again` true, the bar stepped back) while the guard finds it disturbed after the chunk, up to `remeasure`
    times."""
    for i in range(0, len(items), chunk):
        part = list(items[i:i + chunk])
        for attempt in range(remeasure + 1):
            if guard is not None:
                guard.wait_until_quiet(sess)
                if attempt:
                    bar.update(-len(part))
                    guard.remeasured += 1
            measure(part, attempt > 0)
            if guard is None or guard.still_quiet(sess):
                break


def measure_subnets(sess: DeviceSession, subnets: Sequence[Subnet], stage_names: tuple[str, ...],
                    guard: Guard | None = None, chunk: int = 5, remeasure: int = 2) -> dict[str, float]:
    """Measure each subnet this device has not measured yet (`chunk` at a time, each chunk after the guard
    found the device quiet, again while the guard finds it disturbed after the chunk, up to `remeasure`
    times: the last timing of a network is the one kept); return subnet_key -> latency_ms of all measured
    ones (failures are in the store's failures table)."""
    from nas.export import export_subnet  # torch and the converters load only once a device is ready

    summary = Summary(serial=sess.target.serial, total=len(subnets))
    done = sess.measured(KIND)
    todo = [s for s in subnets if subnet_key(s) not in done]
    convert = partial(export_subnet, fmt=sess.job.run.model_format)
    workers = sess.job.settings.export_workers
    if workers > 1 and len(todo) > 1:  # convert everything first, so measuring runs on a quiet host
        prefetch(todo, convert, subnet_key, workers, desc=f"{summary.serial} export networks")
    with tqdm(total=len(subnets), initial=len(subnets) - len(todo), desc=f"{summary.serial} networks",
              unit="net", dynamic_ncols=True) as bar:
        def measure(part: list[Subnet], again: bool) -> None:
            measure_models(sess, part, KIND, subnet_key, convert, summary, bar, None,
                           lambda s: {"subnet": s.to_dict(stage_names)}, prefetched=True, replace=again)
        in_guarded_chunks(sess, todo, measure, bar, guard, chunk, remeasure)
    measured = sess.measured(KIND)
    return {subnet_key(s): measured[subnet_key(s)] for s in subnets if subnet_key(s) in measured}
