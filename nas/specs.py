"""A subnet from what a user types: a released name, 'min', 'max', a JSON file or a JSON string."""
from __future__ import annotations

import json
from pathlib import Path

from nas.searchspace import SearchSpace
from nas.subnet import Subnet


def resolve_subnet(space: SearchSpace, spec: str) -> Subnet:
    """The subnet `spec` names; raises ValueError (OSError for an unreadable file) with a one-line message.

    JSON is a subnet's own form or a document holding it under "subnet" (what `nas.space --subnet`
    and `--sample` print)."""
    if spec == "min":
        return space.min_subnet()
    if spec == "max":
        return space.max_subnet()
    if spec in space.released:
        return space.released[spec]
    # a JSON string is never a path (a long one would make is_file() fail with "file name too long")
    is_file = not spec.lstrip().startswith("{") and (spec.endswith(".json") or Path(spec).is_file())
    text = Path(spec).read_text() if is_file else spec
    if not is_file and not text.lstrip().startswith("{"):
        raise ValueError(f"unknown subnet {spec!r}; released: {list(space.released)}, or 'min', 'max', JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        what = f"subnet file {spec}" if is_file else "the subnet string"
        raise ValueError(f"{what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    if isinstance(data, dict) and "subnet" in data:
        data = data["subnet"]
    if not isinstance(data, dict):
        raise ValueError(f"subnet {spec!r}: expected a JSON object, got {type(data).__name__}")
    return space.from_dict(data)
