"""`--serial local`: the profiler measuring this host for real (no adb), store, resume, runners."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.registry import create_space
from profiler.errors import FingerprintError
from profiler.fingerprint import read_env, read_fingerprint
from profiler.run import main as run_main
from profiler.targets import LocalTarget

REPO = Path(__file__).resolve().parents[1]
FAST = ["--warmup", "1", "--runs", "5", "--max-spread", "100"]  # no re-measuring: what is run and stored is tested


def _count(store: Path) -> tuple[int, int]:
    with sqlite3.connect(store) as c:
        return c.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM measurements WHERE kind='block'").fetchone()


def test_local_fingerprint_is_truthful():
    fp = read_fingerprint(LocalTarget())
    assert fp.ncores == os.cpu_count()
    assert fp.kernel == os.uname().release
    assert all(khz > 0 for khz in fp.core_max_khz)
    mask = int(fp.fastest_cores_mask(1), 16)
    assert bin(mask).count("1") == 1 and mask < (1 << fp.ncores)
    env = read_env(LocalTarget())
    assert env.raw  # snapshot has content (frequencies at least)
    assert fp.hw_id and fp.hash != fp.legacy_hash  # this unit, not just this model


class _ScriptEnvTarget(LocalTarget):
    """This host, with the device scripts pointed at another /sys and /proc (as test_device_scripts does)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def shell(self, cmd: str, timeout_s: float = 600.0):
        return super().shell(f"{self.prefix} {cmd}", timeout_s)


def test_unreadable_fingerprint_is_an_error_naming_what_failed(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FingerprintError, match="ncores"):
        read_fingerprint(_ScriptEnvTarget(f"SYSFS_ROOT={empty} PROC_ROOT={empty}"))
    with pytest.raises(FingerprintError, match=r"device_info.sh failed .*exit 3"):
        read_fingerprint(_ScriptEnvTarget("trap 'exit 3' EXIT;"))


def test_unreadable_fingerprint_stops_profiler_run_in_one_line(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "SYSFS_ROOT": str(empty), "PROC_ROOT": str(empty)}
    r = subprocess.run([sys.executable, "-m", "profiler.run", "--serial", "local", "--budget", "1", "--store",
                        str(tmp_path / "m.sqlite")], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "fingerprint" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_budget_run_stores_and_rerun_skips(tmp_path: Path, capsys):
    store = tmp_path / "m.sqlite"
    args = ["--serial", "local", "--budget", "3", "--store", str(store), *FAST]
    assert run_main(args) == 0
    assert _count(store) == (3, 3)
    assert "3 measured" in capsys.readouterr().out
    assert run_main(args) == 0
    assert _count(store) == (3, 3)
    assert "0 measured, 3 already in store" in capsys.readouterr().out
    with sqlite3.connect(store) as c:
        lat, n, settings, fp = c.execute(
            "SELECT m.latency_ms, m.n_samples, m.settings_json, d.fingerprint_json FROM measurements m "
            "JOIN devices d ON d.id = m.device_id WHERE m.kind = 'block'").fetchone()
    assert lat > 0 and n == 5
    assert '"cpu_mask"' in settings and '"kernel"' in fp


@pytest.mark.slow
def test_subnet_option_measures_exactly_its_blocks(tmp_path: Path, capsys):
    space = create_space("elasticvit")
    keys = {b.key for b in space.blocks_of(space.subnet("T1"))}
    store = tmp_path / "m.sqlite"
    assert run_main(["--serial", "local", "--subnet", "T1", "--store", str(store), *FAST]) == 0
    with sqlite3.connect(store) as c:
        assert {k for (k,) in c.execute("SELECT key FROM measurements WHERE kind='block'")} == keys
    assert f"{len(keys)} measured" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [(["--subnet", "T1", "--budget", "3"], "drop --budget"),
                                       (["--subnet", "L9"], "unknown subnet 'L9'"),
                                       (["--budget", "-5"], "must be >= 1"),
                                       (["--budget", "3", "--cpu-mask", "1; rm -rf /"], "not a non-zero hex CPU mask"),
                                       (["--budget", "3", "--cpu-mask", "100"], "selects none of the"),
                                       (["--budget", "3", "--max-spread", "nan"], "--max-spread")])
def test_bad_input_is_one_line_error(tmp_path: Path, capsys, argv, msg):
    with pytest.raises(SystemExit) if "-5" in argv else contextlib.nullcontext() as exited:
        rc = run_main(["--serial", "local", "--store", str(tmp_path / "m.sqlite"), *argv])
    assert (exited.value.code if exited else rc) == 2  # argparse's own exit code for a bad value is 2 too
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert exited or len(err.strip().splitlines()) == 1  # argparse's own errors come with its usage lines


@pytest.mark.slow
def test_killed_run_resumes_with_every_block_once(tmp_path: Path):
    store = tmp_path / "m.sqlite"
    # batches of 2 models per runner command: a kill lands between stored batches
    cmd = [sys.executable, "-m", "profiler.run", "--serial", "local", "--budget", "6", "--store", str(store), *FAST,
           "--batch-size", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if store.exists() and _count(store)[0] >= 2:
                break
        except sqlite3.OperationalError:  # the file exists a moment before its tables do
            pass
        time.sleep(0.2)
    proc.kill()  # SIGKILL mid-run: no cleanup code runs
    proc.wait()
    first, _ = _count(store)
    assert 2 <= first < 6
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert _count(store) == (6, 6)
    assert f"{first} already in store" in done.stdout


@pytest.mark.slow
def test_tflite_benchmark_runner_on_this_host(tmp_path: Path):
    store = tmp_path / "m.sqlite"
    tool = REPO / "device_scripts" / "litert_benchmark_model.py"
    args = ["--serial", "local", "--budget", "2", "--store", str(store), "--runner", "tflite-benchmark",
            "--benchmark-binary", str(tool), *FAST]
    assert run_main(args) == 0
    with sqlite3.connect(store) as c:
        rows = c.execute("SELECT runner, n_samples, latency_ms FROM measurements WHERE kind='block'").fetchall()
    assert len(rows) == 2 and all(r[0] == "tflite-benchmark" and r[1] == 3 and r[2] > 0 for r in rows)


def test_missing_benchmark_binary_is_one_line_error(tmp_path: Path):
    cmd = [sys.executable, "-m", "profiler.run", "--serial", "local", "--budget", "1", "--store",
           str(tmp_path / "m.sqlite"), "--runner", "tflite-benchmark", "--benchmark-binary", str(tmp_path / "nope")]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2  # the README's exit code for bad input
    assert "no such file" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "benchmark_model"
    bad.write_bytes(b"\x7fELF" + bytes(range(256)) * 4)  # not a program this device can run
    cmd[-1] = str(bad)
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "does not run" in r.stderr and "Traceback" not in r.stderr


def test_no_adb_server_is_one_line_error(tmp_path: Path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(port), "ADBUTILS_ADB_PATH": str(tmp_path / "no-adb")}
    r = subprocess.run([sys.executable, "-m", "profiler.run", "--budget", "1", "--store", str(tmp_path / "m.sqlite")],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: no adb server reachable") and "Traceback" not in r.stderr
