"""Measuring whole exported subnets on a device (validation of the predictor), stored as kind='network'.

A shared machine or a throttling phone changes speed while it is measured. `Guard` re-times a
reference model before every chunk of networks and waits while it runs more than `tolerance` away from
its first timing, and re-times it after the chunk: a chunk that ended disturbed is measured again (up
to `remeasure` times), so no chunk stands that was measured in a disturbed period; its timings over
the run are the run's own noise floor. That does not catch everything: on this shared host the same
network timed in two guarded runs half an hour apart differed by 8.3% (SD of the log ratio, 50 networks),
uncorrelated with its size or weights; in one guarded run its passes differed by CV 2.8%. So
`measure_subnets(passes=K)` times every network in K passes (each in its own order) and keeps its median.
"""
from __future__ import annotations

import hashlib
import logging
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from nas.subnet import Subnet
from profiler.errors import ProfilerError
from profiler.prefetch import prefetch
from profiler.protocol import measure_model
from profiler.session import DeviceSession, Summary, measure_models

log = logging.getLogger(__name__)
KIND = "network"
PASS_KIND = "network-pass"  # one pass's timing of a network (measure_subnets with passes > 1)


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
    # Waits in a row that ended with the reference still off: then the device is not having a moment but a
    # period (this host once ran the reference 17-61% slow for over half an hour, and each chunk waited 3 min
    # for nothing): stop, keep what was measured, say so.
    give_up_after: int = 3
    timeouts_in_row: int = 0
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
                self.timeouts_in_row = 0
                return
            if time.monotonic() > deadline:
                self.timeouts_in_row += 1
                if self.timeouts_in_row >= self.give_up_after:
                    raise ProfilerError(
                        f"the device stayed disturbed: the reference model ran {100 * off:+.0f}% off its first timing "
                        f"after {self.timeouts_in_row} waits of {self.max_wait_s:.0f} s in a row; what was measured is "
                        "kept in the store: re-run the same command when the device is quiet (it resumes)")
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


def pass_key(key: str, n: int) -> str:
    """Store key of a network's timing in pass `n` (kind `PASS_KIND`)."""
    return f"{key}#pass{n}"


def measure_subnets(sess: DeviceSession, subnets: Sequence[Subnet], stage_names: tuple[str, ...],
                    guard: Guard | None = None, chunk: int = 5, remeasure: int = 2, passes: int = 1,
                    seed: int = 0) -> dict[str, float]:
    """Measure each subnet this device has not measured yet (`chunk` at a time, each chunk after the guard
    found the device quiet, again while the guard finds it disturbed after the chunk, up to `remeasure`
    times: the last timing of a network is the one kept); return subnet_key -> latency_ms of all measured
    ones (failures are in the store's failures table).

    With `passes` > 1 every subnet is timed once per pass, each pass in its own seeded order (kind
    `PASS_KIND`, key `pass_key`; a pass already stored is not timed again, so a stopped run resumes), and
    its network row is its median pass (`info.pass_ms` holds every pass): on a shared host the same network
    timed minutes apart moves by several percent, so one timing is not a measurement of it."""
    from nas.export import export_subnet  # torch and the converters load only once a device is ready

    if passes < 1:
        raise ValueError("passes must be >= 1")
    summary = Summary(serial=sess.target.serial, total=len(subnets) * passes)
    kind = KIND if passes == 1 else PASS_KIND
    done = sess.measured(kind)
    jobs = ([(s, subnet_key(s)) for s in subnets] if passes == 1 else
            [(s, pass_key(subnet_key(s), n)) for n in range(passes)
             for s in random.Random(seed + n).sample(list(subnets), len(subnets))])
    todo = [(s, k) for s, k in jobs if k not in done]
    convert = partial(export_subnet, fmt=sess.job.run.model_format)
    workers = sess.job.settings.export_workers
    if workers > 1 and len(todo) > 1:  # convert everything first, so measuring runs on a quiet host
        prefetch(list(dict.fromkeys(s for s, _ in todo)), convert, subnet_key, workers,
                 desc=f"{summary.serial} export networks")
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"{summary.serial} networks"
              + (f" ({passes} passes)" if passes > 1 else ""), unit="net", dynamic_ncols=True) as bar:
        def measure(part: list[tuple[Subnet, str]], again: bool) -> None:
            measure_models(sess, part, kind, lambda j: j[1], lambda j: convert(j[0]), summary, bar, None,
                           lambda j: {"subnet": j[0].to_dict(stage_names)}, prefetched=True, replace=again)
        in_guarded_chunks(sess, todo, measure, bar, guard, chunk, remeasure)
    if passes > 1:
        _keep_median_passes(sess, subnets, passes)
    measured = sess.measured(KIND)
    return {subnet_key(s): measured[subnet_key(s)] for s in subnets if subnet_key(s) in measured}


def pass_timings(sess: DeviceSession, subnets: Sequence[Subnet], passes: int) -> dict[str, dict[int, float]]:
    """subnet_key -> {pass: ms} of its stored pass timings (a pass that failed is missing; no pass, no entry)."""
    got = sess.measured(PASS_KIND)
    out = {subnet_key(s): {n: got[k] for n in range(passes) if (k := pass_key(subnet_key(s), n)) in got}
           for s in subnets}
    return {k: v for k, v in out.items() if v}


def keep_median_pass(sess: DeviceSession, key: str, by_pass: dict[int, float]) -> float:
    """The network row of `key`: a copy of its median pass (the lower median of an even count: a real timing
    with its own samples), with every pass's ms in `info.pass_ms` (in pass order). Returns its ms."""
    r = sess.job.run
    ranked = sorted(by_pass, key=by_pass.__getitem__)
    median_pass = ranked[(len(ranked) - 1) // 2]
    sess.store.copy(sess.device_id, r.store_runner, r.backend, r.threads, (PASS_KIND, pass_key(key, median_pass)),
                    (KIND, key), {"pass_ms": [by_pass[n] for n in sorted(by_pass)], "passes": len(by_pass),
                                  "median_pass": median_pass}, sess.run_id)
    return by_pass[median_pass]


def _keep_median_passes(sess: DeviceSession, subnets: Sequence[Subnet], passes: int) -> None:
    for key, by_pass in pass_timings(sess, subnets, passes).items():
        keep_median_pass(sess, key, by_pass)
