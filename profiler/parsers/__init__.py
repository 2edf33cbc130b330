"""Pure text -> typed-result parsers for tool and device-script outputs (no I/O)."""
from __future__ import annotations

from profiler.parsers.key_values import parse_key_values
from profiler.parsers.linux_python import parse_linux_runner_output
from profiler.parsers.tflite_benchmark import (
    BenchmarkResult,
    LoopStats,
    parse_benchmark_output,
    parse_loop_stats,
    strip_log_prefix,
)

__all__ = [
    "BenchmarkResult",
    "LoopStats",
    "parse_benchmark_output",
    "parse_key_values",
    "parse_linux_runner_output",
    "parse_loop_stats",
    "strip_log_prefix",
]
