"""The measurement store: one SQLite file, one row per measurement.

WAL mode and one short transaction per measurement: a crash, Ctrl-C or disconnect loses at most
the block in flight, and several device workers (one connection each) write safely at once.
A device is its fingerprint (`devices.fingerprint_hash`, unique); a serial is only an address
(`addresses`: which serials reached which device). Every query, resume decision and fit is keyed
by the device id. A partial unique index keeps each (device, runner, backend, threads, kind, key)
measured once.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from profiler.errors import StoreError, StoreReadOnly

log = logging.getLogger(__name__)
DEFAULT_STORE = Path("measurements") / "measurements.sqlite"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    fingerprint_hash TEXT NOT NULL UNIQUE,
    fingerprint_json TEXT NOT NULL,
    first_seen REAL NOT NULL,
    -- rows migrated from schema 1: the serial and hash they were stored under, until a device claims them
    legacy_serial TEXT,
    legacy_hash TEXT
);
CREATE TABLE IF NOT EXISTS addresses (
    serial TEXT NOT NULL,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (serial, device_id)
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


@dataclass(frozen=True)
class DeviceRecord:
    id: int
    fingerprint_hash: str
    # devices that answered at this serial before, other than this one (a reused port, an OS update, a store
    # shared between hosts): callers say so in one line; their measurements stay apart
    others_at_serial: tuple[str, ...] = ()


_V1_MIGRATION = """
CREATE TABLE devices_v2 (
    id INTEGER PRIMARY KEY, fingerprint_hash TEXT NOT NULL UNIQUE, fingerprint_json TEXT NOT NULL,
    first_seen REAL NOT NULL, legacy_serial TEXT, legacy_hash TEXT);
INSERT INTO devices_v2 SELECT id, 'legacy:' || id, fingerprint_json, first_seen, serial, fingerprint_hash FROM devices;
CREATE TABLE addresses (serial TEXT NOT NULL, device_id INTEGER NOT NULL REFERENCES devices(id),
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, PRIMARY KEY (serial, device_id));
INSERT INTO addresses SELECT serial, id, first_seen, first_seen FROM devices;
DROP TABLE devices;
ALTER TABLE devices_v2 RENAME TO devices;
UPDATE meta SET value = '2' WHERE name = 'schema_version';
"""


class Store:
    """The measurement store. `read_only=True` (exporting, reading for a fit) never writes the file,
    not even its schema, and works on a store in a read-only folder."""

    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only:
            self.conn = self._open_read_only()
        else:
            self.conn = self._open_for_writing()

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(f"no measurement store at {self.path}")
        if self.path.stat().st_size == 0:
            raise StoreError(f"{self.path} is an empty file, not a measurement store")
        # A store in a read-only folder cannot get its -shm file; immutable=1 reads it without one.
        writable_dir = os.access(self.path.parent, os.W_OK)
        uri = f"file:{self.path.resolve()}?mode=ro" + ("" if writable_dir else "&immutable=1")
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._check_version(conn, upgrade=False)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"measurement store {self.path} is unreadable or corrupt: {e}") from e
        return conn

    def _open_for_writing(self) -> sqlite3.Connection:
        where = self.path.parent
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreReadOnly(f"cannot create the folder of store {self.path}: {e.strerror}") from e
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise StoreReadOnly(f"measurement store {self.path} is read-only (its data is intact): make it writable "
                                "or pass another --store")
        if not os.access(where, os.W_OK):
            raise StoreReadOnly(f"folder {where} is read-only: SQLite must create {self.path.name}-wal/-shm beside the "
                                "store (its data is intact); make the folder writable or copy the store elsewhere")
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._check_version(conn, upgrade=True)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"measurement store {self.path} is unreadable or corrupt: {e}") from e
        return conn

    def _check_version(self, conn: sqlite3.Connection, upgrade: bool) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if not upgrade:
                raise StoreError(f"{self.path} is not a measurement store (no meta table)")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return
        row = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        version = int(row[0]) if row else SCHEMA_VERSION
        if version == 1 and upgrade:
            conn.executescript("BEGIN IMMEDIATE;" + _V1_MIGRATION + "COMMIT;")
            log.warning("migrated store %s to schema %d: devices are now keyed by fingerprint", self.path,
                        SCHEMA_VERSION)
            version = SCHEMA_VERSION
        if version == 1:  # read-only: schema 1 cannot be migrated here
            raise StoreError(f"store {self.path} has schema 1; open it once for writing (e.g. profiler.run) to "
                             "migrate it")
        if version != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema {version}, this code reads {SCHEMA_VERSION}")
        if upgrade:
            conn.executescript(_SCHEMA)

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
    def register_device(self, fingerprint: dict[str, Any], fingerprint_hash: str, serial: str | None = None,
                        legacy_hash: str | None = None) -> DeviceRecord:
        """The device with this fingerprint (added when new) and, when reached through `serial`, that
        address. A schema-1 row stored under the same serial and `legacy_hash` is this device's history:
        it is claimed (once) instead of starting an empty device."""
        now = time.time()
        row = self.conn.execute("SELECT id FROM devices WHERE fingerprint_hash=?", (fingerprint_hash,)).fetchone()
        if row is None and serial is not None and legacy_hash is not None:
            legacy = self.conn.execute("SELECT id FROM devices WHERE legacy_serial=? AND legacy_hash=?",
                                       (serial, legacy_hash)).fetchone()
            if legacy is not None:
                self._write("UPDATE devices SET fingerprint_hash=?, fingerprint_json=?, legacy_serial=NULL, "
                            "legacy_hash=NULL WHERE id=?",
                            (fingerprint_hash, json.dumps(fingerprint, sort_keys=True), legacy[0]))
                row = legacy
        if row is None:
            self._write("INSERT OR IGNORE INTO devices (fingerprint_hash, fingerprint_json, first_seen) VALUES (?,?,?)",
                        (fingerprint_hash, json.dumps(fingerprint, sort_keys=True), now))
            row = self.conn.execute("SELECT id FROM devices WHERE fingerprint_hash=?", (fingerprint_hash,)).fetchone()
        device_id = int(row[0])
        others: tuple[str, ...] = ()
        if serial is not None:
            others = tuple(r[0] for r in self.conn.execute(
                "SELECT d.fingerprint_hash FROM addresses a JOIN devices d ON d.id = a.device_id "
                "WHERE a.serial=? AND a.device_id<>? ORDER BY a.last_seen", (serial, device_id)))
            self._write("INSERT INTO addresses (serial, device_id, first_seen, last_seen) VALUES (?,?,?,?) "
                        "ON CONFLICT (serial, device_id) DO UPDATE SET last_seen=excluded.last_seen",
                        (serial, device_id, now, now))
        return DeviceRecord(device_id, fingerprint_hash, others)

    def devices(self) -> list[dict[str, Any]]:
        """Every device with the serials that reached it (most recent last)."""
        out = []
        for r in self.conn.execute("SELECT id, fingerprint_hash, fingerprint_json FROM devices ORDER BY id").fetchall():
            serials = [s[0] for s in self.conn.execute(
                "SELECT serial FROM addresses WHERE device_id=? ORDER BY last_seen", (r[0],))]
            out.append({"id": r[0], "fingerprint_hash": r[1], "fingerprint": json.loads(r[2]), "serials": serials})
        return out

    def find_device(self, ref: str) -> int:
        """A device id from a fingerprint hash (or a unique prefix of one) or a serial that reached exactly
        one device; for offline tools that are not talking to the device. Raises StoreError otherwise."""
        devs = self.devices()
        by_hash = [d for d in devs if d["fingerprint_hash"].startswith(ref)]
        if len(by_hash) == 1:
            return int(by_hash[0]["id"])
        by_serial = [d for d in devs if ref in d["serials"]]
        if len(by_serial) == 1:
            return int(by_serial[0]["id"])
        if not by_serial and not by_hash:
            known = ", ".join(f"{d['fingerprint_hash']} ({'/'.join(d['serials']) or 'no serial'})" for d in devs)
            raise StoreError(f"no device {ref!r} in {self.path} (devices: {known or 'none'})")
        many = by_serial or by_hash
        raise StoreError(f"{ref!r} names {len(many)} devices in {self.path} "
                         f"({', '.join(d['fingerprint_hash'] for d in many)}): give the fingerprint hash")

    def start_run(self, device_id: int, settings: dict[str, Any]) -> int:
        return self._write("INSERT INTO runs (device_id, started, settings_json) VALUES (?, ?, ?)",
                           (device_id, time.time(), json.dumps(settings, sort_keys=True)))

    def finish_run(self, run_id: int) -> None:
        self._write("UPDATE runs SET finished=? WHERE id=?", (time.time(), run_id))

    # ---- measurements -----------------------------------------------------------------------
    def add(self, m: MeasurementRow, run_id: int | None = None, replace: bool = False) -> bool:
        """Insert one measurement; False when it was already there (a re-run never duplicates). With
        `replace` a measurement already there is overwritten: a re-timing that supersedes it (a probe timed
        beside new networks, a network measured again because its period was disturbed)."""
        s = m.stats
        cols = ("run_id", "latency_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "spread", "n_samples",
                "samples_us_json", "attempts", "settings_json", "info_json", "started_at", "finished_at")
        conflict = ("DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in cols)) if replace else "DO NOTHING"
        try:
            cur = self.conn.execute(
                "INSERT INTO measurements (device_id, run_id, runner, backend, threads, kind, key, latency_ms,"
                " mean_ms, std_ms, min_ms, max_ms, spread, n_samples, samples_us_json, attempts, settings_json,"
                " info_json, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                # only the uniqueness conflict is ignored: a CHECK failure (latency <= 0) still raises
                " ON CONFLICT (device_id, runner, backend, threads, kind, key) " + conflict,
                (m.device_id, run_id, m.runner, m.backend, m.threads, m.kind, m.key, m.latency_ms,
                 s.get("mean_ms"), s.get("std_ms"), s.get("min_ms"), s.get("max_ms"), s.get("spread"),
                 len(m.samples_us), json.dumps(list(m.samples_us)), m.attempts,
                 json.dumps(m.settings, sort_keys=True), json.dumps(m.info, sort_keys=True, default=str),
                 m.started_at, m.finished_at))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"could not write to {self.path}: {e}") from e
        return cur.rowcount == 1

    def copy(self, device_id: int, runner: str, backend: str, threads: int, src: tuple[str, str],
             dst: tuple[str, str], info: dict[str, Any], run_id: int | None = None) -> None:
        """Store measurement `src` (kind, key) again as `dst`, its info updated with `info`, replacing what `dst`
        held: a timing chosen among several (a network's median pass) keeps its own raw samples and stats."""
        cols = ("latency_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "spread", "n_samples", "samples_us_json",
                "attempts", "settings_json", "info_json", "started_at", "finished_at")
        row = self.conn.execute(f"SELECT {', '.join(cols)} FROM measurements WHERE device_id=? AND runner=? AND"
                                " backend=? AND threads=? AND kind=? AND key=?",
                                (device_id, runner, backend, threads, *src)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no measurement {src[0]} {src[1]!r} to copy")
        values = dict(zip(cols, row))
        values["info_json"] = json.dumps({**json.loads(values["info_json"] or "{}"), **info}, sort_keys=True,
                                         default=str)
        names = ("device_id", "run_id", "runner", "backend", "threads", "kind", "key", *cols)
        try:
            self.conn.execute(
                f"INSERT INTO measurements ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
                " ON CONFLICT (device_id, runner, backend, threads, kind, key) DO UPDATE SET "
                + ", ".join(f"{c}=excluded.{c}" for c in ("run_id", *cols)),
                (device_id, run_id, runner, backend, threads, *dst, *values.values()))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"could not write to {self.path}: {e}") from e

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
        """Every measurement with its device's fingerprint hash, as plain dicts (export)."""
        sql = ("SELECT d.fingerprint_hash, (SELECT group_concat(a.serial, ' ') FROM addresses a"
               " WHERE a.device_id = d.id) AS serials, m.runner, m.backend, m.threads, m.kind, m.key, m.latency_ms,"
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

    def latencies(self, device_id: int, runner: str | None = None, backend: str = "cpu", threads: int = 1,
                  kind: str = "block") -> dict[str, float]:
        """key -> latency_ms of one device (by id: one fingerprint, whatever serial reached it)."""
        sql = "SELECT key, latency_ms FROM measurements WHERE device_id=? AND backend=? AND threads=? AND kind=?"
        params: list[Any] = [device_id, backend, threads, kind]
        if runner:
            sql += " AND runner=?"
            params.append(runner)
        return {k: v for k, v in self.conn.execute(sql + " ORDER BY id", params)}

    def failures(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT key, error, at FROM failures ORDER BY id")
        return [{"key": r[0], "error": r[1], "at": r[2]} for r in cur]
