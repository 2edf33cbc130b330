"""Published phone LUTs shipped in `measurements/published/<space>/` (see the README there)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

PUBLISHED_DIR = Path(__file__).resolve().parents[1] / "measurements" / "published"


def published_names(space: str = "elasticvit") -> list[str]:
    """Device names with a shipped LUT for `space`, e.g. ['pixel4', 'xiaomi11']."""
    return sorted(p.name.removesuffix(".json.gz") for p in (PUBLISHED_DIR / space).glob("*.json.gz"))


def lut_path(name_or_path: str | Path, space: str = "elasticvit") -> Path:
    """A shipped LUT's file for a device name, or the given path unchanged."""
    shipped = PUBLISHED_DIR / space / f"{name_or_path}.json.gz"
    if not Path(name_or_path).exists() and shipped.exists():
        return shipped
    return Path(name_or_path)


def load_lut(name_or_path: str | Path, space: str = "elasticvit") -> dict[str, float]:
    """key -> ms from a shipped device name or a `.json` / `.json.gz` file. Raises ValueError if malformed."""
    path = lut_path(name_or_path, space)
    if not path.exists():
        known = ", ".join(published_names(space)) or "none"
        raise FileNotFoundError(f"no LUT file {path} and no published LUT named '{name_or_path}' (published: {known})")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not JSON: {e}") from e
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path} is not a non-empty JSON object of key -> ms")
    return data
