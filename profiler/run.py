"""`python -m profiler.run`: measure the blocks of a search space on devices and store every result.

Also the function `profile(ProfileRequest)` for code that profiles (the quickstart). This module is
an application: it wires the predictor's sampler into the profiler as the `--budget` block chooser.
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from nas.blocks import BlockCfg
from nas.registry import create_space, list_spaces
from nas.searchspace import SearchSpace
from nas.specs import resolve_subnet
from predictor.lutfill import subnet_weights
from predictor.sampler import choose
from profiler.adaptive import MeasureBatch, profile_adaptive
from profiler.errors import ProfilerError
from profiler.measure_args import add_measure_arguments, measure_settings_from_args, positive_int
from profiler.plan import candidate_blocks
from profiler.prefetch import default_workers
from profiler.session import ProfileJob, Summary, profile_device
from profiler.settings import MeasureSettings
from profiler.store import DEFAULT_STORE, Store
from profiler.targets import Target, adb_client, list_devices, open_target

log = logging.getLogger("profiler.run")
PICKS = ("adaptive", "random")


@dataclass(frozen=True)
class ProfileRequest:
    """What to measure, where, and how."""

    serials: tuple[str | None, ...] = (None,)  # None: $ANDROID_SERIAL, else the single attached device
    space: str = "elasticvit"
    settings: MeasureSettings = MeasureSettings()
    store: Path = DEFAULT_STORE
    budget: int | None = None  # None: every block (of the space, or of `subnets`)
    pick: str = "adaptive"  # with a budget: the predictor's sampler, or a seeded random pick
    subnets: tuple[str, ...] = ()  # specs (released name, min, max, JSON): measure exactly their blocks

    def __post_init__(self) -> None:
        if self.pick not in PICKS:
            raise ValueError(f"pick = {self.pick!r} is not allowed; allowed: {list(PICKS)}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget {self.budget} must be >= 1")
        if self.subnets and self.budget is not None:
            raise ValueError("--subnet measures exactly the blocks of the given subnets; drop --budget")


def sampler_chooser(space: SearchSpace, blocks: Sequence[BlockCfg], budget: int, measure: MeasureBatch,
                    seed: int) -> None:
    """The predictor's sampler as `--budget`'s chooser: coverage first, then where its models disagree."""
    weights = subnet_weights(space, list(blocks), random.Random(seed))
    choose(blocks, budget, measure, np.random.default_rng(seed), weights=weights)


def prepare(req: ProfileRequest) -> tuple[SearchSpace, list[ProfileJob], list[Target]]:
    """Check everything before measuring (one-line errors): space, store, devices, subnets."""
    space = create_space(req.space)
    Store(req.store).close()  # fail early on a corrupt or read-only store
    # Resolve every device first: unknown, offline, unauthorized fail here in one line.
    targets = [open_target(serial) for serial in req.serials]
    blocks = tuple(candidate_blocks(space, [resolve_subnet(space, spec) for spec in req.subnets]))
    adaptive = req.budget is not None and req.pick == "adaptive"
    jobs = [ProfileJob(t.serial, () if adaptive else blocks, req.settings, req.store, req.budget, i)
            for i, t in enumerate(targets)]
    return space, jobs, targets


def profile(req: ProfileRequest, stop: threading.Event | None = None) -> list[Summary]:
    """Profile every device of `req` (in parallel); raises ProfilerError/ValueError before measuring."""
    space, jobs, targets = prepare(req)
    stop = stop or threading.Event()
    adaptive = req.budget is not None and req.pick == "adaptive"
    work = partial(profile_adaptive, space=space, budget=req.budget, chooser=sampler_chooser) if adaptive \
        else profile_device
    if len(jobs) == 1:
        return [work(jobs[0], stop=stop, target=targets[0])]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(work, j, stop=stop, target=t) for j, t in zip(jobs, targets)]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            stop.set()
            raise


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m profiler.run", description=__doc__.split("\n\n")[0],
                                 epilog="Exit codes: 0 all measured; 1 a device stopped (re-run to resume); "
                                        "2 bad input or device not usable; 3 finished, but some blocks failed "
                                        "(their errors are in the store's failures table).")
    ap.add_argument("--serial", action="append", help="device serial (repeat for several; 'local' = this host "
                    "without adb); default: $ANDROID_SERIAL, else the single attached device")
    ap.add_argument("--all-devices", action="store_true", help="profile every attached device in parallel")
    ap.add_argument("--space", default="elasticvit", help=f"search space: {list_spaces()}")
    ap.add_argument("--budget", type=positive_int, help="measure this many blocks in all (default: every block)")
    ap.add_argument("--subnet", action="append", default=[], metavar="SPEC",
                    help="measure only the blocks these subnets run (repeatable): a released name (S1), min, max, "
                         "or a subnet JSON file/string")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE, help="SQLite measurement store")
    ap.add_argument("--pick", choices=PICKS, default="adaptive",
                    help="with --budget: the predictor's sampler (coverage, then where it is least certain) "
                         "or a seeded random pick")
    add_measure_arguments(ap, export_workers=default_workers())
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def resolve_serials(args: argparse.Namespace) -> tuple[str | None, ...]:
    if args.all_devices:
        devs = [s for s, state in list_devices(adb_client()) if state == "device"]
        if not devs:
            raise ProfilerError("--all-devices: no device in state 'device' is attached")
        return tuple(devs)
    return tuple(args.serial) if args.serial else (None,)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    try:
        req = ProfileRequest(resolve_serials(args), args.space, measure_settings_from_args(args), args.store,
                             args.budget, args.pick, tuple(args.subnet))
        summaries = profile(req, stop)
    except KeyboardInterrupt:
        stop.set()
        print("interrupted: every finished block is stored; run the same command again to resume", file=sys.stderr)
        return 130
    except (ProfilerError, ValueError, OSError) as e:  # raised before anything was measured
        print(f"error: {e}", file=sys.stderr)
        return 2
    return report(summaries)


def report(summaries: list[Summary]) -> int:
    for s in summaries:
        if s.error and not (s.measured or s.skipped or s.failed):
            continue  # nothing happened on that device: the error line below says it all
        print(s.line())
        for f in s.failures[:5]:
            print(f"  failed: {f}")
        if len(s.failures) > 5:
            print(f"  ... {len(s.failures) - 5} more failures in the store's failures table")
    if any(s.error for s in summaries):
        for s in summaries:
            if s.error:
                print(f"error: {s.serial}: {s.error}", file=sys.stderr)
        # a store that cannot be written, or a device that cannot be used, is not fixed by re-running
        return 2 if any(s.unusable for s in summaries) else 1
    return 3 if any(s.failed for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
