"""The command-line flags of `profiler.settings.MeasureSettings`, defined once for every tool that measures."""
from __future__ import annotations

import argparse
from pathlib import Path

from profiler.runners import list_runners
from profiler.settings import BACKEND_FORMATS, MeasureSettings, ProtocolSettings, RunSettings


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a budget of -5 is an error, not zero work)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def add_measure_arguments(ap: argparse.ArgumentParser, runs: int = 50, export_workers: int = 1) -> None:
    """The run-settings flags, for every command that measures on a device."""
    g = ap.add_argument_group("how to measure")
    g.add_argument("--runner", choices=list_runners(),
                   help="default: tflite-benchmark when --benchmark-binary is given, else linux-python")
    g.add_argument("--benchmark-binary", type=Path, help="TFLite benchmark_model for the device's ABI")
    g.add_argument("--backend", default="cpu", choices=sorted(BACKEND_FORMATS))
    g.add_argument("--threads", type=positive_int, default=1)
    g.add_argument("--warmup", type=int, default=10, help="warm-up runs per measurement")
    g.add_argument("--runs", type=positive_int, default=runs, help="timed runs per measurement")
    g.add_argument("--cpu-mask", help="hex taskset mask (default: the fastest cores, read from the device)")
    g.add_argument("--max-spread", type=float, default=ProtocolSettings.max_spread,
                   help="re-measure when (p90-p10)/median exceeds this")
    g.add_argument("--batch-size", type=positive_int, default=ProtocolSettings.batch_size,
                   help="models between thermal/frequency checks; runners that can (linux-python) measure them in "
                        "one device command, each model in its own process (a crash loses at most this many)")
    g.add_argument("--seed", type=int, default=0, help="seed of the measuring order (and of any random pick)")
    g.add_argument("--probe-mb", type=positive_int, nargs="+", default=list(ProtocolSettings.probe_mb),
                   help="MB of weights of each weight-stream probe (the in-network term's curve)")
    g.add_argument("--probe-tokens", type=positive_int, nargs="+", default=list(ProtocolSettings.probe_tokens),
                   help="rows each weight-stream probe's layers multiply (one curve per row count)")
    g.add_argument("--export-workers", type=positive_int, default=export_workers,
                   help="convert models in this many processes before measuring (1 = convert as we go)")


def measure_settings_from_args(args: argparse.Namespace) -> MeasureSettings:
    """The flags of `add_measure_arguments` as validated settings; raises ValueError on bad values."""
    runner = args.runner or ("tflite-benchmark" if args.benchmark_binary else "linux-python")
    run = RunSettings(runner=runner, backend=args.backend, threads=args.threads, warmup_runs=args.warmup,
                      num_runs=args.runs, cpu_mask=args.cpu_mask)
    return MeasureSettings(run, ProtocolSettings(max_spread=args.max_spread, seed=args.seed, batch_size=args.batch_size,
                                                probe_mb=tuple(args.probe_mb), probe_tokens=tuple(args.probe_tokens)),
                           args.benchmark_binary,
                           args.export_workers)
