"""Profile one device: fingerprint, prepare the runner, measure blocks in a seeded order, store each."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from tqdm import tqdm

from nas.blocks import BlockCfg
from profiler.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceOffline,
    ParseError,
    ProfilerError,
    RunnerError,
    StoreError,
)
from profiler.fingerprint import EnvSnapshot, needs_cooldown, read_env, read_fingerprint
from profiler.plan import pick_budget
from profiler.prefetch import prefetch
from profiler.protocol import BlockResult, measure_batch, measure_model, timed
from profiler.runners import create_runner
from profiler.runners.base import BatchRunner
from profiler.settings import MeasureSettings, ProtocolSettings, RunSettings
from profiler.store import MeasurementRow, Store
from profiler.targets import Target, open_target

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ProfileJob:
    serial: str | None  # how to reach the device; the store files results under its fingerprint
    blocks: tuple[BlockCfg, ...]  # the candidates
    settings: MeasureSettings
    store_path: Path
    budget: int | None = None  # measure this many of `blocks` (a seeded pick; what the device has counts)
    progress_position: int = 0

    @property
    def run(self) -> RunSettings:
        return self.settings.run

    @property
    def protocol(self) -> ProtocolSettings:
        return self.settings.protocol


@dataclass
class Summary:
    serial: str
    total: int = 0
    measured: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    error: str | None = None
    unusable: bool = False  # the error is not fixed by re-running (store not writable, device not usable)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        s = (f"{self.serial}: {self.measured} measured, {self.skipped} already in store, {self.failed} failed "
             f"of {self.total} in {self.seconds:.0f} s")
        return s + (f"; stopped: {self.error}" if self.error else "")


class DeviceSession:
    """The state of one device's profiling: target, store ids, baseline environment."""

    def __init__(self, job: ProfileJob, target: Target | None = None) -> None:
        self.job = job
        self.target = target or open_target(job.serial)
        self.store = Store(job.store_path)
        try:
            self._open()
        except BaseException:
            self.store.close()
            raise

    def _open(self) -> None:
        job = self.job
        self.fingerprint = read_fingerprint(self.target)
        device = self.store.register_device(self.fingerprint.identity(), self.fingerprint.hash, self.target.serial,
                                            self.fingerprint.legacy_hash)
        if device.others_at_serial:
            log.warning("%s now answers as %s, not as the device%s stored under this serial before (%s); their "
                        "measurements are kept apart", self.target.serial, self.fingerprint.describe(),
                        "s" * (len(device.others_at_serial) > 1), ", ".join(device.others_at_serial))
        self.device_id = device.id
        self.runner = create_runner(job.run.runner, **({"binary": job.settings.benchmark_binary}
                                                       if job.run.runner == "tflite-benchmark" else {}))
        self.runner_info = self.runner.prepare(self.target, job.run)
        self.mask = job.run.cpu_mask or self.fingerprint.fastest_cores_mask(job.run.threads)
        self.mask_cores = [i for i in range(self.fingerprint.ncores) if int(self.mask, 16) >> i & 1]
        if not self.mask_cores:
            raise DeviceError(f"--cpu-mask {self.mask} selects none of the {self.fingerprint.ncores} cores of "
                              f"{self.target.serial}")
        self.settings = {"run": job.run.to_dict(), "protocol": job.protocol.to_dict(), "cpu_mask": self.mask,
                         "runner_info": self.runner_info, "fingerprint": self.fingerprint.identity(),
                         "governors": list(self.fingerprint.governors)}
        self.run_id = self.store.start_run(self.device_id, self.settings)
        self.since_cooldown = 0
        self.baseline: EnvSnapshot = read_env(self.target)
        self.store.add_snapshot(self.device_id, self.run_id, "baseline", self.baseline.raw)

    def measured(self, kind: str = "block") -> dict[str, float]:
        """key -> latency_ms of what this device has measured under these run settings (resume, fits)."""
        r = self.job.run
        return self.store.latencies(self.device_id, r.store_runner, r.backend, r.threads, kind)

    def cool_down(self) -> None:
        p = self.job.protocol
        deadline = time.monotonic() + p.cooldown_max_s
        while True:
            now = read_env(self.target)
            self.store.add_snapshot(self.device_id, self.run_id, "batch", now.raw)
            why = needs_cooldown(self.baseline, now, self.mask_cores, p.temp_margin_c, p.freq_drop)
            if why is None:
                return
            if time.monotonic() > deadline:
                log.warning("%s: not back to baseline after %.0f s (%s); going on", self.target.serial,
                            p.cooldown_max_s, why)
                return
            log.info("%s: cooling down: %s", self.target.serial, why)
            time.sleep(2.0)

    def _reconnecting(self, work: Callable[[], R]) -> R:
        """Run `work`; when the device drops mid-way, wait for it, prepare the runner again (a phone that
        rebooted lost its files) and run `work` again, up to the protocol's retries."""
        for attempt in range(1, self.job.protocol.disconnect_retries + 2):
            try:
                if attempt > 1:
                    self.runner.prepare(self.target, self.job.run)
                return work()
            except (DeviceDisconnected, DeviceOffline) as e:
                if attempt > self.job.protocol.disconnect_retries:
                    raise
                log.warning("%s: %s; waiting for it to come back (retry %d)", self.target.serial, e, attempt)
                self.target.reconnect(self.job.protocol.reconnect_s)
        raise AssertionError("unreachable")

    def measure(self, model: Path, export_s: float) -> BlockResult:
        """Measure; when the device drops mid-block, wait for it and measure that block again."""
        return self._reconnecting(lambda: measure_model(self.target, self.runner, model, self.job.run,
                                                        self.job.protocol, self.mask, export_s))

    def measure_batch(self, models: Sequence[Path], export_s: Sequence[float]) -> list[BlockResult | Exception]:
        """`measure` for several models in one device command (runners that can); the same retries."""
        runner = self.runner
        assert isinstance(runner, BatchRunner)
        return self._reconnecting(lambda: measure_batch(self.target, runner, models, self.job.run, self.job.protocol,
                                                        self.mask, export_s))

    def use_run(self, run: RunSettings) -> None:
        """Measure from now on with `run` (e.g. paired with a reference); what is stored records it."""
        self.job = dataclasses.replace(self.job, settings=dataclasses.replace(self.job.settings, run=run))
        self.settings = {**self.settings, "run": run.to_dict()}

    def store_result(self, kind: str, key: str, res: BlockResult, started: float, extra: dict | None = None,
                     replace: bool = False) -> None:
        r = self.job.run
        info = {**res.samples.info, "timings_s": res.timings_s, **(extra or {})}
        self.store.add(MeasurementRow(self.device_id, r.store_runner, r.backend, r.threads, kind, key,
                                      res.stats["median_ms"], res.samples.samples_us, res.stats, res.attempts,
                                      self.settings, info, started, time.time()), self.run_id, replace)

    def record_failure(self, kind: str, key: str, error: str) -> None:
        r = self.job.run
        self.store.add_failure(self.device_id, self.run_id, r.store_runner, r.backend, r.threads, kind, key, error)

    def close(self) -> None:
        self.store.finish_run(self.run_id)
        self.store.close()


class RunStopped(ProfilerError):
    """The run cannot go on (device lost for good, or interrupted); what is measured is stored."""


def measure_models(sess: DeviceSession, items: Sequence[T], kind: str, key_of: Callable[[T], str],
                   convert: Callable[[T], Path], summary: Summary, bar: tqdm, stop: threading.Event | None,
                   extra_of: Callable[[T], dict] | None = None, prefetched: bool = False,
                   replace: bool = False) -> dict[str, float]:
    """Convert (in a pool when asked, unless `prefetched`), measure and store each item (overwriting what
    the store holds for it with `replace`); failures are recorded and skipped. With a runner that can
    (`BatchRunner`), each cool-down batch of `protocol.batch_size` items is measured in one device command.

    Returns key -> latency_ms of the items measured now. Raises RunStopped on a lasting disconnect."""
    job = sess.job
    if job.settings.export_workers > 1 and len(items) > 1 and not prefetched:
        prefetch(items, convert, key_of, job.settings.export_workers, desc=f"{summary.serial} export {kind}s")
    out: dict[str, float] = {}
    spent = {"convert": 0.0, "measure": 0.0}  # shown on the bar: which phase the time goes to
    # A runner that can measures a cool-down batch of models in one device command (one start-up).
    chunk = job.protocol.batch_size if isinstance(sess.runner, BatchRunner) else 1

    def fail(key: str, e: Exception) -> None:
        err = str(e) if isinstance(e, (ParseError, RunnerError)) else f"{type(e).__name__}: {e}"
        summary.failed += 1
        summary.failures.append(f"{key}: {err}")
        sess.record_failure(kind, key, err)

    for i in range(0, len(items), chunk):
        if stop is not None and stop.is_set():
            raise RunStopped("interrupted")
        batch = items[i:i + chunk]
        if sess.since_cooldown + len(batch) > job.protocol.batch_size:
            sess.cool_down()
            sess.since_cooldown = 0
        sess.since_cooldown += len(batch)
        started = time.time()
        ready: list[tuple[T, Path, float]] = []
        for item in batch:
            try:
                model, export_s = timed(partial(convert, item))
            except Exception as e:  # noqa: BLE001 - one broken model (conversion bug) must not stop the run
                fail(key_of(item), e)
                bar.update(1)
            else:
                spent["convert"] += export_s
                ready.append((item, model, export_s))
        if not ready:
            continue
        t_measure = time.perf_counter()
        try:
            results = _measure_ready(sess, [m for _, m, _ in ready], [s for _, _, s in ready], chunk > 1)
        except (DeviceDisconnected, DeviceOffline) as e:
            raise RunStopped(f"{e}; {summary.measured} {kind}s of this run are stored, re-run to resume") from e
        spent["measure"] += time.perf_counter() - t_measure
        for (item, _, _), res in zip(ready, results):
            key = key_of(item)
            if isinstance(res, Exception):
                fail(key, res)
            else:
                sess.store_result(kind, key, res, started, extra_of(item) if extra_of else None, replace)
                summary.measured += 1
                out[key] = res.stats["median_ms"]
            bar.set_postfix_str(f"convert {spent['convert']:.0f} s, measure {spent['measure']:.0f} s", refresh=False)
            bar.update(1)
    return out


def _measure_ready(sess: DeviceSession, models: list[Path], export_s: list[float],
                   batch: bool) -> list[BlockResult | Exception]:
    """Each model's result or error; in one device command when `batch`. A batch command that fails as a whole
    (it timed out, its output is unreadable) is measured again model by model, so one bad model cannot fail the
    others; a lost device or an unwritable store raises."""
    if batch:
        try:
            return sess.measure_batch(models, export_s)
        except (StoreError, DeviceDisconnected, DeviceOffline):
            raise
        except Exception as e:  # noqa: BLE001 - isolated below
            log.warning("%s: measuring %d models in one command failed (%s); measuring them one by one",
                        sess.target.serial, len(models), e)
    return [_measure_one(sess, m, s) for m, s in zip(models, export_s)]


def _measure_one(sess: DeviceSession, model: Path, export_s: float) -> BlockResult | Exception:
    """One model; a broken model (parse error, runner failure, ...) is its result, a lost device raises."""
    try:
        return sess.measure(model, export_s)
    except (StoreError, DeviceDisconnected, DeviceOffline):
        raise
    except Exception as e:  # noqa: BLE001 - one broken model must not stop the run
        return e


def measure_blocks(sess: DeviceSession, cfgs: list[BlockCfg], summary: Summary, bar: tqdm,
                   stop: threading.Event | None) -> dict[str, float]:
    """`measure_models` for blocks of the search space."""
    from nas.export import (
        export_block,  # torch and the converters load only once a device is ready
    )

    return measure_models(sess, cfgs, "block", lambda b: b.key, partial(export_block, fmt=sess.job.run.model_format),
                          summary, bar, stop)


PROBE_KIND = "probe"


def measure_probes(sess: DeviceSession, summary: Summary, stop: threading.Event | None = None) -> dict[str, float]:
    """The device probes (`nas.probes.weight_stream_grid` of the protocol's sizes and rows), timed now: key -> ms
    (stored as kind 'probe'). Timed beside the networks they are used for, not with the blocks: the curve
    moves when a shared cache's other users change. A probe that fails is in the failures table."""
    from nas.export import export_probe  # torch and the converters load only once a device is ready
    from nas.probes import weight_stream_grid

    probes = weight_stream_grid(sess.job.protocol.probe_mb, sess.job.protocol.probe_tokens)
    with tqdm(total=len(probes), desc=f"{summary.serial} probes", unit="model", leave=False, dynamic_ncols=True) as bar:
        return measure_models(sess, probes, PROBE_KIND, lambda p: p.key,
                              partial(export_probe, fmt=sess.job.run.model_format), summary, bar, stop,
                              lambda p: {"weight_mb": p.weight_mb, "tokens": p.tokens}, replace=True)


ANCHOR_KIND = "anchor"


def measure_anchors(sess: DeviceSession, cfgs: Sequence[BlockCfg], summary: Summary) -> dict[str, float]:
    """Blocks the store already holds, timed again now (stored as kind 'anchor', their block rows untouched):
    how far the device's speed has drifted since the blocks were measured. Key -> ms of those measured."""
    from nas.export import export_block  # torch and the converters load only once a device is ready

    with tqdm(total=len(cfgs), desc=f"{summary.serial} anchors", unit="block", leave=False, dynamic_ncols=True) as bar:
        return measure_models(sess, list(cfgs), ANCHOR_KIND, lambda b: b.key,
                              partial(export_block, fmt=sess.job.run.model_format), summary, bar, None, replace=True)


def open_session(job: ProfileJob, target: Target | None, summary: Summary) -> DeviceSession | None:
    try:
        sess = DeviceSession(job, target)
    except ProfilerError as e:
        summary.error = str(e)
        summary.unusable = not isinstance(e, (DeviceDisconnected, DeviceOffline))
        return None
    summary.serial = sess.target.serial
    return sess


def profile_device(job: ProfileJob, stop: threading.Event | None = None, target: Target | None = None) -> Summary:
    """Measure the job's blocks (or its budget of them) that this device has not measured yet."""
    t0 = time.time()
    summary = Summary(serial=job.serial or "?", total=len(job.blocks))
    sess = open_session(job, target, summary)
    if sess is None:
        return summary
    done = sess.measured()
    blocks = pick_budget(job.blocks, job.budget, job.protocol.seed, done)
    summary.total = len(blocks)
    todo = [b for b in blocks if b.key not in done]
    summary.skipped = len(blocks) - len(todo)
    bar = tqdm(total=len(blocks), initial=summary.skipped, desc=summary.serial, unit="block",
               position=job.progress_position, leave=True, dynamic_ncols=True)
    return run_until_stopped(sess, summary, bar, t0, lambda: measure_blocks(sess, todo, summary, bar, stop))


def run_until_stopped(sess: DeviceSession, summary: Summary, bar: tqdm, t0: float,
                      work: Callable[[], object]) -> Summary:
    """Run `work`; a stopped device ends it with the reason in `summary`. Always closes bar and session."""
    try:
        work()
    except RunStopped as e:
        summary.error = str(e)
    except StoreError as e:
        summary.error, summary.unusable = f"{e}; nothing after the last stored block was kept", True
    finally:
        bar.close()
        sess.close()
        summary.seconds = time.time() - t0
    return summary
