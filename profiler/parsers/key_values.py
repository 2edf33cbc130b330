"""Parse the ``key=value`` output of the scripts in ``device_scripts/``.

One pair per line; the value is the rest of the line (it may hold spaces, e.g.
``ro.product.model=Pixel 6 Pro``). Blank lines and ``#`` comments are skipped.
"""
from __future__ import annotations

import re

from profiler.errors import ParseError

__all__ = ["parse_key_values"]

_PAIR = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)=(.*)$")


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines to a dict; raises ParseError on a malformed or repeated line."""
    result: dict[str, str] = {}
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PAIR.match(line)
        if match is None:
            raise ParseError(f"line {lineno} is not key=value: {line!r}")
        key, value = match.group(1), match.group(2)
        if key in result:
            raise ParseError(f"line {lineno} repeats key {key!r}: {line!r}")
        result[key] = value
    return result
