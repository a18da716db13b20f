"""A durable outbox: every event is in SQLite before it is published, and leaves only
when the broker has acknowledged it.

paho's own queue lives in RAM, so a restart or a long outage would lose events; a door
log with holes is worse than none. Order is kept by a monotonically increasing sequence
number. The outbox is bounded (count and age) so a months-long outage cannot fill the
SD card; what the bound drops is counted, logged and reported in status.

A full disk is the third bound. SQLite needs space to write at all, so the outbox
keeps a reserve inside its own file: at start it makes sure `reserve_bytes` of free pages
exist in the database (they stay there; SQLite reuses free pages before it grows a
file), and it checkpoints its write-ahead log often, so the log's space is reused too.
When the filesystem has less than `min_free_bytes` left and the reserve is used up, or
SQLite reports the disk full, the oldest tenth of the waiting events (at least one) is
dropped before the new one is stored: deleted rows free pages for the new ones, and the
newest events (the ones a person at the door is waiting for) are the ones kept. Only if
even that fails (a disk that was already full when the daemon started) is an event
lost; that is counted as `lost` and reported in status.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from appliance.store.sqlite import connect, transaction, write

log = logging.getLogger(__name__)
T = TypeVar("T")

WAL_CHECKPOINT_PAGES = 64  # keep the write-ahead log small and cycling over its own space


@dataclass(frozen=True)
class Pending:
    seq: int
    event_id: str
    topic: str
    payload: dict[str, Any]
    created: float
    attempts: int
    boot: str  # which daemon run created it; another run's events are replays


class Outbox:
    def __init__(
        self,
        path: str | Path,
        max_events: int = 10_000,
        max_age_s: float = 7 * 86400,
        min_free_bytes: int = 0,
        reserve_bytes: int = 1 << 20,
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.min_free_bytes = min_free_bytes
        self.reserve_bytes = reserve_bytes
        # secure_delete: a redacted or delivered event's bytes are overwritten, not left
        # in free pages (events name people).
        self.db = connect(self.path, "secure_delete=ON")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                topic TEXT NOT NULL,
                payload TEXT NOT NULL,
                created REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                boot TEXT NOT NULL DEFAULT '');
            CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER);
        """)
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.last_error: str | None = None
        self.lost = 0  # events the disk refused even after shedding (not in the db: full)
        self._reserve()

    def _reserve(self) -> None:
        """Grow the file by `reserve_bytes` of free pages, unless they are there already."""
        page = self.db.execute("PRAGMA page_size").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0] * page
        if free >= self.reserve_bytes // 2:
            return
        try:
            with self._tx() as db:
                db.execute("CREATE TABLE IF NOT EXISTS reserve (b BLOB)")
                db.execute("INSERT INTO reserve VALUES (zeroblob(?))", (self.reserve_bytes,))
                db.execute("DELETE FROM reserve")
            # Into the main file now: pages that only exist in the write-ahead log would
            # have to be allocated at the first checkpoint, on a disk that may be full.
            # The log keeps its size and is reused from its start afterwards.
            with self.lock:
                self.db.execute("PRAGMA wal_checkpoint(FULL)")
        except sqlite3.Error as exc:
            log.warning(
                "outbox: cannot reserve %d bytes on disk (%s); a full disk will lose events",
                self.reserve_bytes,
                exc,
            )

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.db, self.lock)

    def _bump(self, db: sqlite3.Connection, name: str, by: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) "
            "DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def add(self, event_id: str, topic: str, payload: dict[str, Any], boot: str) -> bool:
        """Store an event durably. False (and logged) when the disk refuses it even after
        shedding the oldest events."""
        row = (event_id, topic, json.dumps(payload), time.time(), boot)

        def insert(db: sqlite3.Connection) -> None:
            if self._disk_low(db):
                self._shed_for_space(db)
            db.execute(
                "INSERT OR IGNORE INTO outbox (event_id, topic, payload, created, "
                "boot) VALUES (?,?,?,?,?)",
                row,
            )
            self._shed(db)

        try:
            self._write(insert, on_full=self._shed_for_space)
        except sqlite3.Error as exc:  # full disk, I/O error: keep recognising, say so
            self.lost += 1
            if self.last_error is None or self.lost % 100 == 0:  # not per event
                log.error(
                    "outbox write failed: %s; event %s not stored (%d lost)",
                    exc,
                    event_id,
                    self.lost,
                )
            self.last_error = f"outbox write failed: {exc}"
            return False
        if self.last_error is not None:
            log.warning("outbox writes work again (%d event(s) lost meanwhile)", self.lost)
        self.last_error = None
        self.wake.set()
        return True

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _disk_low(self, db: sqlite3.Connection) -> bool:
        """Low on disk and no free page left in the file: a new row would grow it."""
        free = self.free_bytes()
        if free is None or free >= self.min_free_bytes:
            return False
        return db.execute("PRAGMA freelist_count").fetchone()[0] == 0

    def _shed_for_space(self, db: sqlite3.Connection) -> None:
        """Drop the oldest tenth of the waiting events (at least one), and more in such
        steps until a page of the file is free: a new row needs a free page, not just
        free bytes in a full one."""
        n = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        step = max(1, n // 10)
        dropped = 0
        while dropped < n:
            dropped += db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                (step,),
            ).rowcount
            if db.execute("PRAGMA freelist_count").fetchone()[0] > 0:
                break
        if dropped:
            self._bump(db, "dropped", dropped)
            self._bump(db, "dropped_disk_full", dropped)
            log.warning(
                "disk nearly full (%s bytes free): dropped the oldest %d of %d waiting "
                "event(s) to make room",
                self.free_bytes(),
                dropped,
                n,
            )

    def _shed(self, db: sqlite3.Connection) -> None:
        """The documented bound: drop the oldest beyond max_events, and anything older
        than max_age_s. Counted in `dropped`."""
        cut = time.time() - self.max_age_s
        old = db.execute("DELETE FROM outbox WHERE created < ?", (cut,)).rowcount
        n = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        over = max(0, n - self.max_events)
        if over:
            db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                (over,),
            )
        if old or over:
            self._bump(db, "dropped", old + over)
            log.warning(
                "outbox bound: dropped %d event(s) (%d too old, %d over %d)",
                old + over,
                old,
                over,
                self.max_events,
            )

    def pending(self, limit: int = 100) -> list[Pending]:
        with self.lock:
            rows = self.db.execute(
                "SELECT seq, event_id, topic, payload, created, attempts, "
                "boot FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [Pending(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    def _write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        on_full: Callable[[sqlite3.Connection], None] | None = None,
    ) -> T:
        return write(self.db, self.lock, fn, on_full)

    def attempted(self, seq: int) -> None:
        self._write(
            lambda db: db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
        )

    def acknowledged(self, seq: int) -> None:
        def ack(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._bump(db, "delivered", 1)

        self._write(ack)

    def redact_person(self, person_id: str, name: str) -> int:
        """Erase a deleted person's name from events not yet delivered: they still
        arrive (nothing is lost), with the anonymous id only. Returns how many changed."""

        def redact(db: sqlite3.Connection) -> int:
            rows = db.execute("SELECT seq, payload FROM outbox").fetchall()
            changed = 0
            for seq, text in rows:
                payload = json.loads(text)
                hit = False
                if payload.get("person_id") == person_id and payload.get("name") is not None:
                    payload["name"], hit = None, True
                if payload.get("candidate") == name:
                    payload["candidate"], hit = None, True
                if hit:
                    changed += 1
                    db.execute(
                        "UPDATE outbox SET payload = ? WHERE seq = ?", (json.dumps(payload), seq)
                    )
            return changed

        n = self._write(redact)
        if n:
            with self.lock:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def depth(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def counters(self) -> dict[str, int]:
        with self.lock:
            rows = self.db.execute("SELECT name, value FROM counters").fetchall()
        return {
            "dropped": 0,
            "dropped_disk_full": 0,
            "delivered": 0,
            **{r[0]: int(r[1]) for r in rows},
            "lost": self.lost,
        }
