"""`python -m profiler.run`: measure the blocks of a search space on devices and store every result."""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from nas._registry import create_space, list_spaces
from nas.space import resolve_subnet
from profiler.errors import ProfilerError
from profiler.adaptive import profile_adaptive
from profiler.plan import plan_blocks
from profiler.prefetch import default_workers
from profiler.runners import list_runners
from profiler.session import ProfileJob, Summary, profile_device
from profiler.settings import BACKEND_FORMATS, ProtocolSettings, RunSettings
from profiler.store import DEFAULT_STORE, Store
from profiler.targets import adb_client, list_devices, open_target

log = logging.getLogger("profiler.run")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m profiler.run", description=__doc__,
                                 epilog="Exit codes: 0 all measured; 1 a device stopped (re-run to resume); "
                                        "2 bad input or device not usable; 3 finished, but some blocks failed "
                                        "(their errors are in the store's failures table).")
    ap.add_argument("--serial", action="append", help="device serial (repeat for several; 'local' = this host "
                    "without adb); default: $ANDROID_SERIAL, else the single attached device")
    ap.add_argument("--all-devices", action="store_true", help="profile every attached device in parallel")
    ap.add_argument("--space", default="elasticvit", help=f"search space: {list_spaces()}")
    ap.add_argument("--budget", type=int, help="measure this many blocks in all (default: every block)")
    ap.add_argument("--subnet", action="append", default=[], metavar="SPEC",
                    help="measure only the blocks these subnets run (repeatable): a released name (S1), min, max, "
                         "or a subnet JSON file/string")
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE, help="SQLite measurement store")
    ap.add_argument("--runner", choices=list_runners(), help="default: tflite-benchmark when --benchmark-binary "
                    "is given, else linux-python")
    ap.add_argument("--benchmark-binary", type=Path, help="TFLite benchmark_model for the device's ABI")
    ap.add_argument("--backend", default="cpu", choices=sorted(BACKEND_FORMATS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10, help="warm-up runs per measurement")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per measurement")
    ap.add_argument("--cpu-mask", help="hex taskset mask (default: the fastest cores, read from the device)")
    ap.add_argument("--max-spread", type=float, default=0.10, help="re-measure when (p90-p10)/median exceeds this")
    ap.add_argument("--seed", type=int, default=0, help="seed of the block order and the budget's pick")
    ap.add_argument("--pick", choices=["adaptive", "random"], default="adaptive",
                    help="with --budget: the predictor's sampler (coverage, then where it is least certain) "
                         "or a seeded random pick")
    ap.add_argument("--export-workers", type=int, default=default_workers(),
                    help="convert models in this many processes before measuring (1 = convert as we go)")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def resolve_serials(args: argparse.Namespace) -> list[str | None]:
    if args.all_devices:
        devs = [s for s, state in list_devices(adb_client()) if state == "device"]
        if not devs:
            raise ProfilerError("--all-devices: no device in state 'device' is attached")
        return list(devs)
    return list(args.serial) if args.serial else [None]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        space = create_space(args.space)
        runner = args.runner or ("tflite-benchmark" if args.benchmark_binary else "linux-python")
        run = RunSettings(runner=runner, backend=args.backend, threads=args.threads, warmup_runs=args.warmup,
                          num_runs=args.runs, cpu_mask=args.cpu_mask)
        protocol = ProtocolSettings(max_spread=args.max_spread, seed=args.seed)
        Store(args.store).close()  # fail early, with one line, on a corrupt store
        # Resolve every device before measuring: unknown, offline, unauthorized fail here in one line.
        targets = [open_target(serial) for serial in resolve_serials(args)]
        subnets = [resolve_subnet(space, spec) for spec in args.subnet]
        if subnets and args.budget is not None:
            raise ValueError("--subnet measures exactly the blocks of the given subnets; drop --budget")
        adaptive = args.budget is not None and args.pick == "adaptive"
        jobs = [ProfileJob(t.serial, () if adaptive else tuple(plan_for(space, args, t.serial, run, subnets)), run, protocol,
                           args.store, args.benchmark_binary, i, args.export_workers) for i, t in enumerate(targets)]
    except (ProfilerError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    work = partial(profile_adaptive, space=space, budget=args.budget) if adaptive else profile_device
    try:
        if len(jobs) == 1:
            summaries = [work(jobs[0], stop=stop, target=targets[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                futures = [pool.submit(work, j, stop=stop, target=t) for j, t in zip(jobs, targets)]
                try:
                    summaries = [f.result() for f in futures]
                except KeyboardInterrupt:
                    stop.set()
                    raise
    except KeyboardInterrupt:
        stop.set()
        print("interrupted: every finished block is stored; run the same command again to resume", file=sys.stderr)
        return 130
    except ProfilerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return report(summaries)


def plan_for(space, args: argparse.Namespace, serial: str | None, run: RunSettings, subnets: list) -> list:
    already: set[str] = set()
    if args.budget is not None and serial is not None:
        with Store(args.store) as store:
            already = set(store.latencies(serial, run.runner, run.backend, run.threads))
    return plan_blocks(space, args.budget, args.seed, already, subnets)


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
        return 1
    return 3 if any(s.failed for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
