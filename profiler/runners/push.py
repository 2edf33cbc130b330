"""Push a file only when the device's copy differs (by sha256); push a paired timing's reference once."""
from __future__ import annotations

from pathlib import Path

from profiler.errors import RunnerError
from profiler.settings import RunSettings
from profiler.targets import Target, remote_path, sha256_file


def push_if_changed(target: Target, local: Path, remote: str, mode: int = 0o644) -> bool:
    """Return True when the file was (re-)pushed."""
    if target.file_sha256(remote) == sha256_file(local):
        return False
    target.push(local, remote, mode=mode)
    return True


def push_reference(target: Target, settings: RunSettings, pushed: dict[tuple[str, str], str]) -> str | None:
    """The paired timing's reference model on the device, or None when `settings` are not paired. Pushed when its
    content changed, once per session (`pushed` remembers it; a runner clears it in prepare())."""
    if settings.reference is None:
        return None
    key = (target.serial, settings.reference)
    if key not in pushed:  # hashing and checking it before every measurement cost more than some measurements
        local = Path(settings.reference)
        if not local.is_file():
            raise RunnerError(f"the paired timing's reference model {local} does not exist")
        pushed[key] = remote_path(target, "reference" + local.suffix)
        push_if_changed(target, local, pushed[key])
    return pushed[key]
