"""End to end through the real adb server: the profiler driving loopback devices over adb."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from profiler.adbd.testing import wait_for_state
from profiler.run import main as run_main

pytestmark = [pytest.mark.device, pytest.mark.slow]
FAST = ["--warmup", "1", "--runs", "5", "--max-spread", "100"]  # no re-measuring: what is run and stored is tested


def _rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as c:
        return c.execute("SELECT (SELECT a.serial FROM addresses a WHERE a.device_id = d.id ORDER BY a.last_seen "
                         "DESC LIMIT 1), m.key, m.runner, m.backend, m.threads, m.n_samples, m.latency_ms, "
                         "m.settings_json, d.fingerprint_json FROM measurements m JOIN devices d "
                         "ON d.id = m.device_id WHERE m.kind = 'block' ORDER BY m.id").fetchall()


def test_loopback_rows_match_local_rows(loopback_device, tmp_path: Path):
    store = tmp_path / "m.sqlite"
    pick = ["--pick", "random"]  # the adaptive pick depends on measured values; here both must pick the same
    assert run_main(["--serial", loopback_device.serial, "--budget", "2", "--store", str(store), *FAST, *pick]) == 0
    assert run_main(["--serial", "local", "--budget", "2", "--store", str(store), *FAST, *pick]) == 0
    rows = _rows(store)
    adb_rows = [r for r in rows if r[0] == loopback_device.serial]
    local_rows = [r for r in rows if r[0] == "local"]
    assert len(adb_rows) == len(local_rows) == 2
    # same seed and budget: the same blocks, the same kind of rows, real positive latencies
    assert sorted(r[1] for r in adb_rows) == sorted(r[1] for r in local_rows)
    for a, b in zip(sorted(adb_rows, key=lambda r: r[1]), sorted(local_rows, key=lambda r: r[1])):
        assert a[2:6] == b[2:6]
        assert a[6] > 0 and b[6] > 0
        assert set(json.loads(a[7])) == set(json.loads(b[7]))
        assert set(json.loads(a[8])) == set(json.loads(b[8]))
    fp = json.loads(adb_rows[0][8])
    assert fp["model"] == "Loopback" and fp["android_version"] == "14"


def test_disconnect_mid_run_is_retried_without_loss_or_duplicates(make_loopback_device, tmp_path: Path):
    dev = make_loopback_device(faults={"drop_at_command": "--warmup", "drop_at_command_count": 2})
    store = tmp_path / "m.sqlite"
    assert run_main(["--serial", dev.serial, "--budget", "4", "--store", str(store), *FAST]) == 0
    assert len(dev.faults.events) == 2  # the connection really dropped, twice
    keys = [r[1] for r in _rows(store)]
    assert len(keys) == 4 and len(set(keys)) == 4


def test_run_stopped_by_a_lasting_disconnect_resumes_on_rerun(make_loopback_device, tmp_path: Path, capsys):
    dev = make_loopback_device()
    store = tmp_path / "m.sqlite"
    args = ["--serial", dev.serial, "--budget", "2", "--store", str(store), *FAST]
    assert run_main(args) == 0
    # every retry of the next block drops too (1 try + 3 retries): the run stops with a clear error
    dev.faults.set(drop_at_command="--warmup", drop_at_command_count=4)
    args[3] = "4"
    assert run_main(args) == 1
    assert "re-run to resume" in capsys.readouterr().err
    assert len(_rows(store)) == 2
    dev.faults.clear()
    dev.reconnect()  # as a user would: `adb connect` again once the device is back
    assert run_main(args) == 0
    keys = [r[1] for r in _rows(store)]
    assert len(keys) == 4 and len(set(keys)) == 4


def test_two_devices_in_parallel_into_one_store(make_loopback_device, tmp_path: Path, capsys):
    a, b = make_loopback_device(), make_loopback_device()
    store = tmp_path / "m.sqlite"
    assert run_main(["--serial", a.serial, "--serial", b.serial, "--budget", "3", "--store", str(store), *FAST]) == 0
    rows = _rows(store)
    assert sorted({r[0] for r in rows}) == sorted([a.serial, b.serial])
    for serial in (a.serial, b.serial):
        keys = [r[1] for r in rows if r[0] == serial]
        assert len(keys) == 3 and len(set(keys)) == 3
    out = capsys.readouterr().out
    assert f"{a.serial}: 3 measured" in out and f"{b.serial}: 3 measured" in out


def test_unauthorized_device_is_one_line_error(make_loopback_device, tmp_path: Path, capsys):
    dev = make_loopback_device(faults={"unauthorized": True})
    assert run_main(["--serial", dev.serial, "--budget", "1", "--store", str(tmp_path / "m.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unauthorized" in err[0]


def test_offline_device_is_one_line_error(loopback_device, tmp_path: Path, capsys):
    loopback_device.loopback.go_offline()
    wait_for_state(loopback_device.client, loopback_device.serial, ["offline"], timeout_s=10)
    assert run_main(["--serial", loopback_device.serial, "--budget", "1", "--store", str(tmp_path / "m.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "offline" in err[0]


def test_unknown_and_ambiguous_serials(make_loopback_device, tmp_path: Path, capsys):
    make_loopback_device()
    make_loopback_device()
    store = str(tmp_path / "m.sqlite")
    assert run_main(["--budget", "1", "--store", store]) == 2
    assert "pass --serial" in capsys.readouterr().err
    assert run_main(["--serial", "no-such-phone", "--budget", "1", "--store", store]) == 2
    assert "not attached" in capsys.readouterr().err


def test_a_reused_serial_answering_as_another_device_is_kept_apart(make_loopback_device, tmp_path: Path, capsys,
                                                                   caplog):
    store = tmp_path / "m.sqlite"
    first = make_loopback_device()
    serial, port = first.serial, first.loopback.port
    assert run_main(["--serial", serial, "--budget", "2", "--store", str(store), "--pick", "random", *FAST]) == 0
    first.close()
    # another phone (another OS build) behind the same address, e.g. a reused port
    second = make_loopback_device(port=port, props={"ro.build.version.release": "15"})
    assert second.serial == serial
    capsys.readouterr()
    assert run_main(["--serial", serial, "--budget", "2", "--store", str(store), "--pick", "random", *FAST]) == 0
    captured = capsys.readouterr()
    # one warning line (a command line prints it on stderr; under pytest the log capture holds it)
    notes = [r.getMessage() for r in caplog.records if "now answers as" in r.getMessage()]
    assert len(notes) == 1 and "kept apart" in notes[0] and "OS 15" in notes[0]
    assert "2 measured, 0 already in store" in captured.out  # the first device's rows are not this one's
    with sqlite3.connect(store) as c:
        per_device = c.execute("SELECT device_id, COUNT(*) FROM measurements WHERE kind='block' "
                               "GROUP BY device_id").fetchall()
    assert [n for _, n in per_device] == [2, 2]
