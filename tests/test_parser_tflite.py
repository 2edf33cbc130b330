"""Parser for TFLite benchmark_model output, tested on captured outputs in tests/data."""
from __future__ import annotations

from pathlib import Path

import pytest

from profiler.errors import ParseError, ProfilerError
from profiler.parsers import (
    BenchmarkResult,
    LoopStats,
    parse_benchmark_output,
    parse_loop_stats,
    strip_log_prefix,
)

DATA = Path(__file__).parent / "data" / "tflite_benchmark"
REL = 1e-6


def load(name: str) -> str:
    return (DATA / name).read_text()


def parse(name: str) -> BenchmarkResult:
    return parse_benchmark_output(load(name))


# ------------------------------------------------------------------ loop stats lines


def test_loop_stats_full_line() -> None:
    s = parse_loop_stats("count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929")
    assert s.count == 50
    assert s.first_us == pytest.approx(79449)
    assert s.curr_us == pytest.approx(81350)
    assert s.min_us == pytest.approx(77385)
    assert s.max_us == pytest.approx(88213)
    assert s.avg_us == pytest.approx(79732)
    assert s.std_us == pytest.approx(1929)
    assert s.median_us is None


def test_loop_stats_all_same_gives_equal_values_and_zero_std() -> None:
    s = parse_loop_stats("INFO: count=5 curr=12(all same)")
    assert s == LoopStats(5, 12.0, 12.0, 12.0, 12.0, 12.0, 0.0)


def test_loop_stats_single_run_without_all_same_marker() -> None:
    s = parse_loop_stats("count=1 curr=3512391")
    assert s.count == 1
    assert s.avg_us == pytest.approx(3512391) and s.std_us == 0.0


def test_loop_stats_scientific_notation_and_percentiles() -> None:
    s = parse_loop_stats(
        "count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798 "
        "p5=2760012 median=2941230 p95=3120001"
    )
    assert s.avg_us == pytest.approx(2.95034e6, rel=REL)
    assert s.p5_us == pytest.approx(2760012)
    assert s.median_us == pytest.approx(2941230)
    assert s.p95_us == pytest.approx(3120001)


def test_loop_stats_empty_loop() -> None:
    assert parse_loop_stats("count=0") == LoopStats(0, None, None, None, None, None, None)


def test_loop_stats_old_field_order() -> None:
    s = parse_loop_stats("curr=2101 count=459 min=2056 max=2656 avg=2177.1 std=124")
    assert s.count == 459 and s.avg_us == pytest.approx(2177.1) and s.first_us is None


@pytest.mark.parametrize(
    "line",
    [
        "first=1 curr=2",  # no count
        "count=5 curr=12",  # several runs but neither avg nor (all same)
        "count=5 first=1 curr=2 min=1 avg=2",  # max/std missing
        "count=5 first=1 curr=2 min=10 max=20 avg=50 std=1",  # avg outside [min, max]
    ],
)
def test_loop_stats_malformed_raise(line: str) -> None:
    with pytest.raises(ParseError):
        parse_loop_stats(line)


@pytest.mark.parametrize(
    "line",
    [
        "INFO: count=3",
        "I tflite  : count=3",
        "01-15 10:23:41.671  8123  8140 I tflite  : count=3",
        "I/tflite  ( 8123): count=3",
        "I0115 10:23:45.678901  1234 benchmark_model.cc:201] count=3",
        "INFO: [benchmark_litert_model.h:94] count=3",
        "count=3",
    ],
)
def test_strip_log_prefix(line: str) -> None:
    assert strip_log_prefix(line) == "count=3"


# ------------------------------------------------------------------ whole outputs


def test_current_format_cpu_one_thread() -> None:
    r = parse("current_cpu_1thread.txt")
    assert r.init_us == pytest.approx(38467)
    assert r.first_inference_us == pytest.approx(90211)
    assert r.warmup_avg_us == pytest.approx(83235)
    assert r.inference_avg_us == pytest.approx(79760.9, rel=REL)
    assert r.warmup is not None and r.warmup.count == 7
    assert r.warmup.avg_us == pytest.approx(83235)
    assert r.inference is not None and r.inference.count == 50
    assert r.inference.std_us == pytest.approx(1929)
    assert r.memory_init_mb == pytest.approx(3.10938, rel=REL)
    assert r.memory_overall_mb == pytest.approx(10.1992, rel=REL)
    assert r.peak_memory_mb == pytest.approx(14.4531, rel=REL)
    assert r.model_size_mb == pytest.approx(5.06372, rel=REL)
    assert r.params["Num threads"] == "1"
    assert r.params["Graph"] == "/data/local/tmp/mobilevit_xxs.tflite"
    assert r.raw_samples_us is None


def test_older_summary_and_memory_formats() -> None:
    r = parse("older_format.txt")
    assert r.init_us == pytest.approx(38467)
    assert r.warmup_avg_us == pytest.approx(83235)
    assert r.inference_avg_us == pytest.approx(79760.9, rel=REL)
    # The old summary has no "First inference": it comes from the warm-up loop.
    assert r.first_inference_us == pytest.approx(90211)
    assert r.memory_init_mb == pytest.approx(3.10938, rel=REL)
    assert r.memory_overall_mb == pytest.approx(10.1992, rel=REL)
    assert r.params["Use nnapi"] == "0"


def test_oldest_no_stats_summary() -> None:
    r = parse("old_no_stats.txt")
    assert r.inference_avg_us == pytest.approx(121604)
    assert r.init_us == pytest.approx(3981)
    assert r.warmup is not None and r.warmup.count == 1
    assert r.first_inference_us == pytest.approx(131207)
    assert r.inference is not None and r.inference.count == 50
    assert r.memory_init_mb is None and r.memory_overall_mb is None


def test_all_same_loop() -> None:
    r = parse("all_same.txt")
    assert r.inference == LoopStats(5, 12.0, 12.0, 12.0, 12.0, 12.0, 0.0)
    assert r.warmup is not None and r.warmup.count == 1 and r.warmup.avg_us == pytest.approx(31)
    assert r.inference_avg_us == pytest.approx(12)


def test_scientific_notation() -> None:
    r = parse("scientific_avg.txt")
    assert r.inference_avg_us == pytest.approx(1.01013e6, rel=REL)
    assert r.warmup_avg_us == pytest.approx(1.18765e6, rel=REL)
    assert r.inference is not None and r.inference.avg_us == pytest.approx(1.01013e6, rel=REL)


def test_logcat_prefixed_output() -> None:
    r = parse("logcat_threadtime.txt")
    assert r.inference_avg_us == pytest.approx(28941.7, rel=REL)
    assert r.init_us == pytest.approx(29784)
    assert r.warmup is not None and r.warmup.count == 17
    assert r.inference is not None and r.inference.count == 50
    assert r.params["Num threads"] == "4"


def test_empty_warmup_loop_gives_none_not_zero() -> None:
    r = parse("warmup_skipped_nan.txt")
    assert r.warmup is not None and r.warmup.count == 0
    assert r.first_inference_us is None
    assert r.warmup_avg_us is None
    assert r.inference_avg_us == pytest.approx(1462.35, rel=REL)


# ------------------------------------------------------------------ extras


def test_gpu_delegate_output_with_op_profile_tables() -> None:
    # Op-profiling tables are not read, and do not disturb the timings around them.
    r = parse("gpu_delegate.txt")
    assert r.init_us == pytest.approx(615117)
    assert r.inference_avg_us == pytest.approx(1251.34, rel=REL)
    assert r.params["Use gpu"] == "1"


def test_raw_samples_line() -> None:
    text = (
        "Inference timings in us: Init: 100, First inference: 30, Warmup (avg): 30, Inference (avg): 20\n"
        "raw_samples_us: 19.5, 20.5, 20\n"
    )
    r = parse_benchmark_output(text)
    assert r.raw_samples_us == pytest.approx([19.5, 20.5, 20.0])


# ------------------------------------------------------------------ failures raise, never 0


def test_model_not_found_raises_with_first_error_line() -> None:
    with pytest.raises(ParseError, match=r"Could not open '/data/local/tmp/block_k5_e6_c64.tflite'"):
        parse("error_model_not_found.txt")


def test_unconsumed_flags_raise_naming_the_flags() -> None:
    with pytest.raises(ParseError) as info:
        parse("unconsumed_flags.txt")
    message = str(info.value)
    assert "--report_peak_memory_footprint=true" in message
    assert "--memory_footprint_check_interval_ms=20" in message


def test_failed_invoke_raises_even_with_loop_stats() -> None:
    with pytest.raises(ParseError, match="CL_OUT_OF_RESOURCES"):
        parse("warmup_failed.txt")


def test_crash_without_timings_raises() -> None:
    with pytest.raises(ParseError, match="Segmentation fault"):
        parse("segfault.txt")


def test_benchmarking_failed_after_summary_raises() -> None:
    text = load("current_cpu_1thread.txt").replace(
        "INFO: Note:", "ERROR: Node number 3 (CONV_2D) failed to invoke.\nERROR: Benchmarking failed.\nINFO: Note:"
    )
    with pytest.raises(ParseError, match="Node number 3"):
        parse_benchmark_output(text)


@pytest.mark.parametrize("text", ["", "STARTING!\nLoaded model /x.tflite\n", "\n\n"])
def test_no_timing_raises_saying_what_is_missing(text: str) -> None:
    with pytest.raises(ParseError, match="no inference timing found"):
        parse_benchmark_output(text)


def test_nan_inference_raises() -> None:
    text = "Inference timings in us: Init: 100, First inference: 0, Warmup (avg): nan, Inference (avg): nan"
    with pytest.raises(ParseError, match="nan"):
        parse_benchmark_output(text)


def test_two_runs_in_one_text_raise() -> None:
    text = load("current_cpu_1thread.txt")
    with pytest.raises(ParseError):
        parse_benchmark_output(text + text)


def test_summary_disagreeing_with_loop_raises() -> None:
    text = load("current_cpu_1thread.txt").replace("Inference (avg): 79760.9", "Inference (avg): 83235")
    with pytest.raises(ParseError, match="disagrees"):
        parse_benchmark_output(text)


def test_parse_error_is_a_profiler_error() -> None:
    assert issubclass(ParseError, ProfilerError)


@pytest.mark.parametrize("path", sorted(DATA.glob("*.txt")), ids=lambda p: p.name)
def test_every_sample_parses_or_raises_parse_error(path: Path) -> None:
    try:
        r = parse_benchmark_output(path.read_text())
    except ParseError:
        return
    assert r.inference_avg_us > 0
    assert r.init_us > 0
