"""A loopback Android device: an adbd in Python that the real adb server drives.

`LoopbackDevice` listens on 127.0.0.1:PORT; `adb connect 127.0.0.1:PORT` then
gives adbutils and the adb CLI a device whose shell runs on this host, with
/data/local/tmp and /sdcard mapped into a sandbox directory. See sandbox.py for
path rewriting, faults.py for fault injection, testing.py for a private adb
server.
"""
from __future__ import annotations

from .faults import FaultEvent, Faults
from .sandbox import DEVICE_SDCARD, DEVICE_TMP, Sandbox
from .server import LoopbackDevice

__all__ = ["DEVICE_SDCARD", "DEVICE_TMP", "FaultEvent", "Faults", "LoopbackDevice", "Sandbox"]
