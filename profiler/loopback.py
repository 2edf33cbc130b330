"""Run a loopback Android device and connect the adb server to it.

    python -m profiler.loopback [--port P] [--sandbox DIR] [--prop key=value ...]

Prints the serial (127.0.0.1:P) as one line once the adb server (the default
one; ANDROID_ADB_SERVER_PORT respected) sees it as `device`, then serves until
Ctrl-C. Device paths /data/local/tmp and /sdcard live under the sandbox dir.
"""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

from adbutils import AdbClient, AdbError

from profiler.adbd import LoopbackDevice
from profiler.adbd.props import parse_prop_assignment
from profiler.adbd.testing import connect, server_running

logger = logging.getLogger(__name__)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m profiler.loopback", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = a free one)")
    parser.add_argument("--sandbox", type=Path, default=None,
                        help="host dir for device files (default: a temp dir, removed at exit)")
    parser.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE",
                        help="override a property (repeatable)")
    parser.add_argument("--connect-timeout-s", type=float, default=20.0)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    # SIGTERM and SIGINT both end the device cleanly. SIGINT gets an explicit handler because a
    # process started in the background of a non-interactive shell inherits SIGINT ignored, and
    # Python then never raises KeyboardInterrupt: `kill -INT` would be lost.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    device: LoopbackDevice | None = None
    client: AdbClient | None = None
    try:
        props = dict(parse_prop_assignment(p) for p in args.prop)
        device = LoopbackDevice(port=args.port, sandbox=args.sandbox, props=props).start()
        client = AdbClient()
        connect(client, device.serial, timeout_s=args.connect_timeout_s)
        print(device.serial, flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    except KeyboardInterrupt:
        return 0
    except (AdbError, OSError, ValueError, RuntimeError, subprocess.SubprocessError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"loopback: error: {message}", file=sys.stderr)
        return 1
    finally:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt cleanup
            if client is not None and device is not None and server_running(client):
                try:
                    client.disconnect(device.serial)
                except (AdbError, OSError):
                    pass
            if device is not None:
                device.stop()
        except Exception as exc:  # never a traceback at exit
            print(f"loopback: error during shutdown: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
