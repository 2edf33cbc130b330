"""Benchmark runners (registry). Importing this package registers the built-in ones."""
from profiler.runners import linux_python, tflite_benchmark  # noqa: F401
from profiler.runners._registry import create_runner, list_runners, register_runner
from profiler.runners.base import Runner, Samples

__all__ = ["Runner", "Samples", "create_runner", "list_runners", "register_runner"]
