"""Pure text -> typed-result parsers for tool and device-script outputs (no I/O)."""
from __future__ import annotations

from profiler.parsers.key_values import BenchLoopRun, parse_bench_loop_output, parse_key_values
from profiler.parsers.tflite_benchmark import (
    BenchmarkResult,
    LoopStats,
    OpProfileRow,
    parse_benchmark_output,
    parse_loop_stats,
    strip_log_prefix,
)

__all__ = [
    "BenchLoopRun",
    "BenchmarkResult",
    "LoopStats",
    "OpProfileRow",
    "parse_bench_loop_output",
    "parse_benchmark_output",
    "parse_key_values",
    "parse_loop_stats",
    "strip_log_prefix",
]
