"""The export cache's size cap: least recently used first, the running command's files spared."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nas import export, export_cache
from nas.blocks import parse_key


def _file(path: Path, size: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_evict_removes_least_recently_used_first_and_spares_protected_and_foreign_files(tmp_path: Path) -> None:
    dirs = [tmp_path / "tflite", tmp_path / "onnx"]
    oldest = _file(dirs[0] / "a.tflite", 400, age_s=5000)
    older = _file(dirs[1] / "b.onnx", 300, age_s=4000)
    old = _file(dirs[0] / "c.tflite", 200, age_s=3000)
    recent = _file(dirs[0] / "d.tflite", 500, age_s=10)  # used by the running command
    partial = _file(dirs[0] / "e.tflite.123.tmp", 999, age_s=9000)  # a conversion being written
    foreign = _file(tmp_path / "notes.txt", 999, age_s=9000)  # not in a cache folder
    ev = export_cache.evict(dirs, cap_bytes=800, protect_after=time.time() - 60)
    assert not oldest.exists() and not older.exists()
    assert old.exists() and recent.exists() and partial.exists() and foreign.exists()
    assert (ev.removed_files, ev.removed_bytes, ev.kept_bytes) == (2, 700, 700)
    # Over the cap but everything left is protected: the cap is soft, nothing of the command's is lost.
    ev = export_cache.evict(dirs, cap_bytes=100, protect_after=time.time() - 3500)
    assert ev.removed_files == 0 and old.exists() and recent.exists()


def test_max_bytes_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(export_cache.MAX_GB_ENV, raising=False)
    assert export_cache.max_bytes() == int(export_cache.DEFAULT_MAX_GB * 2**30)
    monkeypatch.setenv(export_cache.MAX_GB_ENV, "0.5")
    assert export_cache.max_bytes() == 2**29
    monkeypatch.setenv(export_cache.MAX_GB_ENV, "0")
    assert export_cache.max_bytes() is None
    monkeypatch.setenv(export_cache.MAX_GB_ENV, "lots")
    with pytest.raises(ValueError, match="MOBILEVIT_NAS_CACHE_MAX_GB"):
        export_cache.max_bytes()


def test_a_conversion_enforces_the_cap_and_a_hit_marks_the_file_used(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stale = [_file(tmp_path / "onnx" / f"old{i}.onnx", 2**20, age_s=7200 + i) for i in range(3)]
    monkeypatch.setenv(export_cache.MAX_GB_ENV, str(1.5 / 1024))  # 1.5 MB: room for one stale file
    monkeypatch.setattr(export_cache, "_last_check", -float("inf"))
    cfg = parse_key("transffn_4_64_3_hard_swish_ln")
    path = export.export_block(cfg, "onnx", cache_dir=tmp_path)
    assert path.exists() and path.parent == tmp_path / "onnx"
    assert [p.exists() for p in stale] == [True, False, False]  # the two least recently used went
    t = time.time() - 9000
    os.utime(path, (t, t))
    conversions = export.conversions["onnx"]
    assert export.export_block(cfg, "onnx", cache_dir=tmp_path) == path
    assert export.conversions["onnx"] == conversions  # a hit, not a conversion
    assert path.stat().st_mtime > time.time() - 60
