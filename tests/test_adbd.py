"""The loopback device driven through the real adb server and adbutils."""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from adbutils import AdbError

from profiler.adbd import Faults, Sandbox
from profiler.adbd.props import host_cpu_model
from profiler.adbd.testing import ConnectedLoopback, PrivateAdbServer, device_state, wait_for_state

REPO_ROOT = Path(__file__).resolve().parents[1]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _exec_out(handle: ConnectedLoopback, command: str) -> bytes:
    """adb exec-out: adbutils has no helper, so open the exec: service by hand."""
    with handle.device.open_transport(timeout=30) as c:
        c.send_command("exec:" + command)
        c.check_okay()
        return c.read_until_close(encoding=None)  # type: ignore[return-value]


def _without_mhz(text: str) -> list[str]:
    # "cpu MHz" changes between two reads on a VM; the rest must be identical.
    return [line for line in text.rstrip("\n").splitlines() if not line.startswith("cpu MHz")]


# Pure unit tests: no adb server needed.

def test_command_rewriting_maps_device_prefixes_only(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    cmd = "cd /data/local/tmp && ls /sdcard/x /sdcard2 /foo/sdcard /data/local/tmpx; echo /storage/emulated/0"
    assert box.rewrite_command(cmd) == (
        f"cd {box.tmp_dir} && ls {box.sdcard_dir}/x /sdcard2 /foo/sdcard /data/local/tmpx; echo {box.sdcard_dir}"
    )
    assert box.to_host("/data/local/tmp/a/../b") == (box.tmp_dir / "b", True)
    assert box.to_host("/data/local/tmp/../../../etc/passwd") == (Path("/etc/passwd"), False)


def test_output_rewriting_survives_split_chunks(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    text = f"at {box.tmp_dir}/bin and {box.sdcard_dir}\n".encode()
    for cut in range(len(text)):
        rewriter = box.output_rewriter()
        out = rewriter.feed(text[:cut]) + rewriter.feed(text[cut:]) + rewriter.flush()
        assert out == b"at /data/local/tmp/bin and /sdcard\n"


def test_faults_fire_once_and_are_thread_safe() -> None:
    faults = Faults(drop_after_bytes=10, drop_at_command="boom", drop_at_command_count=2)
    assert faults.allow_bytes(4) is None
    assert faults.allow_bytes(100) == 6
    assert faults.allow_bytes(100) is None  # disarmed after firing
    assert [faults.should_drop_at("echo boom") for _ in range(3)] == [True, True, False]
    assert [e.kind for e in faults.events] == ["drop_after_bytes", "drop_at_command", "drop_at_command"]
    faults.set(unauthorized=True)
    assert faults.unauthorized and faults.drop_after_bytes is None


# Through the real adb server.



@pytest.mark.device
def test_shell_echo_exit_code_and_merged_stderr(loopback_device: ConnectedLoopback) -> None:
    d = loopback_device.device
    result = d.shell2("echo hello; echo oops >&2; (exit 7)")
    assert result.returncode == 7
    assert result.output == "hello\noops\n"
    assert d.shell2("true").returncode == 0


@pytest.mark.device
def test_exec_out_is_raw_bytes(loopback_device: ConnectedLoopback) -> None:
    payload = bytes(range(256)) * 2000  # 512 KB: several WRTEs
    (loopback_device.sandbox / "data/local/tmp/blob").write_bytes(payload)
    assert _exec_out(loopback_device, r"printf '\000\001\377\r\n'") == b"\x00\x01\xff\r\n"
    assert _exec_out(loopback_device, "cat /data/local/tmp/blob") == payload


@pytest.mark.device
def test_shell_stdin_comes_from_host_writes(loopback_device: ConnectedLoopback) -> None:
    with loopback_device.device.open_transport(timeout=30) as c:
        c.send_command("shell:head -c 11")
        c.check_okay()
        c.send(b"hello ")
        c.send(b"world")
        assert c.read_until_close(encoding=None) == b"hello world"


@pytest.mark.device
def test_getprop_default_table_and_overrides(make_loopback_device) -> None:
    handle = make_loopback_device(props={"ro.product.model": "Pixel Loop"})
    d = handle.device
    assert d.getprop("ro.product.model") == "Pixel Loop"
    assert d.getprop("ro.product.manufacturer") == "mobilevit-nas"
    assert d.getprop("ro.build.version.sdk") == "34"
    assert d.getprop("ro.soc.model") == host_cpu_model() == d.getprop("ro.board.platform")
    assert d.getprop("ro.product.cpu.abi") == ("arm64-v8a" if os.uname().machine == "aarch64" else "x86_64")
    assert d.getprop("no.such.prop") == ""
    listing = d.shell("getprop")
    assert "[ro.product.device]: [loopback]" in listing.splitlines()
    handle.loopback.set_props(**{"debug.answer": "42"})
    assert d.getprop("debug.answer") == "42"
    assert d.prop.model == "Pixel Loop"


@pytest.mark.device
def test_push_pull_10mb_round_trip(loopback_device: ConnectedLoopback, tmp_path: Path) -> None:
    data = os.urandom(10 * 1024 * 1024)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(data)
    sync = loopback_device.device.sync
    assert sync.push(src, "/data/local/tmp/big.bin", mode=0o644, check=True) == len(data)
    host_copy = loopback_device.sandbox / "data/local/tmp/big.bin"
    assert _sha256(host_copy.read_bytes()) == _sha256(data)
    assert stat.S_IMODE(host_copy.stat().st_mode) == 0o644
    assert sync.pull("/data/local/tmp/big.bin", dst) == len(data)
    assert _sha256(dst.read_bytes()) == _sha256(data)


@pytest.mark.device
def test_stat_list_and_sync_errors(loopback_device: ConnectedLoopback) -> None:
    sync = loopback_device.device.sync
    sync.push(b"abc", "/sdcard/dir/a.txt")
    sync.push(b"hello", "/sdcard/dir/b.txt")
    info = sync.stat("/sdcard/dir")
    assert stat.S_ISDIR(info.mode)
    assert sync.stat("/sdcard/dir/b.txt").size == 5
    assert not sync.exists("/sdcard/missing")
    names = {entry.path for entry in sync.list("/sdcard/dir")}
    assert names == {".", "..", "a.txt", "b.txt"}
    assert sync.read_text("/sdcard/dir/a.txt") == "abc"
    with pytest.raises(AdbError, match="No such file"):
        sync.read_bytes("/sdcard/missing")
    with pytest.raises(AdbError):
        sync.push(b"x", "/etc/loopback-should-not-write")
    assert not Path("/etc/loopback-should-not-write").exists()


@pytest.mark.device
def test_paths_are_rewritten_both_ways(loopback_device: ConnectedLoopback) -> None:
    d = loopback_device.device
    assert d.shell("pwd") == "/data/local/tmp"
    assert d.shell("echo hi > /sdcard/note.txt && cat /sdcard/note.txt && ls /sdcard") == "hi\nnote.txt"
    assert (loopback_device.sandbox / "sdcard/note.txt").read_text() == "hi\n"
    assert d.shell("readlink -f /data/local/tmp/../tmp") == "/data/local/tmp"


@pytest.mark.device
def test_proc_cpuinfo_is_the_hosts(loopback_device: ConnectedLoopback) -> None:
    host = Path("/proc/cpuinfo").read_text()
    d = loopback_device.device
    assert _without_mhz(d.shell("cat /proc/cpuinfo")) == _without_mhz(host)
    assert _without_mhz(d.sync.read_text("/proc/cpuinfo")) == _without_mhz(host)
    assert d.shell("nproc") == str(os.cpu_count())


@pytest.mark.device
def test_concurrent_streams(loopback_device: ConnectedLoopback) -> None:
    d = loopback_device.device
    d.sync.push(os.urandom(300_000), "/data/local/tmp/c.bin")
    expected = _sha256(d.sync.read_bytes("/data/local/tmp/c.bin"))

    def job(i: int) -> tuple[str, str]:
        if i % 2:
            return d.shell(f"sleep 0.2; echo job{i}"), f"job{i}"
        return _sha256(d.sync.read_bytes("/data/local/tmp/c.bin")), expected

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(job, range(8)))
    assert all(got == want for got, want in results)
    assert time.monotonic() - t0 < 5.0


@pytest.mark.device
def test_two_devices_are_independent(make_loopback_device) -> None:
    a, b = make_loopback_device(), make_loopback_device()
    assert a.serial != b.serial and a.sandbox != b.sandbox
    a.device.shell("echo A > /data/local/tmp/who")
    assert b.device.shell("cat /data/local/tmp/who 2>&1; echo rc=$?").endswith("rc=1")
    assert a.device.shell("cat /data/local/tmp/who") == "A"


@pytest.mark.device
def test_unauthorized_device(make_loopback_device) -> None:
    handle = make_loopback_device(faults={"unauthorized": True})
    assert device_state(handle.client, handle.serial) == "unauthorized"
    with pytest.raises(AdbError, match="unauthorized"):
        handle.device.shell("echo hi")
    # Changed at runtime: applies from the next handshake.
    handle.faults.set(unauthorized=False)
    handle.loopback.drop_connections()
    handle.reconnect()
    assert handle.device.shell("echo now authorized") == "now authorized"
    handle.faults.set(unauthorized=True)
    handle.loopback.drop_connections()
    assert wait_for_state(handle.client, handle.serial, ["unauthorized"], timeout_s=15) == "unauthorized"


@pytest.mark.device
def test_offline_then_back(loopback_device: ConnectedLoopback) -> None:
    loopback_device.loopback.go_offline()
    wait_for_state(loopback_device.client, loopback_device.serial, ["offline"], timeout_s=5)
    with pytest.raises(AdbError, match="offline"):
        loopback_device.device.shell("echo hi")
    loopback_device.loopback.go_online()
    loopback_device.reconnect()
    assert loopback_device.device.shell("echo back") == "back"


@pytest.mark.device
@pytest.mark.slow
def test_server_reconnects_by_itself(loopback_device: ConnectedLoopback) -> None:
    loopback_device.loopback.go_offline(seconds=1.0)
    wait_for_state(loopback_device.client, loopback_device.serial, ["offline"], timeout_s=5)
    # No connect call: the adb server retries on its own (about every 10 s).
    wait_for_state(loopback_device.client, loopback_device.serial, ["device"], timeout_s=40)
    assert loopback_device.device.shell("echo back") == "back"


@pytest.mark.device
def test_drop_after_bytes(loopback_device: ConnectedLoopback) -> None:
    d = loopback_device.device
    d.sync.push(os.urandom(1_000_000), "/data/local/tmp/one.bin")
    loopback_device.faults.set(drop_after_bytes=20_000)
    with pytest.raises(AdbError):
        d.sync.read_bytes("/data/local/tmp/one.bin")
    assert [e.kind for e in loopback_device.faults.events] == ["drop_after_bytes"]
    assert loopback_device.faults.drop_after_bytes is None
    loopback_device.reconnect()
    assert len(d.sync.read_bytes("/data/local/tmp/one.bin")) == 1_000_000


@pytest.mark.device
def test_drop_at_command(make_loopback_device) -> None:
    handle = make_loopback_device(faults={"drop_at_command": "run-benchmark", "drop_at_command_count": 2})
    d = handle.device
    assert d.shell("echo harmless") == "harmless"
    for _ in range(2):
        with pytest.raises(AdbError):
            d.shell2("echo run-benchmark")
        handle.reconnect()
    assert d.shell2("echo run-benchmark").output == "run-benchmark\n"


@pytest.mark.device
def test_teardown_leaves_no_threads_or_processes(adb_server: PrivateAdbServer) -> None:
    from profiler.adbd.testing import start_connected

    handle = start_connected(adb_server.client)
    # A background job outlives its command (as on a phone) but not the device.
    handle.device.shell("sleep 37.25 >/dev/null 2>&1 &")
    # A command still running when the device stops must be killed too.
    runner = threading.Thread(target=lambda: _swallow(lambda: handle.device.shell("sleep 38.25", timeout=60)))
    runner.start()
    time.sleep(0.3)
    sandbox = handle.sandbox
    handle.close()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("adbd-")]
    assert not sandbox.exists()
    time.sleep(0.2)  # SIGKILL delivery is asynchronous
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 37.25" not in processes and "sleep 38.25" not in processes


def _swallow(fn) -> None:
    try:
        fn()
    except Exception:
        pass


@pytest.mark.device
def test_cli_prints_serial_and_exits_cleanly(adb_server: PrivateAdbServer) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "profiler.loopback", "--prop", "ro.product.model=CliLoop"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        serial = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert serial.startswith("127.0.0.1:")
        assert adb_server.client.device(serial).getprop("ro.product.model") == "CliLoop"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert device_state(adb_server.client, serial) is None


def test_cli_reports_missing_adb_in_one_line(tmp_path: Path) -> None:
    from profiler.adbd.testing import free_port

    env = {
        **os.environ, "PYTHONPATH": str(REPO_ROOT), "ANDROID_ADB_SERVER_PORT": str(free_port()),
        "ADBUTILS_ADB_PATH": str(tmp_path / "no-adb"), "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
    }
    proc = subprocess.run([sys.executable, "-m", "profiler.loopback"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr
