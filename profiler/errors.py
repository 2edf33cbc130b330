"""Error hierarchy of the profiler package.

Low-level failures (adb socket errors, subprocess return codes, sqlite errors) are
translated into these once, at the lowest layer, with ``raise ... from e``; callers
above catch only these names. Entry points turn them into a one-line message.
"""
from __future__ import annotations

__all__ = [
    "ProfilerError",
    "ParseError",
    "DeviceError",
    "NoAdbServer",
    "NoDevice",
    "SeveralDevices",
    "UnknownSerial",
    "DeviceOffline",
    "DeviceUnauthorized",
    "BenchmarkBinaryError",
    "DeviceDisconnected",
    "RunnerError",
    "StoreError",
    "StoreReadOnly",
    "FingerprintError",
]


class ProfilerError(Exception):
    """Base class of every error the profiler raises on purpose."""


class ParseError(ProfilerError):
    """Tool output could not be turned into a typed result.

    Raised instead of returning a default: a failed parse never becomes a latency of 0.
    """


class DeviceError(ProfilerError):
    """Something is wrong with reaching or using the device."""


class NoAdbServer(DeviceError):
    """The adb server is not running and could not be reached or started."""


class NoDevice(DeviceError):
    """No device is attached (no serial given and none listed by adb)."""


class SeveralDevices(DeviceError):
    """Several devices are attached and no serial says which one to use."""


class UnknownSerial(DeviceError):
    """The requested serial (argument or $ANDROID_SERIAL) is not attached."""


class DeviceOffline(DeviceError):
    """The device is listed by adb but in the ``offline`` state."""


class DeviceUnauthorized(DeviceError):
    """The device has not accepted this host's adb key (``unauthorized``)."""


class BenchmarkBinaryError(DeviceError):
    """The benchmark binary is missing, not executable, or cannot run on the device."""


class DeviceDisconnected(DeviceError):
    """The device went away in the middle of an operation."""


class RunnerError(ProfilerError):
    """A benchmark runner failed in a way that is not a device or parse problem."""


class StoreError(ProfilerError):
    """The measurement store could not be read or written."""


class StoreReadOnly(StoreError):
    """The store (or the folder SQLite needs beside it) cannot be written; the data in it is intact."""


class FingerprintError(DeviceError):
    """The device's identity could not be read: measuring it would file results under no one."""
