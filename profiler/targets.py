"""Where benchmarks run: a device over adb (adbutils only) or this host (`--serial local`).

A Target runs shell commands and receives files; runners know nothing else about the device.
adbutils errors are translated here, once, into the profiler's error hierarchy.
"""
from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import adbutils

from profiler.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceOffline,
    DeviceUnauthorized,
    NoAdbServer,
    NoDevice,
    SeveralDevices,
    UnknownSerial,
)

log = logging.getLogger(__name__)

LOCAL_SERIAL = "local"
DEVICE_WORKDIR = "/data/local/tmp/mobilevit-nas"


@dataclass(frozen=True)
class ShellResult:
    output: str
    exit_code: int


class Target(Protocol):
    serial: str
    workdir: str  # POSIX path on the target

    def shell(self, cmd: str, timeout_s: float = 600.0) -> ShellResult: ...

    def push(self, local: Path, remote: str, mode: int = 0o644) -> None: ...

    def file_sha256(self, remote: str) -> str | None: ...

    def reconnect(self, timeout_s: float) -> None: ...


def sh_quote(value: object) -> str:
    """One argument for a device shell command (paths, masks, flag values all go through this)."""
    return shlex.quote(str(value))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class LocalTarget:
    """This host, measured without adb; device paths live in a private work directory."""

    serial = LOCAL_SERIAL

    def __init__(self, workdir: Path | None = None) -> None:
        base = workdir or Path(tempfile.gettempdir()) / f"mobilevit-nas-local-{os.getuid()}"
        base.mkdir(parents=True, exist_ok=True)
        self.workdir = str(base)

    def shell(self, cmd: str, timeout_s: float = 600.0) -> ShellResult:
        try:
            p = subprocess.run(["/bin/sh", "-c", cmd], cwd=self.workdir, capture_output=True, text=True,
                               timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(f"command timed out after {timeout_s:.0f} s on this host: {cmd[:80]}") from e
        return ShellResult(p.stdout + p.stderr, p.returncode)

    def push(self, local: Path, remote: str, mode: int = 0o644) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        tmp = remote + ".part"
        shutil.copyfile(local, tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, remote)

    def file_sha256(self, remote: str) -> str | None:
        return sha256_file(Path(remote)) if Path(remote).is_file() else None

    def reconnect(self, timeout_s: float) -> None:  # nothing to reconnect to
        return None


def _translate(e: Exception, serial: str) -> DeviceError:
    text = str(e)
    if "unauthorized" in text:
        return DeviceUnauthorized(f"device {serial} is unauthorized: accept the adb key prompt on the device")
    if "offline" in text:
        return DeviceOffline(f"device {serial} is offline: replug it or restart adbd")
    if "not found" in text:
        return UnknownSerial(f"device {serial!r} is not attached (see `adb devices`)")
    return DeviceDisconnected(f"lost device {serial}: {text or type(e).__name__}")


class AdbTarget:
    """A device behind the adb server, driven through adbutils."""

    def __init__(self, client: adbutils.AdbClient, serial: str, workdir: str = DEVICE_WORKDIR) -> None:
        self.client = client
        self.serial = serial
        self.workdir = workdir
        self.device = client.device(serial)

    def shell(self, cmd: str, timeout_s: float = 600.0) -> ShellResult:
        try:
            r = self.device.shell2(f"cd {sh_quote(self.workdir)} 2>/dev/null; {cmd}", timeout=timeout_s)
        except (adbutils.AdbError, OSError, socket.error) as e:
            raise _translate(e, self.serial) from e
        return ShellResult(r.output, r.returncode)

    def push(self, local: Path, remote: str, mode: int = 0o644) -> None:
        tmp = remote + ".part"
        try:
            self.device.sync.push(str(local), tmp, mode=mode)
            r = self.device.shell2(f"mv -f {sh_quote(tmp)} {sh_quote(remote)}")
        except (adbutils.AdbError, OSError, socket.error) as e:
            raise _translate(e, self.serial) from e
        if r.returncode != 0:
            raise DeviceError(f"could not place {remote} on {self.serial}: {r.output.strip()}")

    def file_sha256(self, remote: str) -> str | None:
        q = sh_quote(remote)
        r = self.shell(f"[ -f {q} ] && (sha256sum {q} || toybox sha256sum {q}) 2>/dev/null")
        if r.exit_code != 0 or not r.output.strip():
            return None
        return r.output.split()[0]

    def reconnect(self, timeout_s: float) -> None:
        """Wait for the device to come back (re-`connect` network serials) or raise DeviceDisconnected."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if ":" in self.serial:
                try:
                    self.client.connect(self.serial, timeout=5)
                except (adbutils.AdbError, OSError) as e:
                    last = str(e)
            state = _state_of(self.client, self.serial)
            if state == "device":
                self.device = self.client.device(self.serial)
                return
            last = state or last
            time.sleep(1.0)
        raise DeviceDisconnected(f"device {self.serial} did not come back within {timeout_s:.0f} s (last: {last})")


def _state_of(client: adbutils.AdbClient, serial: str) -> str | None:
    try:
        for info in client.list():
            if info.serial == serial:
                return info.state
    except (adbutils.AdbError, OSError):
        return None
    return None


def adb_client() -> adbutils.AdbClient:
    port = int(os.environ.get("ANDROID_ADB_SERVER_PORT", "5037"))
    return adbutils.AdbClient(host="127.0.0.1", port=port)


def list_devices(client: adbutils.AdbClient) -> list[tuple[str, str]]:
    try:
        client.server_version()
        return [(d.serial, d.state) for d in client.list()]
    except (adbutils.AdbError, OSError) as e:
        raise NoAdbServer(f"no adb server reachable on 127.0.0.1:{client.port} and none could be started: {e}") from e


def resolve_serial(requested: str | None, client: adbutils.AdbClient) -> str:
    """--serial, else $ANDROID_SERIAL, else the single attached device; checks its state."""
    serial = requested or os.environ.get("ANDROID_SERIAL") or None
    devices = list_devices(client)
    if serial is None:
        if not devices:
            raise NoDevice("no device attached (adb devices lists none); plug one in or start "
                           "`python -m profiler.loopback`")
        if len(devices) > 1:
            raise SeveralDevices(f"{len(devices)} devices attached ({', '.join(s for s, _ in devices)}): pass --serial")
        serial = devices[0][0]
    states = dict(devices)
    if serial not in states and ":" in serial:
        client.connect(serial, timeout=10)  # network serials (e.g. the loopback device) can be connected by name
        states = dict(list_devices(client))
    state = states.get(serial)
    if state is None:
        known = ", ".join(states) or "none"
        raise UnknownSerial(f"device {serial!r} is not attached (attached: {known})")
    if state == "offline":
        raise DeviceOffline(f"device {serial} is offline: replug it or restart adbd")
    if state == "unauthorized":
        raise DeviceUnauthorized(f"device {serial} is unauthorized: accept the adb key prompt on the device")
    if state != "device":
        raise DeviceError(f"device {serial} is in state {state!r}, not 'device'")
    return serial


def open_target(serial: str | None) -> Target:
    if serial == LOCAL_SERIAL:
        return LocalTarget()
    client = adb_client()
    target = AdbTarget(client, resolve_serial(serial, client))
    target.shell(f"mkdir -p {sh_quote(target.workdir)}")
    return target


def remote_path(target: Target, name: str) -> str:
    return posixpath.join(target.workdir, name)
