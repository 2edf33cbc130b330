"""The measurement store: one SQLite file, one row per measurement.

WAL mode and one short transaction per measurement: a crash, Ctrl-C or disconnect loses at most
the block in flight, and several device workers (one connection each) write safely at once.
A partial unique index keeps each (device, runner, backend, threads, kind, key) measured once.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from profiler.errors import StoreError

DEFAULT_STORE = Path("measurements") / "measurements.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    serial TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    fingerprint_json TEXT NOT NULL,
    first_seen REAL NOT NULL,
    UNIQUE (serial, fingerprint_hash)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    started REAL NOT NULL,
    finished REAL,
    settings_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    run_id INTEGER REFERENCES runs(id),
    runner TEXT NOT NULL,
    backend TEXT NOT NULL,
    threads INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'block',
    key TEXT NOT NULL,
    latency_ms REAL NOT NULL CHECK (latency_ms > 0),
    mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL, spread REAL,
    n_samples INTEGER NOT NULL,
    samples_us_json TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    settings_json TEXT NOT NULL,
    info_json TEXT NOT NULL DEFAULT '{}',
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_measurement
    ON measurements (device_id, runner, backend, threads, kind, key);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    run_id INTEGER REFERENCES runs(id),
    runner TEXT NOT NULL, backend TEXT NOT NULL, threads INTEGER NOT NULL,
    kind TEXT NOT NULL, key TEXT NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS validations (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    at REAL NOT NULL,
    report_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS env_snapshots (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    device_id INTEGER NOT NULL REFERENCES devices(id),
    at REAL NOT NULL,
    phase TEXT NOT NULL,
    snapshot_json TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class MeasurementRow:
    device_id: int
    runner: str
    backend: str
    threads: int
    kind: str
    key: str
    latency_ms: float
    samples_us: tuple[float, ...]
    stats: dict[str, float]
    attempts: int
    settings: dict[str, Any]
    info: dict[str, Any]
    started_at: float
    finished_at: float


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA busy_timeout=30000")
            self.conn.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"measurement store {self.path} is unreadable or corrupt: {e}") from e

    def _check_version(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        if row is None:
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema {row[0]}, this code reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: tuple) -> int:
        try:
            cur = self.conn.execute(sql, params)
            return int(cur.lastrowid or 0)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"could not write to {self.path}: {e}") from e

    # ---- devices and runs -------------------------------------------------------------------
    def device_id(self, serial: str, fingerprint: dict[str, Any], fingerprint_hash: str) -> int:
        self._write("INSERT OR IGNORE INTO devices (serial, fingerprint_hash, fingerprint_json, first_seen) "
                    "VALUES (?, ?, ?, ?)", (serial, fingerprint_hash, json.dumps(fingerprint, sort_keys=True), time.time()))
        row = self.conn.execute("SELECT id FROM devices WHERE serial=? AND fingerprint_hash=?",
                                (serial, fingerprint_hash)).fetchone()
        return int(row[0])

    def devices(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT id, serial, fingerprint_hash, fingerprint_json FROM devices ORDER BY id")
        return [{"id": r[0], "serial": r[1], "fingerprint_hash": r[2], "fingerprint": json.loads(r[3])} for r in rows]

    def start_run(self, device_id: int, settings: dict[str, Any]) -> int:
        return self._write("INSERT INTO runs (device_id, started, settings_json) VALUES (?, ?, ?)",
                           (device_id, time.time(), json.dumps(settings, sort_keys=True)))

    def finish_run(self, run_id: int) -> None:
        self._write("UPDATE runs SET finished=? WHERE id=?", (time.time(), run_id))

    # ---- measurements -----------------------------------------------------------------------
    def measured_keys(self, device_id: int, runner: str, backend: str, threads: int, kind: str = "block") -> set[str]:
        rows = self.conn.execute("SELECT key FROM measurements WHERE device_id=? AND runner=? AND backend=? "
                                 "AND threads=? AND kind=?", (device_id, runner, backend, threads, kind))
        return {r[0] for r in rows}

    def add(self, m: MeasurementRow, run_id: int | None = None) -> bool:
        """Insert one measurement; False when it was already there (a re-run never duplicates)."""
        s = m.stats
        try:
            cur = self.conn.execute(
                "INSERT INTO measurements (device_id, run_id, runner, backend, threads, kind, key, latency_ms,"
                " mean_ms, std_ms, min_ms, max_ms, spread, n_samples, samples_us_json, attempts, settings_json,"
                " info_json, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                # only the uniqueness conflict is ignored: a CHECK failure (latency <= 0) still raises
                " ON CONFLICT (device_id, runner, backend, threads, kind, key) DO NOTHING",
                (m.device_id, run_id, m.runner, m.backend, m.threads, m.kind, m.key, m.latency_ms,
                 s.get("mean_ms"), s.get("std_ms"), s.get("min_ms"), s.get("max_ms"), s.get("spread"),
                 len(m.samples_us), json.dumps(list(m.samples_us)), m.attempts,
                 json.dumps(m.settings, sort_keys=True), json.dumps(m.info, sort_keys=True, default=str),
                 m.started_at, m.finished_at))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"could not write to {self.path}: {e}") from e
        return cur.rowcount == 1

    def add_failure(self, device_id: int, run_id: int | None, runner: str, backend: str, threads: int,
                    kind: str, key: str, error: str) -> None:
        self._write("INSERT INTO failures (device_id, run_id, runner, backend, threads, kind, key, error, at) "
                    "VALUES (?,?,?,?,?,?,?,?,?)", (device_id, run_id, runner, backend, threads, kind, key, error,
                                                  time.time()))

    def add_snapshot(self, device_id: int, run_id: int | None, phase: str, snapshot: dict[str, Any]) -> None:
        self._write("INSERT INTO env_snapshots (run_id, device_id, at, phase, snapshot_json) VALUES (?,?,?,?,?)",
                    (run_id, device_id, time.time(), phase, json.dumps(snapshot, sort_keys=True)))

    def add_validation(self, device_id: int, report: dict[str, Any]) -> None:
        self._write("INSERT INTO validations (device_id, at, report_json) VALUES (?,?,?)",
                    (device_id, time.time(), json.dumps(report, sort_keys=True)))

    def rows(self, kind: str | None = None) -> Iterator[dict[str, Any]]:
        """Every measurement joined with its device, as plain dicts (export, predictor)."""
        sql = ("SELECT d.serial, d.fingerprint_hash, m.runner, m.backend, m.threads, m.kind, m.key, m.latency_ms,"
               " m.mean_ms, m.std_ms, m.min_ms, m.max_ms, m.spread, m.n_samples, m.attempts, m.started_at,"
               " m.finished_at, m.settings_json, m.samples_us_json FROM measurements m"
               " JOIN devices d ON d.id = m.device_id")
        params: tuple = ()
        if kind:
            sql += " WHERE m.kind = ?"
            params = (kind,)
        cur = self.conn.execute(sql + " ORDER BY m.id", params)
        names = [c[0] for c in cur.description]
        for r in cur:
            yield dict(zip(names, r))

    def latencies(self, serial: str, runner: str | None = None, backend: str = "cpu", threads: int = 1,
                  kind: str = "block") -> dict[str, float]:
        """key -> latency_ms of one device (any fingerprint of that serial, newest wins)."""
        sql = ("SELECT m.key, m.latency_ms FROM measurements m JOIN devices d ON d.id = m.device_id "
               "WHERE d.serial=? AND m.backend=? AND m.threads=? AND m.kind=?")
        params: list[Any] = [serial, backend, threads, kind]
        if runner:
            sql += " AND m.runner=?"
            params.append(runner)
        return {k: v for k, v in self.conn.execute(sql + " ORDER BY m.id", params)}

    def failures(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT key, error, at FROM failures ORDER BY id")
        return [{"key": r[0], "error": r[1], "at": r[2]} for r in cur]
