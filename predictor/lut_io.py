"""Every LUT file format the project reads or writes, in one place.

- this project's format (`save_lut` / `open_lut`): versioned JSON with each entry's source
  (measured / predicted), the device, backend, space and how the LUT was made (`meta`);
- nn-Meter's published format (`export_nnmeter` / `load_flat`): one flat JSON object, block key -> ms,
  plain or gzipped; the phone LUTs shipped in `measurements/published/<space>/` are read by name
  (`pixel4`, `xiaomi11`; see the README there).

Every key is checked on load: it must parse as a block key (`nas.blocks.parse_key`, which wants its canonical form)
of a block type the space has, and every latency must be a positive finite number of ms. Anything
else, a truncated `.json.gz` included, is a `LutFormatError` naming the file (and the key).
"""
from __future__ import annotations

import functools
import gzip
import json
import math
import os
import secrets
import zlib
from pathlib import Path

from nas.blocks import parse_key
from nas.registry import create_space
from nas.searchspace import SearchSpace
from predictor.lut import SOURCES, Lut

LUT_FORMAT = "mobilevit-nas/lut"
LUT_FORMAT_VERSION = 1
PUBLISHED_DIR = Path(__file__).resolve().parents[1] / "measurements" / "published"
_GZIP_MAGIC = b"\x1f\x8b"


class LutFormatError(ValueError):
    """A LUT file this code cannot read; the message names the file and, where there is one, the key."""


def _space_name(space: str | SearchSpace) -> str:
    return space if isinstance(space, str) else space.name


def published_names(space: str | SearchSpace = "elasticvit") -> list[str]:
    """Device names with a shipped LUT for `space`, e.g. ['pixel4', 'xiaomi11']."""
    return sorted(p.name.removesuffix(".json.gz") for p in (PUBLISHED_DIR / _space_name(space)).glob("*.json.gz"))


def lut_path(name_or_path: str | Path, space: str | SearchSpace = "elasticvit") -> Path:
    """A shipped LUT's file for a device name, or the given path unchanged."""
    shipped = PUBLISHED_DIR / _space_name(space) / f"{name_or_path}.json.gz"
    if not Path(name_or_path).exists() and shipped.exists():
        return shipped
    return Path(name_or_path)


# ---- checks ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _block_types(space: str | SearchSpace) -> frozenset[str] | None:
    """The block types `space` runs; None when the name is not a registered space (keys only parsed)."""
    if isinstance(space, str):
        try:
            space = create_space(space)
        except ValueError:
            return None
    return frozenset(b.type for b in space.enumerate_blocks())


def _check_key(path: Path, key: object, types: frozenset[str] | None, space: str) -> None:
    if not isinstance(key, str):
        raise LutFormatError(f"{path}: key {key!r} is not a string")
    try:
        cfg = parse_key(key)
    except ValueError as e:
        raise LutFormatError(f"{path}: bad block key {key!r}: {e}") from e
    if types is not None and cfg.type not in types:
        raise LutFormatError(f"{path}: key {key!r} is a {cfg.type!r} block, which space {space!r} does not have "
                             f"(its block types: {sorted(types)})")


def _check_ms(path: Path, key: str, ms: object) -> float:
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms <= 0:
        raise LutFormatError(f"{path}: {key} has latency {ms!r}; expected a positive finite number of ms")
    return float(ms)


# ---- reading --------------------------------------------------------------------------------
def _read_json(name_or_path: str | Path, space: str) -> tuple[Path, dict]:
    """(path, non-empty JSON object) of a shipped name or a `.json` / `.json.gz` file."""
    path = lut_path(name_or_path, space)
    if not path.exists():
        known = ", ".join(published_names(space)) or "none"
        raise FileNotFoundError(f"no LUT file {path} and no published LUT named '{name_or_path}' (published: {known})")
    raw = path.read_bytes()
    if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:  # truncated (EOFError), not gzip (BadGzipFile), corrupt
            raise LutFormatError(f"{path}: truncated or corrupt gzip file ({e})") from e
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LutFormatError(f"{path} is not JSON: {e}") from e
    if not isinstance(data, dict) or not data:
        raise LutFormatError(f"{path} is not a non-empty JSON object of key -> ms")
    return path, data


def _flat_from(path: Path, data: dict, space: str | SearchSpace) -> dict[str, float]:
    types, name = _block_types(space), _space_name(space)
    out = {}
    for key, ms in data.items():
        _check_key(path, key, types, name)
        out[key] = _check_ms(path, key, ms)
    return out


def load_flat(name_or_path: str | Path, space: str | SearchSpace = "elasticvit") -> dict[str, float]:
    """key -> ms of a flat nn-Meter LUT (`.json` / `.json.gz`) or a shipped name (`pixel4`), keys checked.

    Raises FileNotFoundError (no such file or name) or LutFormatError (anything else wrong)."""
    name = _space_name(space)
    path, data = _read_json(name_or_path, name)
    if "format" in data:
        raise LutFormatError(f"{path} is a {data['format']!r} file, not a flat key -> ms LUT"
                             + (" (read it with open_lut)" if data["format"] == LUT_FORMAT else ""))
    return _flat_from(path, data, space)


def _field(path: Path, doc: dict, name: str, kind: type) -> object:
    if name not in doc:
        raise LutFormatError(f"{path}: {LUT_FORMAT} file without its {name!r} field")
    if not isinstance(doc[name], kind):
        raise LutFormatError(f"{path}: field {name!r} is {doc[name]!r}, expected a {kind.__name__}")
    return doc[name]


def _lut_from_doc(path: Path, doc: dict, space: str | SearchSpace) -> Lut:
    if doc.get("format") != LUT_FORMAT:
        raise LutFormatError(f"{path}: format {doc.get('format')!r} is not a LUT ({LUT_FORMAT!r})")
    if doc.get("format_version") != LUT_FORMAT_VERSION:
        raise LutFormatError(f"{path}: LUT format version {doc.get('format_version')!r} is not supported "
                             f"(this code reads {LUT_FORMAT_VERSION})")
    lut_space, name = _field(path, doc, "space", str), _space_name(space)
    if lut_space != name:
        raise LutFormatError(f"{path} is a LUT of space {lut_space!r}, not {name!r}")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise LutFormatError(f"{path}: field 'meta' is {meta!r}, expected a dict")
    lut = Lut(_field(path, doc, "device", str), _field(path, doc, "backend", str), lut_space, meta=meta)
    entries = _field(path, doc, "entries", dict)
    if not entries:
        raise LutFormatError(f"{path}: a LUT without entries")
    types = _block_types(space)
    for key, e in entries.items():
        _check_key(path, key, types, name)
        if not isinstance(e, dict) or e.get("source") not in SOURCES:
            raise LutFormatError(f"{path}: entry {key} is {e!r}; expected {{'latency_ms': ms, 'source': one of "
                                 f"{list(SOURCES)}}}")
        lut.set(key, _check_ms(path, key, e.get("latency_ms")), e["source"])
    return lut


def lut_space(name_or_path: str | Path | None, default: str = "elasticvit") -> str:
    """The space a LUT file of this project's format names (a command's default `--space`); `default` for a
    shipped name, a flat LUT, or a file that does not read (opening it later says what is wrong)."""
    if name_or_path is None or not Path(name_or_path).is_file():
        return default
    try:
        _, data = _read_json(name_or_path, default)
    except (LutFormatError, OSError):
        return default
    space = data.get("space") if "format" in data else None
    return space if isinstance(space, str) else default


def open_lut(name_or_path: str | Path, space: str | SearchSpace = "elasticvit") -> Lut:
    """A LUT from this project's format (with sources and meta), a flat nn-Meter `.json`/`.json.gz`,
    or the name of a shipped published LUT (`pixel4`, `xiaomi11`); flat entries count as measured.

    Raises FileNotFoundError (no such file or name) or LutFormatError (anything else wrong)."""
    name = _space_name(space)
    path, data = _read_json(name_or_path, name)
    if "format" in data:  # this project's format (parsed once, here)
        return _lut_from_doc(path, data, space)
    lut = Lut(path.name.split(".")[0], "cpu", name, meta={"source": str(path)})
    for k, v in _flat_from(path, data, space).items():
        lut.set(k, v, "measured")
    return lut


# ---- writing --------------------------------------------------------------------------------
def _write_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a LUT.
    A `.gz` path is gzipped."""
    path = Path(path)
    data = text.encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # created with the umask's mode, like the file it replaces
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_lut(lut: Lut, path: str | Path) -> None:
    """This project's format: versioned JSON with each entry's source, the device, backend, space and meta."""
    doc = {"format": LUT_FORMAT, "format_version": LUT_FORMAT_VERSION, "device": lut.device,
           "backend": lut.backend, "space": lut.space, "meta": lut.meta,
           "entries": {k: {"latency_ms": e.latency_ms, "source": e.source} for k, e in lut.entries.items()}}
    _write_atomic(path, json.dumps(doc, indent=1))


def export_nnmeter(lut: Lut, path: str | Path) -> None:
    """nn-Meter's published format: one flat JSON object, key -> ms (sources and meta are dropped)."""
    _write_atomic(path, json.dumps(lut.flat(), indent=1))
