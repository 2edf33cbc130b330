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
