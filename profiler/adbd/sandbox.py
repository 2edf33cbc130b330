"""Device paths <-> host paths for the loopback device.

Layout of the sandbox root on the host:
    <root>/data/local/tmp   <- device /data/local/tmp
    <root>/sdcard           <- device /sdcard (and /storage/emulated/0)
    <root>/bin              getprop shim, first on the PATH of device shells
    <root>/props.txt        property table read by the shim

Sync paths go through `to_host`. Shell command text is rewritten textually:
every occurrence of a mapped device prefix that stands as a whole path
component (not preceded by a word char, '.', '-' or '/', and followed by '/',
the end, or another character that cannot continue a file name) is replaced by
its host directory. Quoting is not parsed, so a prefix inside a string literal
is rewritten too. Shell output is rewritten back (host dirs -> device paths).
Any other path (/proc, /sys, /etc, ...) is the host's own.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path

DEVICE_TMP = "/data/local/tmp"
DEVICE_SDCARD = "/sdcard"
# Textual rewriting must not need quoting, so the root may only contain these.
_SAFE_ROOT = re.compile(r"^[A-Za-z0-9_./+-]+$")


class Sandbox:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        if not _SAFE_ROOT.match(str(self.root)):
            raise ValueError(f"sandbox path {self.root} has characters a shell would need quoted")
        self.tmp_dir = self.root / "data" / "local" / "tmp"
        self.sdcard_dir = self.root / "sdcard"
        self.bin_dir = self.root / "bin"
        self.props_file = self.root / "props.txt"
        # Longest device prefix first so that nested prefixes match correctly.
        self._mounts: list[tuple[str, Path]] = sorted(
            [
                (DEVICE_TMP, self.tmp_dir),
                (DEVICE_SDCARD, self.sdcard_dir),
                ("/storage/emulated/0", self.sdcard_dir),
            ],
            key=lambda m: -len(m[0]),
        )
        alternatives = "|".join(re.escape(prefix) for prefix, _ in self._mounts)
        self._command_re = re.compile(rf"(?<![\w./-])({alternatives})(?![\w.-])")
        self._host_to_device: list[tuple[bytes, bytes]] = [
            (str(self.tmp_dir).encode(), DEVICE_TMP.encode()),
            (str(self.sdcard_dir).encode(), DEVICE_SDCARD.encode()),
        ]

    def create(self) -> None:
        for directory in (self.tmp_dir, self.sdcard_dir, self.bin_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def to_host(self, device_path: str) -> tuple[Path, bool]:
        """Host path for a device path, and whether it lies in the sandbox.

        Paths outside the mapped prefixes are the host's own (read-only for sync).
        """
        path = posixpath.normpath("/" + device_path.lstrip("/"))
        for prefix, host_dir in self._mounts:
            if path == prefix or path.startswith(prefix + "/"):
                return host_dir / path[len(prefix):].lstrip("/"), True
        return Path(path), False

    def rewrite_command(self, command: str) -> str:
        """Replace device path prefixes in shell command text with host dirs."""
        mounts = dict(self._mounts)
        return self._command_re.sub(lambda m: str(mounts[m.group(1)]), command)

    def output_rewriter(self) -> OutputRewriter:
        return OutputRewriter(self._host_to_device)


class OutputRewriter:
    """Streaming bytes replacement that also catches needles split across chunks."""

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self._pairs = sorted(pairs, key=lambda p: -len(p[0]))
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        for needle, replacement in self._pairs:
            data = data.replace(needle, replacement)
        # Hold back a tail that could be the start of a needle, so that a path
        # split between two reads is still rewritten.
        hold = 0
        for needle, _ in self._pairs:
            for size in range(min(len(needle) - 1, len(data)), hold, -1):
                if data.endswith(needle[:size]):
                    hold = size
                    break
        self._pending = data[len(data) - hold:] if hold else b""
        return data[:len(data) - hold]

    def flush(self) -> bytes:
        data, self._pending = self._pending, b""
        return data
