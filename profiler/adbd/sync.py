"""sync: service, protocol v1 (STAT, LIST, SEND, RECV, QUIT) on the sandbox.

Requests are parsed from a byte stream: one request may span several host
WRTEs and one WRTE may hold several requests. Paths outside the sandbox are
the host's own and read-only.
"""
from __future__ import annotations

import logging
import os
import struct

from .sandbox import Sandbox
from .transport import Stream

logger = logging.getLogger(__name__)

MAX_PATH_BYTES = 1024
MAX_DATA_BYTES = 64 * 1024
U32 = struct.Struct("<I")
REQUEST = struct.Struct("<4sI")


class SyncFailure(Exception):
    """Answered with FAIL <message>; the service then ends, as adbd does."""


class _Reader:
    """Exact-size reads over the stream's WRTE payloads."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._buf = bytearray()

    def read_exact(self, size: int) -> bytes | None:
        while len(self._buf) < size:
            data = self._stream.read()
            if data is None:
                return None
            self._buf += data
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


class _Writer:
    """Packs replies into WRTEs of up to the payload limit.

    Whole records are never split across WRTEs when they fit: adbutils reads
    STAT/DENT bodies with a single recv().
    """

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._buf = bytearray()

    def add(self, record: bytes) -> None:
        if self._buf and len(self._buf) + len(record) > self._stream.conn.max_payload_bytes:
            self.flush()
        self._buf += record

    def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            self._stream.write(data)


def _u32(value: int) -> bytes:
    return U32.pack(value & 0xFFFFFFFF)


def _stat_record(st: os.stat_result | None) -> bytes:
    if st is None:
        return _u32(0) * 3
    return _u32(st.st_mode) + _u32(st.st_size) + _u32(int(st.st_mtime))


def _lstat(path: str | os.PathLike[str]) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def run_sync(stream: Stream, sandbox: Sandbox) -> None:
    reader, writer = _Reader(stream), _Writer(stream)
    try:
        while (header := reader.read_exact(REQUEST.size)) is not None:
            request_id, length = REQUEST.unpack(header)
            if request_id == b"QUIT":
                return
            if request_id not in (b"STAT", b"LIST", b"SEND", b"RECV"):
                raise SyncFailure(f"unknown sync request {request_id!r}")
            if length > MAX_PATH_BYTES:
                raise SyncFailure("path too long")
            raw_path = reader.read_exact(length)
            if raw_path is None:
                return
            path = raw_path.decode("utf-8", errors="surrogateescape")
            logger.debug("sync %s %s", request_id.decode(), path)
            if request_id == b"STAT":
                writer.add(b"STAT" + _stat_record(_lstat(sandbox.to_host(path)[0])))
            elif request_id == b"LIST":
                _list(writer, sandbox, path)
            elif request_id == b"SEND":
                _send(reader, writer, sandbox, path)
            else:
                _recv(writer, sandbox, path)
            writer.flush()
    except SyncFailure as exc:
        message = str(exc).encode()
        writer.add(b"FAIL" + _u32(len(message)) + message)
        writer.flush()


def _list(writer: _Writer, sandbox: Sandbox, path: str) -> None:
    host_dir, _ = sandbox.to_host(path)
    try:
        names = [".", ".."] + sorted(os.listdir(host_dir))
    except OSError:
        names = []  # adbd answers a missing dir with an empty listing
    for name in names:
        st = _lstat(host_dir / name)
        if st is None:
            continue
        encoded = name.encode("utf-8", errors="surrogateescape")
        writer.add(b"DENT" + _stat_record(st) + _u32(len(encoded)) + encoded)
    writer.add(b"DONE" + _u32(0) * 4)


def _send(reader: _Reader, writer: _Writer, sandbox: Sandbox, spec: str) -> None:
    path, sep, mode_text = spec.rpartition(",")
    if not sep:
        path, mode_text = spec, str(0o644)
    host_path, inside = sandbox.to_host(path)
    error: str | None = None
    if not inside:
        error = f"{path}: Permission denied (only /data/local/tmp and /sdcard are writable)"
    elif host_path.is_dir():
        error = f"{path}: Is a directory"
    tmp_path = host_path.with_name(f".{host_path.name}.adbd-partial")
    out = None
    if error is None:
        try:
            host_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(tmp_path, "wb")
        except OSError as exc:
            error = f"{path}: {exc.strerror}"
    try:
        # The client sends every DATA before it reads the answer, so drain them
        # even when the answer will be FAIL.
        while True:
            header = reader.read_exact(REQUEST.size)
            if header is None:
                return
            chunk_id, length = REQUEST.unpack(header)
            if chunk_id == b"DONE":
                mtime_s = length
                break
            if chunk_id != b"DATA" or length > MAX_DATA_BYTES:
                raise SyncFailure(f"bad SEND chunk {chunk_id!r} of {length} bytes")
            data = reader.read_exact(length)
            if data is None:
                return
            if out is not None:
                out.write(data)
        if out is not None:
            out.close()
            out = None
            os.chmod(tmp_path, int(mode_text or "0") & 0o777 or 0o644)
            os.utime(tmp_path, (mtime_s, mtime_s))
            os.replace(tmp_path, host_path)
    except (OSError, ValueError) as exc:
        error = error or f"{path}: {exc}"
    finally:
        if out is not None:
            out.close()
        if tmp_path.exists() and (error is not None or out is not None):
            tmp_path.unlink(missing_ok=True)
    if error is not None:
        raise SyncFailure(error)
    writer.add(b"OKAY" + _u32(0))


def _recv(writer: _Writer, sandbox: Sandbox, path: str) -> None:
    host_path, _ = sandbox.to_host(path)
    try:
        f = open(host_path, "rb")
    except OSError as exc:
        reason = "No such file or directory" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise SyncFailure(f"open failed: {reason}") from None
    with f:
        while chunk := f.read(MAX_DATA_BYTES):
            writer.add(b"DATA" + _u32(len(chunk)) + chunk)
    writer.add(b"DONE" + _u32(0))
