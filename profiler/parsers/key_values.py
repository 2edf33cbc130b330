"""Parse the ``key=value`` output of the scripts in ``device_scripts/``.

One pair per line; the value is the rest of the line (it may hold spaces, e.g.
``ro.product.model=Pixel 6 Pro``). Blank lines and ``#`` comments are skipped.
``bench_loop.sh`` additionally wraps each run's raw output in ``@@@ begin run=N`` /
``@@@ end run=N`` markers and reports ``run=N rc=R`` after each run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from profiler.errors import ParseError

__all__ = ["parse_key_values", "BenchLoopRun", "parse_bench_loop_output"]

_PAIR = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)=(.*)$")
_BEGIN = re.compile(r"^@@@ begin run=(\d+)$")
# The binary's last line may lack a newline, so the end marker can trail other text.
_END = re.compile(r"^(.*?)@@@ end run=(\d+)$")
_RUN_RC = re.compile(r"^run=(\d+) rc=(-?\d+)$")


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _add_pair(result: dict[str, str], line: str, lineno: int) -> None:
    match = _PAIR.match(line)
    if match is None:
        raise ParseError(f"line {lineno} is not key=value: {line!r}")
    key, value = match.group(1), match.group(2)
    if key in result:
        raise ParseError(f"line {lineno} repeats key {key!r}: {line!r}")
    result[key] = value


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines to a dict; raises ParseError on a malformed or repeated line."""
    result: dict[str, str] = {}
    for lineno, raw in enumerate(_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        _add_pair(result, line, lineno)
    return result


@dataclass(frozen=True)
class BenchLoopRun:
    """One repetition of ``bench_loop.sh``: its exit status and its raw output."""

    index: int
    rc: int
    output: str


def parse_bench_loop_output(text: str) -> tuple[dict[str, str], list[BenchLoopRun]]:
    """Split ``bench_loop.sh`` output into its header pairs and the per-run outputs."""
    header: dict[str, str] = {}
    outputs: dict[int, str] = {}
    runs: list[BenchLoopRun] = []
    current: int | None = None
    body: list[str] = []
    for lineno, raw in enumerate(_lines(text), start=1):
        if current is not None:
            end = _END.match(raw)
            if end and int(end.group(2)) == current:
                if end.group(1):
                    body.append(end.group(1))
                outputs[current] = "\n".join(body)
                current, body = None, []
            else:
                body.append(raw)
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        begin = _BEGIN.match(line)
        if begin:
            current = int(begin.group(1))
            continue
        rc = _RUN_RC.match(line)
        if rc:
            index = int(rc.group(1))
            if index not in outputs:
                raise ParseError(f"line {lineno}: run={index} reported without its output block")
            runs.append(BenchLoopRun(index, int(rc.group(2)), outputs[index]))
            continue
        _add_pair(header, line, lineno)
    if current is not None:
        raise ParseError(f"output of run={current} is not terminated (script killed?)")
    return header, runs
