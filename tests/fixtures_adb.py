"""pytest fixtures: a private adb server and loopback devices connected to it.

- adb_server (module scope): PrivateAdbServer with .port and .client; while it
  lives, ANDROID_ADB_SERVER_PORT/HOME/ANDROID_USER_HOME/TMPDIR point at it.
- loopback_device: one ConnectedLoopback (.serial, .sandbox, .device, .faults,
  .loopback for go_offline/go_online/drop_connections, .reconnect()).
- make_loopback_device(**opts): factory for more devices; opts go to
  LoopbackDevice (port, sandbox, props, faults, ...).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from profiler.adbd.testing import ConnectedLoopback, PrivateAdbServer, start_connected


@pytest.fixture(scope="module")
def adb_server() -> Iterator[PrivateAdbServer]:
    # Module scope: the server starts in ~0.1 s, and HOME/TMPDIR stay changed
    # only for modules that ask for it.
    with pytest.MonkeyPatch.context() as mp:
        with PrivateAdbServer() as server:
            for name, value in server.env.items():
                mp.setenv(name, value)
            mp.delenv("ANDROID_SERIAL", raising=False)
            yield server


@pytest.fixture
def make_loopback_device(adb_server: PrivateAdbServer) -> Iterator[Callable[..., ConnectedLoopback]]:
    made: list[ConnectedLoopback] = []

    def make(**options: Any) -> ConnectedLoopback:
        handle = start_connected(adb_server.client, **options)
        made.append(handle)
        return handle

    yield make
    for handle in reversed(made):
        handle.close()


@pytest.fixture
def loopback_device(make_loopback_device: Callable[..., ConnectedLoopback]) -> ConnectedLoopback:
    return make_loopback_device()
