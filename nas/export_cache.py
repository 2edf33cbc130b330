"""Size cap for the export cache: least recently used files go first, never those the running command uses.

Whole networks take 30-60 MB each as TFLite, so without a cap many `predictor.validate` runs grow the
cache to tens of GB (it once filled this machine's disk mid-run). A cache hit refreshes the file's mtime,
so mtime orders files by last use. A file used since the current command started (its top process sets
`SINCE_ENV`; spawned export workers inherit it) or within `GRACE_S` is never evicted: another command
running beside this one may be about to time it. The cap is therefore soft while one command alone
needs more than it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

MAX_GB_ENV = "MOBILEVIT_NAS_CACHE_MAX_GB"
SINCE_ENV = "MOBILEVIT_NAS_CACHE_SINCE"
DEFAULT_MAX_GB = 20.0
GRACE_S = 3600.0
CHECK_EVERY_S = 30.0  # a full-LUT run converts 3,073 blocks: one directory scan per conversion is waste

_last_check = -float("inf")


def max_bytes() -> int | None:
    """The cap from `$MOBILEVIT_NAS_CACHE_MAX_GB` (default 20; 0 or less: no cap)."""
    raw = os.environ.get(MAX_GB_ENV)
    if raw is None or raw.strip() == "":
        gb = DEFAULT_MAX_GB
    else:
        try:
            gb = float(raw)
        except ValueError:
            raise ValueError(f"${MAX_GB_ENV} must be a number of GB (0: no cap), got {raw!r}") from None
    return None if gb <= 0 else int(gb * 2**30)


def command_start() -> float:
    """When the command that owns this process started (set once by its top process, inherited by workers)."""
    raw = os.environ.setdefault(SINCE_ENV, repr(time.time()))
    try:
        return float(raw)
    except ValueError:
        os.environ[SINCE_ENV] = repr(time.time())
        return float(os.environ[SINCE_ENV])


def touch(path: Path) -> None:
    """Mark a cache hit as used now (the file may vanish under a concurrent eviction: then nothing to mark)."""
    with contextlib.suppress(OSError):
        os.utime(path)


@dataclass(frozen=True)
class Eviction:
    removed_files: int
    removed_bytes: int
    kept_bytes: int


def evict(dirs: Sequence[Path], cap_bytes: int, protect_after: float) -> Eviction:
    """Delete the least recently used files directly in `dirs` (the cache's per-format folders; nothing
    else there is touched) until they hold at most `cap_bytes`, sparing files whose mtime is at or after
    `protect_after`."""
    files: list[tuple[float, int, Path]] = []
    for p in (f for d in dirs if d.is_dir() for f in d.iterdir()):
        with contextlib.suppress(OSError):  # a file removed or renamed meanwhile
            st = p.stat()
            if stat.S_ISREG(st.st_mode) and not p.name.endswith(".tmp"):
                files.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in files)
    removed = removed_bytes = 0
    for mtime, size, p in sorted(files, key=lambda f: f[0]):
        if total <= cap_bytes or mtime >= protect_after:
            break
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed += 1
            removed_bytes += size
        total -= size
    if removed:
        log.info("export cache: evicted %d least recently used files (%.1f GB) to stay under %.1f GB",
                 removed, removed_bytes / 2**30, cap_bytes / 2**30)
    return Eviction(removed, removed_bytes, total)


def after_write(dirs: Sequence[Path]) -> Eviction | None:
    """Called after a conversion wrote into one of `dirs`: enforce the cap, at most every CHECK_EVERY_S."""
    global _last_check
    cap = max_bytes()
    now = time.time()
    if cap is None or now - _last_check < CHECK_EVERY_S:
        return None
    _last_check = now
    return evict(dirs, cap, protect_after=min(command_start(), now - GRACE_S))
