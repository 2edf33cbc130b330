"""LoopbackDevice: an adbd on 127.0.0.1 that the real adb server can `adb connect` to."""
from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from . import services, sync
from .faults import Faults
from .props import check_props, default_props, write_getprop_shim, write_props_file
from .sandbox import Sandbox
from .transport import Connection, ServiceRunner

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
ACCEPT_POLL_S = 0.2


class LoopbackDevice:
    """A fake Android device whose shell runs on this host.

    port=0 picks a free port. sandbox=None makes a temp dir that stop() removes.
    props override entries of the default property table. faults is a Faults
    or a mapping of its keyword arguments.
    """

    def __init__(
        self,
        port: int = 0,
        sandbox: Path | str | None = None,
        props: Mapping[str, str] | None = None,
        faults: Faults | Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        rewrite_output: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._sandbox_arg = Path(sandbox) if sandbox is not None else None
        self._owns_sandbox = sandbox is None
        self.sandbox: Sandbox | None = None
        self._prop_overrides = check_props(props or {})
        self.props: dict[str, str] = {}
        self.faults = faults if isinstance(faults, Faults) else Faults(**dict(faults or {}))
        self.max_payload_bytes = max_payload_bytes
        self.rewrite_output = rewrite_output
        self._lock = threading.RLock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stop_accepting = threading.Event()
        self._connections: set[Connection] = set()
        self._reconnect_timer: threading.Timer | None = None
        self._started = False
        self._process_groups = services.ProcessGroups()

    # Public API
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("device not started")
        return self._port

    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def online(self) -> bool:
        """True while listening (not stopped, not in go_offline)."""
        with self._lock:
            return self._listener is not None

    def start(self) -> LoopbackDevice:
        with self._lock:
            if self._started:
                return self
            root = self._sandbox_arg or Path(tempfile.mkdtemp(prefix="adbd-loopback-"))
            self.sandbox = Sandbox(root)
            self.sandbox.create()
            self._listen(self._requested_port)
            self.props = {**default_props(serialno=f"LOOPBACK{self.port}"), **self._prop_overrides}
            write_props_file(self.sandbox.props_file, self.props)
            write_getprop_shim(self.sandbox.bin_dir, self.sandbox.props_file)
            self._started = True
        logger.info("loopback device listening on %s (sandbox %s)", self.serial, self.sandbox.root)
        return self

    def stop(self) -> None:
        """Stop listening, drop connections, end all commands and threads."""
        with self._lock:
            if not self._started:
                return
            self._started = False
        self._cancel_timer()
        self._close_listener()
        self.drop_connections(wait=True)
        self._process_groups.kill_all()  # background jobs of finished commands
        if self._owns_sandbox and self.sandbox is not None:
            shutil.rmtree(self.sandbox.root, ignore_errors=True)
        logger.info("loopback device %s stopped", self.serial)

    def __enter__(self) -> LoopbackDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_props(self, **props: str) -> None:
        """Change properties at runtime (getprop sees them at once)."""
        with self._lock:
            self.props.update(check_props(props))
            if self.sandbox is not None:
                write_props_file(self.sandbox.props_file, self.props)

    def host_path(self, device_path: str) -> Path:
        """Host path of a device path (sandboxed or the host's own)."""
        if self.sandbox is None:
            raise RuntimeError("device not started")
        return self.sandbox.to_host(device_path)[0]

    def drop_connections(self, wait: bool = False) -> None:
        """Close every connection from the adb server (it will reconnect)."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.abort()
        if wait:
            for conn in connections:
                conn.thread.join(timeout=15.0)

    def go_offline(self, seconds: float | None = None) -> None:
        """Stop listening and drop connections; listen again after `seconds`.

        seconds=None stays offline until go_online(). Returns once offline.
        """
        with self._lock:
            if not self._started:
                raise RuntimeError("device not started")
        # Joins happen without the lock: the threads joined need it to finish.
        self._cancel_timer()
        self._close_listener()
        self.drop_connections(wait=True)
        logger.info("device %s offline", self.serial)
        if seconds is not None:
            with self._lock:
                if self._started:
                    self._reconnect_timer = threading.Timer(seconds, self.go_online)
                    self._reconnect_timer.daemon = True
                    self._reconnect_timer.start()

    def go_online(self) -> None:
        """Listen again on the same port after go_offline()."""
        with self._lock:
            if not self._started or self._listener is not None:
                return
            self._listen(self.port)
        logger.info("device %s online again", self.serial)

    # Internals
    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                listener.bind((self.host, port))
                break
            except OSError:
                # Coming back online, the port may be briefly unavailable.
                if port == 0 or time.monotonic() > deadline:
                    listener.close()
                    raise
                time.sleep(0.1)
        listener.listen(16)
        listener.settimeout(ACCEPT_POLL_S)
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._stop_accepting = threading.Event()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener, self._stop_accepting), name=f"adbd-accept-{self._port}",
            daemon=True,
        )
        self._accept_thread.start()

    def _close_listener(self) -> None:
        with self._lock:
            listener, thread = self._listener, self._accept_thread
            self._listener, self._accept_thread = None, None
            self._stop_accepting.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if listener is not None:
            listener.close()

    def _cancel_timer(self) -> None:
        with self._lock:
            timer, self._reconnect_timer = self._reconnect_timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        # Polling with a timeout, because close() does not wake a blocked accept().
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if stop.is_set():
                    sock.close()
                    break
                conn = Connection(sock, self._banner, self._resolve, self.faults, self.max_payload_bytes, self._forget)
                self._connections.add(conn)
                conn.start()  # under the lock: drop_connections may join it at once

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _banner(self) -> bytes:
        p = self.props
        # Empty features: the host then uses shell v1 and sync v1 only.
        return (
            f"device::ro.product.name={p.get('ro.product.name', '')};"
            f"ro.product.model={p.get('ro.product.model', '')};"
            f"ro.product.device={p.get('ro.product.device', '')};features="
        ).encode()

    def _resolve(self, service: str) -> ServiceRunner | None:
        assert self.sandbox is not None
        sandbox = self.sandbox
        if service == "sync:":
            return lambda stream: sync.run_sync(stream, sandbox)
        return services.command_service(service, sandbox, self.rewrite_output, self._process_groups)
