"""Push a file only when the device's copy differs (by sha256)."""
from __future__ import annotations

from pathlib import Path

from profiler.targets import Target, sha256_file


def push_if_changed(target: Target, local: Path, remote: str, mode: int = 0o644) -> bool:
    """Return True when the file was (re-)pushed."""
    if target.file_sha256(remote) == sha256_file(local):
        return False
    target.push(local, remote, mode=mode)
    return True
