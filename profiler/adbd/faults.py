"""Fault injection for the loopback device, armed at construction or at runtime.

Every method takes the lock: tests flip faults from their own thread while the
device's connection threads consult them.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultEvent:
    """A fault that fired, kept so tests can assert on what happened."""

    kind: str  # "drop_after_bytes" or "drop_at_command"
    detail: str


class Faults:
    """Thread-safe fault settings shared by all connections of one device.

    - drop_after_bytes: close the TCP connection once this many bytes (headers
      included, counted over all connections from the moment it is armed) have
      been sent to the host. Fires once, then disarms.
    - drop_at_command: close the connection when a shell:/exec: stream whose
      command contains this substring is opened (before it is accepted). Fires
      drop_at_command_count times, then disarms.
    - unauthorized: answer the host's CNXN with an AUTH token and never accept.
      Read at each handshake, so it applies to the next connection.
    """

    def __init__(
        self,
        drop_after_bytes: int | None = None,
        drop_at_command: str | None = None,
        drop_at_command_count: int = 1,
        unauthorized: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._bytes_left: int | None = None
        self._command: str | None = None
        self._command_count = 0
        self._unauthorized = False
        self._events: list[FaultEvent] = []
        self.set(
            drop_after_bytes=drop_after_bytes,
            drop_at_command=drop_at_command,
            drop_at_command_count=drop_at_command_count,
            unauthorized=unauthorized,
        )

    _UNSET = object()

    def set(
        self,
        *,
        drop_after_bytes: int | None | object = _UNSET,
        drop_at_command: str | None | object = _UNSET,
        drop_at_command_count: int | object = _UNSET,
        unauthorized: bool | object = _UNSET,
    ) -> None:
        """Change any subset of the settings; omitted ones keep their value."""
        with self._lock:
            if drop_after_bytes is not Faults._UNSET:
                if drop_after_bytes is not None and int(drop_after_bytes) < 0:  # type: ignore[arg-type]
                    raise ValueError("drop_after_bytes must be >= 0")
                self._bytes_left = None if drop_after_bytes is None else int(drop_after_bytes)  # type: ignore[arg-type]
            if drop_at_command is not Faults._UNSET:
                self._command = drop_at_command or None  # type: ignore[assignment]
                if drop_at_command_count is Faults._UNSET:
                    self._command_count = 1 if self._command else 0
            if drop_at_command_count is not Faults._UNSET:
                self._command_count = int(drop_at_command_count)  # type: ignore[arg-type]
            if unauthorized is not Faults._UNSET:
                self._unauthorized = bool(unauthorized)

    def clear(self) -> None:
        """Disarm every fault."""
        self.set(drop_after_bytes=None, drop_at_command=None, unauthorized=False)

    @property
    def drop_after_bytes(self) -> int | None:
        with self._lock:
            return self._bytes_left

    @property
    def drop_at_command(self) -> str | None:
        with self._lock:
            return self._command if self._command_count > 0 else None

    @property
    def unauthorized(self) -> bool:
        with self._lock:
            return self._unauthorized

    @property
    def events(self) -> list[FaultEvent]:
        """Faults that have fired so far, oldest first."""
        with self._lock:
            return list(self._events)

    def allow_bytes(self, size_bytes: int) -> int | None:
        """How many of the next size_bytes may be sent; None = all of them.

        A number means: send that many bytes, then drop the connection.
        """
        with self._lock:
            if self._bytes_left is None:
                return None
            if size_bytes < self._bytes_left:
                self._bytes_left -= size_bytes
                return None
            allowed, self._bytes_left = self._bytes_left, None
            self._events.append(FaultEvent("drop_after_bytes", f"{allowed} of {size_bytes} bytes sent"))
        logger.info("fault: dropping connection after byte budget ran out")
        return allowed

    def should_drop_at(self, command: str) -> bool:
        """True (and count one firing) if opening this command must drop the link."""
        with self._lock:
            if not self._command or self._command_count <= 0 or self._command not in command:
                return False
            self._command_count -= 1
            if self._command_count <= 0:
                self._command = None
            self._events.append(FaultEvent("drop_at_command", command))
        logger.info("fault: dropping connection at command %r", command)
        return True
