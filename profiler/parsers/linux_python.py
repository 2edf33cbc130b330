"""Parser of device_scripts/linux_runner.py output (one JSON line)."""
from __future__ import annotations

import json

from profiler.errors import ParseError, RunnerError


def parse_linux_runner_output(text: str) -> dict:
    """Return the runner's JSON object; raise on an error report, missing or invalid samples."""
    line = next((ln for ln in reversed(text.strip().splitlines()) if ln.lstrip().startswith("{")), None)
    if line is None:
        raise ParseError(f"no JSON result in runner output: {text.strip()[-300:]!r}")
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise ParseError(f"runner output is not valid JSON: {line[:200]!r}") from e
    if "error" in data:
        raise RunnerError(f"runner failed on the device: {data['error']}")
    samples = data.get("samples_us")
    if not isinstance(samples, list) or not samples:
        raise ParseError("runner output has no samples_us")
    if any(not isinstance(s, (int, float)) or s <= 0 for s in samples):
        raise ParseError("runner output has non-positive or non-numeric samples")
    return data


def parse_linux_runner_batch(text: str, models: list[str]) -> list[dict | Exception]:
    """One result per model of a several-model run, in `models`' order: the runner's JSON object, or the
    ParseError/RunnerError that model's line (or its absence) amounts to."""
    lines: dict[str, str] = {}
    for ln in text.splitlines():
        ln = ln.strip()
        if ln.startswith("{"):
            try:
                lines[json.loads(ln)["model"]] = ln
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # judged below: its model has no line
    out: list[dict | Exception] = []
    for m in models:
        if m not in lines:
            out.append(ParseError(f"no JSON result for {m} in runner output: {text.strip()[-300:]!r}"))
            continue
        try:
            out.append(parse_linux_runner_output(lines[m]))
        except (ParseError, RunnerError) as e:
            out.append(e)
    return out
