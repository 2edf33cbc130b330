"""Parse the text printed by TFLite's ``benchmark_model`` into typed results.

Pure functions, no I/O; tested on captured outputs in ``tests/data/tflite_benchmark``.
Handles the variants seen across TF 1.x .. LiteRT builds:

* line prefixes: none, ``INFO: ``/``ERROR: ``, logcat (``I tflite  : ``,
  threadtime, brief), glog/absl ``I0115 ... file.cc:12] `` and ``[file.h:94] ``;
* per-loop stats ``count=.. first=.. curr=.. min=.. max=.. avg=.. std=..`` (optionally
  ``p5= median= p95=``), ``count=N curr=X(all same)``, ``count=1 curr=X``, ``count=0``;
* summary ``Inference timings in us: Init: .., First inference: .., Warmup (avg): ..,
  Inference (avg): ..`` and the older ``Average inference timings in us: Warmup: ..,
  Init: .., Inference: ..`` (or ``no stats: ..``);
* memory ``Memory footprint delta from the start of the tool (MB): init= overall=`` and
  the older ``Peak memory footprint (MB): init= overall=``.

Op-profiling tables (``--enable_op_profiling``) are not read: no runner asks for them.

Raw per-run samples are not printed by ``benchmark_model``; runners that have them
(e.g. a Python interpreter loop) may add one line ``raw_samples_us: v1, v2, ...`` and
they land in ``BenchmarkResult.raw_samples_us``.

A failed parse raises ``ParseError``; it never returns a latency of 0.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from profiler.errors import ParseError

__all__ = [
    "LoopStats",
    "BenchmarkResult",
    "parse_benchmark_output",
    "parse_loop_stats",
    "strip_log_prefix",
]

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b"

# Applied in this order; each at most once. Logcat/glog wrap the tool's own
# "INFO: " severity, which may in turn wrap a "[file.cc:12] " source tag.
_PREFIXES = (
    # logcat threadtime: "01-15 10:23:45.678  4321  4330 I tflite  : "
    re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+\S[^:]*?\s*:\s?"),
    # logcat brief: "I/tflite  ( 4321): "
    re.compile(r"^[VDIWEF]/[^(:]*\(\s*\d+\):\s?"),
    # logcat tag: "I tflite  : "
    re.compile(r"^[VDIWEF]\s+[\w.\-]+\s*:\s"),
    # glog / absl: "I0115 10:23:45.678901  1234 file.cc:123] " or "I0000 file.cc:866] "
    re.compile(r"^[IWEF]\d{4}(?:\s+[\d:.]+\s+\d+)?\s+[\w.\-/]+:\d+\]\s?"),
    # TFLITE_LOG severity
    re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG|FATAL):\s"),
    # source tag of newer LiteRT builds: "[benchmark_litert_model.h:94] "
    re.compile(r"^\[[\w.\-/]+:\d+\]\s"),
)

_SUMMARY = re.compile(r"(?:Average inference|Inference) timings in us:\s*(.*)")
_SUMMARY_PAIR = re.compile(
    r"(First inference|Warmup \(avg\)|Inference \(avg\)|Warmup|Init|Inference|no stats)"
    rf":\s*({_NUM})",
    re.IGNORECASE,
)
_SUMMARY_KEYS = {
    "init": "init",
    "first inference": "first",
    "warmup (avg)": "warmup",
    "warmup": "warmup",
    "inference (avg)": "inference",
    "inference": "inference",
    "no stats": "inference",  # TF 1.12-era name of the same average
}
_MEMORY = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
    rf"\s*init=({_NUM})\s+overall=({_NUM})"
)
_PEAK_MEMORY = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*({_NUM})")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\):\s*({_NUM})")
_LOOP_START = re.compile(r"^Running benchmark for\b")
_LOOP_STATS_LINE = re.compile(r"^(?:count|curr)=")
_STAT_TOKEN = re.compile(rf"\b(count|first|curr|min|max|avg|std|p5|median|p95)=({_NUM})")
_UNCONSUMED = re.compile(r"Unconsumed cmdline flags:\s*(.*)")
_PARAM_ECHO = re.compile(r"^([A-Za-z#][^\[\]:]*?)\s*:\s*\[(.*)\]\s*$")
_RAW_SAMPLES = re.compile(r"^raw_samples_us\s*[:=]\s*(.*)$")

_BENCH_FAILED = "Benchmarking failed"
# Words that mark a failure line, used to quote the first one when timings are missing.
_ERROR_LINE = re.compile(
    r"\b(?:error|failed|failure|fatal|could not|cannot|unable to|segmentation fault|"
    r"sigsegv|sigabrt|sigbus|aborted|illegal instruction|bus error|permission denied|"
    r"not found|no such file|terminate called|check failed|killed)\b",
    re.IGNORECASE,
)
# Warnings that appear in successful runs and must not be quoted as the failure.
_BENIGN_ERRORS = ("Failed to get the input model file size",)


@dataclass(frozen=True)
class LoopStats:
    """One ``count=...`` line: statistics of one benchmark loop, in microseconds.

    ``count=0`` (the loop never ran) leaves every statistic None. A loop whose samples
    were all equal (``curr=X(all same)`` or ``count=1``) has min=max=avg=first=curr, std 0.
    """

    count: int
    first_us: float | None
    curr_us: float | None
    min_us: float | None
    max_us: float | None
    avg_us: float | None
    std_us: float | None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None


@dataclass(frozen=True)
class BenchmarkResult:
    """Everything one ``benchmark_model`` run reported. Times in us, memory in MB."""

    init_us: float
    first_inference_us: float | None
    warmup_avg_us: float | None
    inference_avg_us: float
    warmup: LoopStats | None
    inference: LoopStats | None
    memory_init_mb: float | None
    memory_overall_mb: float | None
    raw_samples_us: list[float] | None
    peak_memory_mb: float | None = None
    model_size_mb: float | None = None
    # Parameters echoed after STARTING!, e.g. {"Num threads": "1", "Graph": "/x.tflite"}.
    params: dict[str, str] = field(default_factory=dict)


def strip_log_prefix(line: str) -> str:
    """Remove logcat / glog / ``INFO: `` prefixes so the tool's own text remains."""
    for prefix in _PREFIXES:
        match = prefix.match(line)
        if match:
            line = line[match.end():]
    return line


def _number(text: str) -> float | None:
    """A printed number; nan (printed for averages of empty loops) becomes None."""
    value = float(text)
    return None if math.isnan(value) else value


def parse_loop_stats(line: str) -> LoopStats:
    """Parse one per-loop statistics line (prefixes allowed).

    >>> parse_loop_stats("count=3 curr=12(all same)").avg_us
    12.0
    """
    text = strip_log_prefix(line.strip())
    values: dict[str, float | None] = {}
    for key, raw in _STAT_TOKEN.findall(text):
        if key in values:
            raise ParseError(f"loop stats line repeats {key}=: {line.strip()!r}")
        values[key] = _number(raw)
    count_value = values.get("count")
    if count_value is None or count_value < 0 or count_value != int(count_value):
        raise ParseError(f"loop stats line has no valid count=: {line.strip()!r}")
    count = int(count_value)
    pct = {k: values.get(k) for k in ("p5", "median", "p95")}
    if count == 0:
        return LoopStats(0, None, None, None, None, None, None)
    if values.get("avg") is not None:
        missing = [k for k in ("min", "max", "std") if values.get(k) is None]
        if missing:
            raise ParseError(f"loop stats line lacks {', '.join(missing)}: {line.strip()!r}")
        stats = LoopStats(
            count=count,
            first_us=values.get("first"),
            curr_us=values.get("curr"),
            min_us=values["min"],
            max_us=values["max"],
            avg_us=values["avg"],
            std_us=values["std"],
            p5_us=pct["p5"],
            median_us=pct["median"],
            p95_us=pct["p95"],
        )
        _check_order(stats, line)
        return stats
    curr = values.get("curr")
    if curr is not None and ("(all same)" in text or count == 1):
        return LoopStats(count, curr, curr, curr, curr, curr, 0.0, pct["p5"], pct["median"], pct["p95"])
    raise ParseError(f"loop stats line has neither avg= nor a single repeated value: {line.strip()!r}")


def _check_order(stats: LoopStats, line: str) -> None:
    # avg is printed with 6 significant digits, so allow that much rounding.
    lo, hi, avg = stats.min_us, stats.max_us, stats.avg_us
    assert lo is not None and hi is not None and avg is not None
    slack = 1e-5 * max(abs(hi), 1.0)
    if not (lo - slack <= avg <= hi + slack):
        raise ParseError(f"loop stats are inconsistent (min <= avg <= max fails): {line.strip()!r}")


@dataclass
class _Lines:
    raw: list[str]
    text: list[str]  # prefix-stripped, right-stripped


def _split(text: str) -> _Lines:
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return _Lines(raw, [strip_log_prefix(line).rstrip() for line in raw])


def _first_error_line(lines: _Lines) -> str | None:
    for raw in lines.raw:
        line = raw.strip()
        if _ERROR_LINE.search(line) and not any(b in line for b in _BENIGN_ERRORS):
            return line
    return None


def _last_nonempty(lines: _Lines) -> str:
    for raw in reversed(lines.raw):
        if raw.strip():
            return raw.strip()
    return ""


def _check_unconsumed_flags(lines: _Lines) -> None:
    for line in lines.text:
        match = _UNCONSUMED.search(line)
        if match:
            flags = match.group(1).strip() or "(none named)"
            raise ParseError(
                f"benchmark_model ignored command-line flags it does not understand: {flags} "
                "(its version predates them; the run did not use these settings)"
            )


def _summary(lines: _Lines) -> dict[str, float | None] | None:
    found: list[tuple[str, dict[str, float | None]]] = []
    for line in lines.text:
        match = _SUMMARY.search(line)
        if not match:
            continue
        values: dict[str, float | None] = {}
        for key, raw in _SUMMARY_PAIR.findall(match.group(1)):
            values[_SUMMARY_KEYS[key.lower()]] = _number(raw)
        found.append((line.strip(), values))
    if not found:
        return None
    if len(found) > 1:
        raise ParseError(f"{len(found)} timing summaries found: the text holds more than one run")
    line, values = found[0]
    for key, label in (("inference", "Inference"), ("init", "Init")):
        if key not in values:
            raise ParseError(f"timing summary lacks {label}: {line!r}")
    if values["inference"] is None:
        raise ParseError(f"inference average is nan (no inference run completed): {line!r}")
    if values["init"] is None:
        raise ParseError(f"init time is nan: {line!r}")
    return values


def _loops(lines: _Lines) -> list[LoopStats | None]:
    """Per-loop stats, index 0 = warm-up, 1 = timed runs.

    Each loop announces itself with "Running benchmark for ..." and prints its stats line
    when done; without announcements (trimmed logs) lines are taken in order.
    """
    loops: list[LoopStats | None] = []
    announced = False
    for line in lines.text:
        stripped = line.strip()
        if _LOOP_START.match(stripped):
            announced = True
            loops.append(None)
        elif _LOOP_STATS_LINE.match(stripped):
            stats = parse_loop_stats(stripped)
            if announced:
                if loops[-1] is not None:
                    raise ParseError(f"two stats lines for one benchmark loop: {stripped!r}")
                loops[-1] = stats
            else:
                loops.append(stats)
    if len(loops) > 2:
        raise ParseError(f"{len(loops)} benchmark loops found (expected warm-up and timed runs)")
    return loops


def _memory(lines: _Lines) -> tuple[float | None, float | None, float | None]:
    init = overall = peak = None
    for line in lines.text:
        match = _MEMORY.search(line)
        if match:
            init, overall = _number(match.group(1)), _number(match.group(2))
        match = _PEAK_MEMORY.search(line)
        if match:
            peak = _number(match.group(1))
    return init, overall, peak


def _params(lines: _Lines) -> dict[str, str]:
    params: dict[str, str] = {}
    for line in lines.text:
        if line.startswith("\t") or "timings in us" in line:
            continue
        match = _PARAM_ECHO.match(line.strip())
        if match:
            params[match.group(1).strip()] = match.group(2)
    return params


def _raw_samples(lines: _Lines) -> list[float] | None:
    for line in lines.text:
        match = _RAW_SAMPLES.match(line.strip())
        if match:
            tokens = [t for t in re.split(r"[,\s]+", match.group(1)) if t]
            try:
                samples = [float(t) for t in tokens]
            except ValueError as e:
                raise ParseError(f"raw_samples_us line has a non-number: {line.strip()!r}") from e
            if not samples or any(not math.isfinite(s) or s <= 0 for s in samples):
                raise ParseError(f"raw_samples_us line is empty or has non-positive values: {line.strip()!r}")
            return samples
    return None


# ---------------------------------------------------------------- entry point


def parse_benchmark_output(text: str) -> BenchmarkResult:
    """Parse one ``benchmark_model`` run's stdout+stderr.

    Raises ParseError when the binary ignored flags (``Unconsumed cmdline flags``),
    reported a failure, or printed no inference timing; the message quotes the first
    error line when there is one.
    """
    lines = _split(text)
    _check_unconsumed_flags(lines)
    failed = any(_BENCH_FAILED in line for line in lines.text)
    summary = None if failed else _summary(lines)
    if summary is None:
        error = _first_error_line(lines)
        if failed:
            raise ParseError(f"benchmark_model reported failure: {error!r}")
        if error is not None:
            raise ParseError(f"no inference timing found; the output reports an error: {error!r}")
        raise ParseError(
            "no inference timing found (no 'Inference timings in us' line); "
            f"last output line: {_last_nonempty(lines)!r}"
        )

    loops = _loops(lines)
    warmup = loops[0] if len(loops) > 0 else None
    inference = loops[1] if len(loops) > 1 else None
    inference_avg = summary["inference"]
    assert inference_avg is not None
    if inference is not None and inference.avg_us is not None:
        if not math.isclose(inference.avg_us, inference_avg, rel_tol=1e-3):
            raise ParseError(
                f"timed-loop avg={inference.avg_us} disagrees with summary Inference={inference_avg}: "
                "the stats lines were not matched to their loops"
            )

    first = summary.get("first")
    warmup_avg = summary.get("warmup")
    if warmup is not None and warmup.count == 0:
        # An empty warm-up loop prints First inference: 0 and Warmup: nan.
        first = warmup_avg = None
    elif first is None and warmup is not None:
        first = warmup.first_us

    mem_init, mem_overall, peak = _memory(lines)
    model_size = None
    for line in lines.text:
        match = _MODEL_SIZE.search(line)
        if match:
            model_size = _number(match.group(1))

    return BenchmarkResult(
        init_us=summary["init"],  # type: ignore[arg-type]
        first_inference_us=first,
        warmup_avg_us=warmup_avg,
        inference_avg_us=inference_avg,
        warmup=warmup,
        inference=inference,
        memory_init_mb=mem_init,
        memory_overall_mb=mem_overall,
        raw_samples_us=_raw_samples(lines),
        peak_memory_mb=peak,
        model_size_mb=model_size,
        params=_params(lines),
    )
