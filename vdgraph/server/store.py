"""The job queue and history in SQLite (standard library sqlite3, one file, WAL journal).

Every change is committed before the call returns, so a job the server acknowledged (`POST /api/jobs` answered
with its id) survives a SIGKILL. Queuing a job is also synced to the disk (`synchronous=FULL`: it survives a power
cut); later changes of state are committed with `synchronous=NORMAL` (in WAL mode: they survive the process being
killed, and the next synced commit carries them to the disk; a power cut may lose the last ones, so a finished job
could read as running and be marked interrupted). That saves two disk syncs per job. On start, `recover()` marks a job that was running when the process died
`failed` with the error `interrupted` (it is not re-queued: a job that killed the server, for example by running out
of memory, would kill it again on every start; submit it again to retry); queued jobs stay queued and run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
INTERRUPTED = "interrupted: the server stopped while this job was running"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    workflow TEXT NOT NULL,
    source TEXT,
    document TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    error_node TEXT,
    nodes TEXT,
    report TEXT,
    outputs TEXT,
    events TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
"""

_JSON_COLUMNS = ("inputs", "nodes", "report", "outputs", "events")


class JobStore:
    """The jobs table. Thread-safe: one connection, one lock (the worker thread and the HTTP handlers share it)."""

    def __init__(self, path: str) -> None:
        """Opens (or makes) the database at `path`; ValueError naming it when it is not one vdgraph can use (a
        user's file of that name is left as it is)."""
        self.path = path
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._lock = threading.Lock()
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path!r} is not a job database vdgraph can use ({exc}); it is left as it is: serve "
                             "with another --output-dir, or move that file away") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def recover(self) -> list[str]:
        """Mark jobs left `running` by a process that died as failed (interrupted); returns their ids."""
        with self._lock:
            ids = [row["id"] for row in self._db.execute("SELECT id FROM jobs WHERE state = 'running'")]
            self._db.execute("UPDATE jobs SET state = 'failed', error = ?, finished = ? WHERE state = 'running'",
                             (INTERRUPTED, time.time()))
        return ids

    def add(self, job_id: str, workflow: str, source: str | None, document: str, inputs: dict) -> None:
        """Queue a job (committed and synced to the disk on return)."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("INSERT INTO jobs (id, workflow, source, document, inputs, state, created) "
                                 "VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                                 (job_id, workflow, source, document, json.dumps(inputs), time.time()))
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def claim_next(self) -> dict | None:
        """The oldest queued job, now marked running; None when the queue is empty."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE jobs SET state = 'running', started = ? WHERE id = ?", (time.time(), row["id"]))
        job = _job(row)
        job["state"] = "running"
        return job

    def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job that has not started; False when it is not queued (any more)."""
        return self._write("UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ? AND state = 'queued'",
                           (time.time(), job_id)) == 1

    def finish(self, job_id: str, state: str, *, error: str | None = None, error_node: str | None = None,
               nodes: dict | None = None, report: list | None = None, outputs: dict | None = None,
               events: list | None = None) -> None:
        assert state in FINISHED, state
        self._write("UPDATE jobs SET state = ?, finished = ?, error = ?, error_node = ?, nodes = ?, report = ?, "
                    "outputs = ?, events = ? WHERE id = ?",
                    (state, time.time(), error, error_node, *(json.dumps(v) if v is not None else None
                                                              for v in (nodes, report, outputs, events)), job_id))

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row is not None else None

    def position(self, job_id: str) -> int | None:
        """How many jobs run before this queued one (the running job included); None when it is not queued."""
        with self._lock:
            row = self._db.execute("SELECT seq, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] != "queued":
                return None
            ahead = self._db.execute("SELECT COUNT(*) FROM jobs WHERE (state = 'queued' AND seq < ?) OR "
                                     "state = 'running'", (row["seq"],)).fetchone()[0]
        return int(ahead)

    def history(self, limit: int, offset: int, state: str | None = None) -> tuple[list[dict], int]:
        """Jobs newest first (without their documents and events), and how many there are in all."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT seq, id, workflow, state, created, started, finished, error, error_node, outputs, inputs "
                f"FROM jobs {where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return [_job(row) for row in rows], int(total)

    def has_queued(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM jobs WHERE state = 'queued' LIMIT 1").fetchone() is not None


def _job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for column in _JSON_COLUMNS:
        if column in job and job[column] is not None:
            job[column] = json.loads(job[column])
    return job
