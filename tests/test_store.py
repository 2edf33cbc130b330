"""The SQLite measurement store, LUT import and CSV export (real SQLite files)."""
from __future__ import annotations

import csv
import json
import sqlite3
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
        dev = s.device_id("abc", {"model": "x"}, "h1")
        assert s.device_id("abc", {"model": "x"}, "h1") == dev
        assert s.add(_row(dev, "k1"))
        assert not s.add(_row(dev, "k1", 2.0))  # a re-run never duplicates
        assert s.add(_row(dev, "k2"))
        assert s.measured_keys(dev, "linux-python", "cpu", 1) == {"k1", "k2"}
        assert s.latencies("abc") == {"k1": 1.0, "k2": 1.0}


def test_zero_latency_is_rejected(tmp_path: Path):
    with Store(tmp_path / "m.sqlite") as s:
        dev = s.device_id("abc", {}, "h")
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
        devs = [s.device_id(f"d{i}", {}, f"h{i}") for i in range(2)]

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
    assert {"device", "runner", "backend", "threads", "key", "latency_ms"} <= set(rows[0])
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
        lat = s.latencies("mi11")
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
