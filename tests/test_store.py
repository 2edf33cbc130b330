"""The SQLite measurement store, LUT import and CSV export (real SQLite files)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from profiler.errors import StoreError
from profiler.export import main as export_main
from profiler.import_lut import main as import_main
from profiler.store import MeasurementRow, Store


def _row(device_id: int, key: str, ms: float = 1.0) -> MeasurementRow:
    return MeasurementRow(device_id, "linux-python", "cpu", 1, "block", key, ms, (ms * 1e3, ms * 1e3), {"mean_ms": ms},
                          1, {"run": {}}, {}, 0.0, 1.0)


def test_one_row_per_measurement_and_no_duplicates(tmp_path: Path):
    with Store(tmp_path / "m.sqlite") as s:
        dev = s.register_device({"model": "x"}, "h1", "abc").id
        assert s.register_device({"model": "x"}, "h1", "abc").id == dev
        assert s.add(_row(dev, "k1"))
        assert not s.add(_row(dev, "k1", 2.0))  # a re-run never duplicates
        assert s.add(_row(dev, "k2"))
        assert s.latencies(dev) == {"k1": 1.0, "k2": 1.0}
        assert s.add(_row(dev, "k1", 3.0), replace=True)  # a re-timing that supersedes (a disturbed chunk)
        assert s.latencies(dev) == {"k1": 3.0, "k2": 1.0}
        assert s.conn.execute("SELECT COUNT(*), MAX(mean_ms) FROM measurements").fetchone() == (2, 3.0)


def test_a_device_is_its_fingerprint_not_its_serial(tmp_path: Path):
    with Store(tmp_path / "m.sqlite") as s:
        usb = s.register_device({"model": "x"}, "h1", "ABC123")
        wifi = s.register_device({"model": "x"}, "h1", "10.0.0.5:5555")  # the same phone over Wi-Fi
        assert wifi.id == usb.id and wifi.others_at_serial == ()
        s.add(_row(usb.id, "k1", 1.0))
        # an OS update (or a reused loopback port): the same serial answers with another fingerprint
        updated = s.register_device({"model": "x", "os": "15"}, "h2", "ABC123")
        assert updated.id != usb.id and updated.others_at_serial == ("h1",)
        s.add(_row(updated.id, "k1", 5.0))
        assert s.latencies(usb.id) == {"k1": 1.0} and s.latencies(updated.id) == {"k1": 5.0}
        assert s.find_device("h2") == updated.id
        with pytest.raises(StoreError, match="names 2 devices"):
            s.find_device("ABC123")
        assert s.find_device("10.0.0.5:5555") == usb.id


_V1_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE devices (id INTEGER PRIMARY KEY, serial TEXT NOT NULL, fingerprint_hash TEXT NOT NULL,
    fingerprint_json TEXT NOT NULL, first_seen REAL NOT NULL, UNIQUE (serial, fingerprint_hash));
CREATE TABLE measurements (id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL REFERENCES devices(id),
    run_id INTEGER, runner TEXT NOT NULL, backend TEXT NOT NULL, threads INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'block', key TEXT NOT NULL, latency_ms REAL NOT NULL CHECK (latency_ms > 0),
    mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL, spread REAL, n_samples INTEGER NOT NULL,
    samples_us_json TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1, settings_json TEXT NOT NULL,
    info_json TEXT NOT NULL DEFAULT '{}', started_at REAL NOT NULL, finished_at REAL NOT NULL);
CREATE UNIQUE INDEX one_measurement ON measurements (device_id, runner, backend, threads, kind, key);
INSERT INTO devices VALUES (1, 'local', 'oldhash', '{}', 0), (2, 'local', 'otherhash', '{}', 0);
INSERT INTO measurements (device_id, runner, backend, threads, key, latency_ms, n_samples, samples_us_json,
    settings_json, started_at, finished_at) VALUES (1, 'linux-python', 'cpu', 1, 'k1', 1.5, 1, '[]', '{}', 0, 0),
    (2, 'linux-python', 'cpu', 1, 'k1', 9.0, 1, '[]', '{}', 0, 0);
"""


def test_schema_1_store_migrates_and_keeps_devices_apart(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as c:
        c.executescript(_V1_SCHEMA)
    with Store(path) as s:
        # schema 1 merged every fingerprint a serial ever had; after migration the device that answers
        # claims only the rows stored under its own (old-style) hash
        dev = s.register_device({"model": "x"}, "newhash", "local", legacy_hash="oldhash")
        assert dev.id == 1 and s.latencies(dev.id) == {"k1": 1.5}
        again = s.register_device({"model": "x"}, "newhash", "local", legacy_hash="oldhash")
        assert again.id == 1
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()[0] == "2"


def test_zero_latency_is_rejected(tmp_path: Path):
    with Store(tmp_path / "m.sqlite") as s:
        dev = s.register_device({}, "h", "abc").id
        with pytest.raises(StoreError):
            s.add(_row(dev, "k", 0.0))


def test_corrupt_store_is_a_clear_error(tmp_path: Path):
    p = tmp_path / "bad.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="corrupt"):
        Store(p)


def test_parallel_writers_into_one_store(tmp_path: Path):
    path = tmp_path / "m.sqlite"
    with Store(path) as s:
        devs = [s.register_device({}, f"h{i}", f"d{i}").id for i in range(2)]

    def work(dev: int) -> None:
        with Store(path) as s:
            for k in range(200):
                s.add(_row(dev, f"k{k}"))

    threads = [threading.Thread(target=work, args=(d,)) for d in devs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 400


def test_import_published_lut_and_export_csv(tmp_path: Path, capsys):
    lut = tmp_path / "phone.json"
    lut.write_text(json.dumps({"firstconv_128_3_16_2_3": 0.19, "transffn_7_96_2_hard_swish_ln": 0.05}))
    store = tmp_path / "m.sqlite"
    assert import_main([str(lut), "--device", "phone", "--store", str(store)]) == 0
    assert import_main([str(lut), "--device", "phone", "--store", str(store)]) == 0
    assert "0 entries" in capsys.readouterr().out.splitlines()[-1].replace("imported ", "")
    out = tmp_path / "m.csv"
    assert export_main(["--store", str(store), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2
    assert {"fingerprint", "serials", "runner", "backend", "threads", "key", "latency_ms"} <= set(rows[0])
    assert rows[0]["serials"] == "phone"
    assert {r["key"]: float(r["latency_ms"]) for r in rows} == {"firstconv_128_3_16_2_3": 0.19,
                                                                 "transffn_7_96_2_hard_swish_ln": 0.05}


@pytest.mark.parametrize("content, msg", [({"nope_1": 1.0}, "unknown block type"),
                                           ({"firstconv_128_3_16_2_3": 0}, "positive")])
def test_import_rejects_bad_luts(tmp_path: Path, capsys, content, msg):
    lut = tmp_path / "bad.json"
    lut.write_text(json.dumps(content))
    assert import_main([str(lut), "--device", "x", "--store", str(tmp_path / "m.sqlite")]) == 2
    assert msg in capsys.readouterr().err


def test_import_shipped_lut_by_name(tmp_path: Path, capsys):
    store = tmp_path / "m.sqlite"
    assert import_main(["xiaomi11", "--device", "mi11", "--store", str(store)]) == 0
    assert "imported 12116 entries" in capsys.readouterr().out
    with Store(store) as s:
        lat = s.latencies(s.find_device("mi11"))
    assert len(lat) == 12116 and all(ms > 0 for ms in lat.values())


def test_import_unknown_lut_name_is_one_line_error(tmp_path: Path, capsys):
    assert import_main(["pixel99", "--device", "x", "--store", str(tmp_path / "m.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "no published LUT named 'pixel99'" in err and "pixel4" in err and len(err.splitlines()) == 1


def test_import_corrupt_gzip_is_one_line_error(tmp_path: Path, capsys):
    lut = tmp_path / "bad.json.gz"
    lut.write_bytes(b"\x1f\x8b not really gzip")
    assert import_main([str(lut), "--device", "x", "--store", str(tmp_path / "m.sqlite")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def _as_user(cmd: list[str]) -> list[str]:
    """Run `cmd` without root's power to ignore file permissions (CI runs as root)."""
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: file permissions cannot be enforced")
        return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    return cmd


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_as_user([sys.executable, "-m", *args]), capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


@pytest.fixture
def read_only_store(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with Store(folder / "m.sqlite") as s:
        s.add(_row(s.register_device({"model": "x"}, "h1", "abc").id, "firstconv_128_3_16_2_3"))
    (folder / "m.sqlite").chmod(0o444)
    folder.chmod(0o555)
    yield folder / "m.sqlite"
    folder.chmod(0o755)


def test_healthy_store_in_read_only_folder_exports_and_is_not_called_corrupt(read_only_store: Path, tmp_path: Path):
    out = tmp_path / "out.csv"
    p = _cli("profiler.export", "--store", str(read_only_store), "--csv", str(out))
    assert p.returncode == 0, p.stderr
    assert len(list(csv.DictReader(out.open()))) == 1


def test_read_only_store_is_exit_2_and_says_the_data_is_intact(read_only_store: Path):
    p = _cli("profiler.run", "--serial", "local", "--budget", "1", "--store", str(read_only_store))
    assert p.returncode == 2, p.stderr
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "read-only" in err and "intact" in err and "corrupt" not in err


def test_export_of_empty_file_does_not_write_a_schema_into_it(tmp_path: Path, capsys):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    assert export_main(["--store", str(empty), "--csv", str(tmp_path / "o.csv")]) == 2
    assert "empty" in capsys.readouterr().err
    assert empty.stat().st_size == 0
    assert export_main(["--store", str(tmp_path / "none.sqlite"), "--csv", str(tmp_path / "o.csv")]) == 2
    assert not (tmp_path / "none.sqlite").exists()
