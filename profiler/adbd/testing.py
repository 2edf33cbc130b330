"""Helpers to run a private adb server and loopback devices connected to it."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import adbutils
from adbutils import AdbClient, AdbDevice, AdbError

from .faults import Faults
from .server import LoopbackDevice

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_running(client: AdbClient) -> bool:
    """Checked before calls that must not auto-start a server (adbutils would)."""
    return _port_open(client.port, client.host)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class PrivateAdbServer:
    """An adb server of our own: own port, own HOME (keys) and TMPDIR (log).

    Runs `adb server nodaemon` as our child, so teardown can always reap it.
    `.env` holds the variables a process needs to use this server.
    """

    def __init__(self, port: int = 0, adb: str | None = None, base_dir: Path | str | None = None) -> None:
        self.adb = adb or adbutils.adb_path()
        self.port = port or free_port()
        self._owns_dir = base_dir is None
        self.dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="adb-private-"))
        self.env: dict[str, str] = {
            "ANDROID_ADB_SERVER_PORT": str(self.port),
            "HOME": str(self.dir),
            "ANDROID_USER_HOME": str(self.dir / ".android"),
            "TMPDIR": str(self.dir),
        }
        self.client = AdbClient(host="127.0.0.1", port=self.port)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.dir / "adb-server.log"

    def start(self, timeout_s: float = 20.0) -> PrivateAdbServer:
        (self.dir / ".android").mkdir(parents=True, exist_ok=True)
        if _port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use")
        # ADB_LIBUSB=0: where libusb cannot initialise (containers) the server
        # otherwise holds its first request for ~3 s waiting for a USB scan.
        env = {**os.environ, **self.env, "ADB_LIBUSB": "0"}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [self.adb, "-P", str(self.port), "server", "nodaemon"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        # Probe with a bare socket: an adbutils call on a closed port would run
        # `adb start-server` on the DEFAULT port (adbutils' auto-start).
        while not _port_open(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"adb server exited with {self._proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"adb server did not listen on port {self.port} in {timeout_s} s")
            time.sleep(0.05)
        self.client.server_version()
        logger.info("private adb server on port %d (%s)", self.port, self.dir)
        return self

    def run_adb(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the adb CLI against this server."""
        return subprocess.run(
            [self.adb, "-P", str(self.port), *args], env={**os.environ, **self.env},
            capture_output=True, text=True, timeout=timeout_s,
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                self.client.server_kill()  # adb kill-server
            except (AdbError, OSError) as exc:
                logger.debug("kill-server failed: %s", exc)
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateAdbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def device_state(client: AdbClient, serial: str) -> str | None:
    """The server's state for serial (device, offline, unauthorized, ...) or None."""
    for info in client.list():
        if info.serial == serial:
            return info.state
    return None


def wait_for_state(
    client: AdbClient, serial: str, states: Iterable[str | None], timeout_s: float = 15.0, poll_s: float = 0.1
) -> str | None:
    """Poll until serial is in one of states (None = absent); TimeoutError otherwise."""
    wanted = set(states)
    deadline = time.monotonic() + timeout_s
    while True:
        state = device_state(client, serial)
        if state in wanted:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"{serial} is {state or 'absent'}, wanted {sorted(map(str, wanted))}")
        time.sleep(poll_s)


def connect(client: AdbClient, serial: str, timeout_s: float = 15.0, state: str = "device") -> AdbDevice:
    """`adb connect serial` and wait for `state`; AdbError with the state seen otherwise.

    A transport left offline (device restarted) is disconnected and connected
    again rather than waiting for the server's own ~10 s retry.
    """
    deadline = time.monotonic() + timeout_s
    seen: str | None = None
    while True:
        reply = client.connect(serial, timeout=max(1.0, deadline - time.monotonic()))
        logger.debug("connect %s: %s", serial, reply)
        try:
            seen = wait_for_state(client, serial, [state], timeout_s=min(3.0, max(0.0, deadline - time.monotonic())))
            return client.device(serial)
        except TimeoutError:
            seen = device_state(client, serial)
        if time.monotonic() > deadline:
            raise AdbError(f"{serial} did not reach state {state!r}: state {seen or 'absent'} ({reply.strip()})")
        if seen is not None:
            _disconnect(client, serial)


@dataclass
class ConnectedLoopback:
    """A loopback device connected to an adb server, as the fixtures yield it."""

    loopback: LoopbackDevice
    client: AdbClient
    device: AdbDevice = field(init=False)

    def __post_init__(self) -> None:
        self.device = self.client.device(self.serial)

    @property
    def serial(self) -> str:
        return self.loopback.serial

    @property
    def sandbox(self) -> Path:
        assert self.loopback.sandbox is not None
        return self.loopback.sandbox.root

    @property
    def faults(self) -> Faults:
        return self.loopback.faults

    def reconnect(self, timeout_s: float = 15.0) -> AdbDevice:
        """Bring the server's transport back to `device` after a drop/offline."""
        return connect(self.client, self.serial, timeout_s)

    def close(self) -> None:
        _disconnect(self.client, self.serial)
        self.loopback.stop()


def _disconnect(client: AdbClient, serial: str) -> None:
    """Forget serial on the server (so it stops retrying), if the server is up."""
    if not server_running(client):
        return
    try:
        client.disconnect(serial)
    except (AdbError, OSError):
        pass


def start_connected(client: AdbClient, timeout_s: float = 15.0, **options: Any) -> ConnectedLoopback:
    """Start a LoopbackDevice(**options) and connect it to client's server.

    An unauthorized device is waited for in state `unauthorized` instead.
    """
    loopback = LoopbackDevice(**options).start()
    try:
        state = "unauthorized" if loopback.faults.unauthorized else "device"
        connect(client, loopback.serial, timeout_s, state=state)
        return ConnectedLoopback(loopback, client)
    except BaseException:
        _disconnect(client, loopback.serial)
        loopback.stop()
        raise
