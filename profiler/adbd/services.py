"""shell: (v1) and exec: services: a host `/bin/sh -c` with stdout+stderr merged.

Commands run on this host for real (benchmarks measure this CPU), with the
sandbox's /data/local/tmp as cwd and the getprop shim first on the PATH.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from typing import Callable

from .sandbox import Sandbox
from .transport import Stream, StreamClosed

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024


def shell_env(sandbox: Sandbox) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{sandbox.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["TMPDIR"] = str(sandbox.tmp_dir)
    env["EXTERNAL_STORAGE"] = str(sandbox.sdcard_dir)
    # A command that itself uses adb must not inherit a test's device choice.
    env.pop("ANDROID_SERIAL", None)
    return env


class ProcessGroups:
    """Process groups of every command a device started.

    A command's background jobs (`cmd &`) outlive it, as on a phone; the
    device kills what is left of them when it stops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pgids: set[int] = set()

    def add(self, pgid: int) -> None:
        with self._lock:
            self._pgids = {g for g in self._pgids if _group_exists(g)}
            self._pgids.add(pgid)

    def kill_all(self) -> None:
        with self._lock:
            pgids, self._pgids = self._pgids, set()
        for pgid in pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_command(stream: Stream, command: str, sandbox: Sandbox, rewrite_output: bool, groups: ProcessGroups) -> None:
    """Run one shell:/exec: command until its output ends or the host closes."""
    host_command = sandbox.rewrite_command(command)
    logger.debug("%s -> sh -c %r", stream.service, host_command)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", host_command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=sandbox.tmp_dir,
        env=shell_env(sandbox),
        start_new_session=True,  # own process group, so close kills its children too
        bufsize=0,
    )
    groups.add(proc.pid)  # start_new_session: pgid == pid
    # The host closing the stream (client gone, timeout) ends the command.
    stream.add_close_callback(lambda: _kill_group(proc))
    stdin_pump = threading.Thread(target=_pump_stdin, args=(stream, proc), name=f"adbd-stdin-{stream.local_id}",
                                  daemon=True)
    stdin_pump.start()
    rewriter = sandbox.output_rewriter() if rewrite_output else None
    assert proc.stdout is not None
    try:
        while chunk := os.read(proc.stdout.fileno(), READ_CHUNK_BYTES):
            out = rewriter.feed(chunk) if rewriter else chunk
            if out:
                stream.write(out)
        if rewriter and (tail := rewriter.flush()):
            stream.write(tail)
    except StreamClosed:
        pass
    finally:
        _kill_group(proc)  # no-op when the command already exited
        proc.stdout.close()
        proc.wait()
        stream.close()  # wakes the stdin pump
        stdin_pump.join()


def _pump_stdin(stream: Stream, proc: subprocess.Popen[bytes]) -> None:
    """Host WRTEs are the command's stdin; keep ACKing even after it stops reading."""
    assert proc.stdin is not None
    stdin_open = True
    while (data := stream.read()) is not None:
        if not stdin_open:
            continue
        try:
            proc.stdin.write(data)
        except (BrokenPipeError, OSError):
            stdin_open = False
    try:
        proc.stdin.close()
    except OSError:
        pass


def command_service(
    service: str, sandbox: Sandbox, rewrite_output: bool, groups: ProcessGroups
) -> Callable[[Stream], None] | None:
    """Runner for `shell:<cmd>` / `exec:<cmd>`, or None for anything else."""
    head, sep, command = service.partition(":")
    kind, *args = head.split(",")  # e.g. "shell,raw:cmd"
    if not sep or kind not in ("shell", "exec") or "v2" in args:
        return None  # shell v2 is not advertised, so the host never asks
    if not command.strip():
        return None  # an interactive shell needs a pty: not offered
    # exec: is raw bytes (exec-out), so its output is never rewritten.
    rewrite = rewrite_output and kind == "shell"
    return lambda stream: run_command(stream, command, sandbox, rewrite, groups)
