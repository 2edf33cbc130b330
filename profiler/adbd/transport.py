"""adb transport (layer 2): 24-byte message headers, one connection, its streams.

One reader thread per TCP connection dispatches messages; every stream's service
runs in its own thread and talks to the host only through `Stream`.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections import deque
from typing import Callable

from .faults import Faults

logger = logging.getLogger(__name__)

A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
NAMES = {A_CNXN: "CNXN", A_AUTH: "AUTH", A_OPEN: "OPEN", A_OKAY: "OKAY", A_CLSE: "CLSE", A_WRTE: "WRTE"}

# From this version on the data_check field may be 0 and is not verified.
VERSION_SKIP_CHECKSUM = 0x01000001
DEVICE_VERSION = 0x01000001
AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
HEADER = struct.Struct("<6I")
# Refuse absurd packets before allocating for them (the host's own cap is 1 MiB).
MAX_INCOMING_PAYLOAD_BYTES = 1024 * 1024


class StreamClosed(Exception):
    """The stream was closed (by either side) while a service used it."""


class DropConnection(Exception):
    """Raised by a service resolver to drop the whole connection (fault injection)."""


ServiceRunner = Callable[["Stream"], None]
# Maps a service name to a runner, or None to refuse the stream.
ServiceResolver = Callable[[str], "ServiceRunner | None"]


def pack_message(command: int, arg0: int, arg1: int, payload: bytes, checksum: bool) -> bytes:
    check = sum(payload) & 0xFFFFFFFF if checksum else 0
    return HEADER.pack(command, arg0, arg1, len(payload), check, command ^ 0xFFFFFFFF) + payload


class Stream:
    """One adb stream from the device's side, with flow control both ways.

    write() keeps one WRTE in flight (waits for the host's OKAY); read() hands
    out host WRTE payloads and only then acknowledges them, so a slow service
    slows the host down instead of buffering without bound.
    """

    def __init__(self, conn: Connection, local_id: int, remote_id: int, service: str) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.service = service
        self._cond = threading.Condition()
        self._awaiting_okay = False
        self._closed = False
        self._inbox: deque[bytes] = deque()
        self._on_close: list[Callable[[], None]] = []

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Run callback (once) when the host closes the stream or the link dies."""
        with self._cond:
            if not self._closed:
                self._on_close.append(callback)
                return
        callback()

    def write(self, data: bytes) -> None:
        """Send data to the host in WRTEs of at most the negotiated payload size."""
        view = memoryview(data)
        step = self.conn.max_payload_bytes
        for start in range(0, len(view), step):
            with self._cond:
                while self._awaiting_okay and not self._closed:
                    self._cond.wait()
                if self._closed:
                    raise StreamClosed(self.service)
                self._awaiting_okay = True
            self.conn.send(A_WRTE, self.local_id, self.remote_id, bytes(view[start:start + step]))

    def read(self) -> bytes | None:
        """Next payload the host wrote, or None once the stream is closed."""
        with self._cond:
            while not self._inbox and not self._closed:
                self._cond.wait()
            if not self._inbox:
                return None
            data = self._inbox.popleft()
            closed = self._closed
        if not closed:
            try:
                self.conn.send(A_OKAY, self.local_id, self.remote_id, b"")
            except OSError:
                pass  # link is dying; the reader thread closes every stream
        return data

    def close(self, flush_timeout_s: float = 10.0) -> None:
        """Close from the device side: wait for the last OKAY, then send CLSE."""
        with self._cond:
            if self._closed:
                return
            # Waiting for the host's OKAY keeps the CLSE from overtaking data
            # the host has not acknowledged yet.
            self._cond.wait_for(lambda: not self._awaiting_okay or self._closed, flush_timeout_s)
            if self._closed:
                return
        self._mark_closed()
        self.conn.forget(self)
        try:
            self.conn.send(A_CLSE, self.local_id, self.remote_id, b"")
        except OSError:
            pass

    # Called by the connection's reader thread.
    def on_okay(self) -> None:
        with self._cond:
            self._awaiting_okay = False
            self._cond.notify_all()

    def on_data(self, data: bytes) -> None:
        with self._cond:
            if not self._closed:
                self._inbox.append(data)
                self._cond.notify_all()

    def on_remote_close(self) -> None:
        self._mark_closed()

    def _mark_closed(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            callbacks, self._on_close = self._on_close, []
            self._cond.notify_all()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a failing cleanup must not kill the reader thread
                logger.exception("close callback failed for %s", self.service)


class Connection:
    """The device end of one TCP connection from the adb server."""

    def __init__(
        self,
        sock: socket.socket,
        banner: Callable[[], bytes],
        resolve: ServiceResolver,
        faults: Faults,
        max_payload_bytes: int,
        on_finished: Callable[[Connection], None],
    ) -> None:
        self.sock = sock
        self._banner = banner
        self._resolve = resolve
        self._faults = faults
        self._device_max_payload_bytes = max_payload_bytes
        self.max_payload_bytes = max_payload_bytes
        self._on_finished = on_finished
        self._send_lock = threading.Lock()
        self._checksum = True
        self._online = False
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1
        self._service_threads: list[threading.Thread] = []
        self.peer = "%s:%d" % sock.getpeername()[:2]
        self.thread = threading.Thread(target=self._run, name=f"adbd-conn-{self.peer}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def abort(self) -> None:
        """Drop the TCP connection; the reader thread then cleans up."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send(self, command: int, arg0: int, arg1: int, payload: bytes) -> None:
        message = pack_message(command, arg0, arg1, payload, self._checksum)
        with self._send_lock:
            allowed = self._faults.allow_bytes(len(message))
            if allowed is not None:
                try:
                    self.sock.sendall(message[:allowed])
                finally:
                    self.abort()
                raise ConnectionAbortedError("fault injection: drop_after_bytes")
            self.sock.sendall(message)

    def forget(self, stream: Stream) -> None:
        with self._streams_lock:
            self._streams.pop(stream.local_id, None)

    # Reader thread.
    def _run(self) -> None:
        logger.debug("connection from %s", self.peer)
        try:
            while True:
                header = self._recv_exact(HEADER.size)
                if header is None:
                    break
                command, arg0, arg1, length, _check, magic = HEADER.unpack(header)
                if magic != command ^ 0xFFFFFFFF or length > MAX_INCOMING_PAYLOAD_BYTES:
                    logger.warning("bad header from %s: %r", self.peer, header)
                    break
                payload = self._recv_exact(length) if length else b""
                if payload is None:
                    break
                self._dispatch(command, arg0, arg1, payload)
        except DropConnection:
            pass
        except OSError as exc:
            logger.debug("connection %s ended: %s", self.peer, exc)
        finally:
            self._finish()

    def _recv_exact(self, size: int) -> bytes | None:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = self.sock.recv_into(view[got:])
            if n == 0:
                return None
            got += n
        return bytes(buf)

    def _dispatch(self, command: int, arg0: int, arg1: int, payload: bytes) -> None:
        if command == A_CNXN:
            self._on_cnxn(arg0, arg1)
        elif command == A_AUTH and not self._online:
            self._on_auth(arg0)
        elif not self._online:
            return  # AUTH answers and anything before the handshake: ignored
        elif command == A_OPEN:
            self._on_open(arg0, payload)
        else:
            with self._streams_lock:
                stream = self._streams.get(arg1)
            # Messages for unknown ids cross a CLSE in flight: ignore them.
            if stream is None or stream.remote_id != arg0:
                return
            if command == A_OKAY:
                stream.on_okay()
            elif command == A_WRTE:
                stream.on_data(payload)
            elif command == A_CLSE:
                self.forget(stream)
                stream.on_remote_close()

    def _on_cnxn(self, version: int, host_max_payload_bytes: int) -> None:
        version = min(version, DEVICE_VERSION)
        self._checksum = version < VERSION_SKIP_CHECKSUM
        self.max_payload_bytes = max(256, min(self._device_max_payload_bytes, host_max_payload_bytes))
        if self._faults.unauthorized:
            logger.info("unauthorized mode: sending AUTH token to %s", self.peer)
            self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            return
        self._online = True
        self.send(A_CNXN, version, self._device_max_payload_bytes, self._banner())

    def _on_auth(self, auth_type: int) -> None:
        # Like adbd with an unknown key: every signature is rejected with a
        # fresh token; the public key (type 3) would wait for a user prompt.
        if auth_type == AUTH_SIGNATURE:
            self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))

    def _on_open(self, remote_id: int, payload: bytes) -> None:
        service = payload.rstrip(b"\0").decode("utf-8", errors="replace")
        kind, _, command = service.partition(":")
        if kind in ("shell", "exec") and self._faults.should_drop_at(command):
            raise DropConnection(service)
        runner = self._resolve(service)
        if runner is None:
            logger.info("refusing service %r", service)
            self.send(A_CLSE, 0, remote_id, b"")
            return
        with self._streams_lock:
            local_id = self._next_id
            self._next_id += 1
            stream = Stream(self, local_id, remote_id, service)
            self._streams[local_id] = stream
        # OKAY must reach the host before the service's first WRTE.
        self.send(A_OKAY, local_id, remote_id, b"")
        thread = threading.Thread(
            target=self._run_service, args=(runner, stream), name=f"adbd-svc-{local_id}", daemon=True
        )
        self._service_threads = [t for t in self._service_threads if t.is_alive()]
        self._service_threads.append(thread)
        thread.start()

    def _run_service(self, runner: ServiceRunner, stream: Stream) -> None:
        try:
            runner(stream)
        except (StreamClosed, OSError) as exc:
            logger.debug("service %r ended: %s", stream.service, exc)
        except Exception:
            logger.exception("service %r crashed", stream.service)
        finally:
            stream.close()

    def _finish(self) -> None:
        self._online = False
        self.abort()  # service threads blocked in sendall must fail, not hang
        with self._streams_lock:
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream.on_remote_close()
        for thread in self._service_threads:
            thread.join(timeout=10.0)
            if thread.is_alive():
                logger.warning("service thread %s did not stop", thread.name)
        # Closed only now so that no service thread can use a recycled fd.
        self.sock.close()
        logger.debug("connection %s closed", self.peer)
        self._on_finished(self)
