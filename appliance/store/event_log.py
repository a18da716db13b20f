"""The local event history: every decision and door event, for the pages and reports.

The outbox forgets an event once the broker has it, so the events and attendance pages
need their own record. It is bounded (`events.retention_days`, `events.max_events`),
written like the gallery (WAL, `synchronous=FULL`, one transaction per event: a power cut
leaves each event stored or not, never half), and erased per person when they are
deleted (`forget`). Face snapshots are kept only when `events.snapshots` is on, in their
own table with their own, shorter retention; `secure_delete` overwrites what is deleted.

Written by the frame loop's subscribers (decisions) and the door's handler; read by the
command service. Attendance is computed here from the same rows, so the report and the
event list can never disagree.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.store.sqlite import connect, transaction, write

log = logging.getLogger(__name__)

EVENTS_FILE = "events.sqlite3"
PRUNE_EVERY_S = 600.0
# What counts as someone present: a door grant or an attendance check-in/out.
PRESENCE = ("granted", "check_in", "check_out")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Retention:
    days: float
    max_events: int
    snapshots: bool
    snapshot_days: float


class EventLog:
    def __init__(self, path: str | Path, retention: Retention) -> None:
        self.path = Path(path)
        self.retention = retention
        self.db = connect(self.path, "secure_delete=ON", "foreign_keys=ON")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                at REAL NOT NULL,
                kind TEXT NOT NULL,          -- decision | door
                decision TEXT NOT NULL,      -- granted, denied, ..., or the door event
                person_id TEXT,
                name TEXT,
                payload TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS events_at ON events (at);
            CREATE INDEX IF NOT EXISTS events_person ON events (person_id, at);
            CREATE TABLE IF NOT EXISTS snapshots (
                event_id TEXT PRIMARY KEY REFERENCES events(event_id) ON DELETE CASCADE,
                at REAL NOT NULL,
                jpeg BLOB NOT NULL);
        """)
        self.lock = threading.Lock()
        self._next_prune = 0.0
        self.prune()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # --- writing -------------------------------------------------------------------------

    def add_decision(self, payload: dict[str, Any], jpeg: bytes | None = None) -> None:
        """A decision as published; `jpeg` (the face) is kept only if snapshots are on."""
        self._add(
            payload["event_id"],
            float(payload.get("decided") or time.time()),
            "decision",
            str(payload["decision"]),
            payload.get("person_id"),
            payload.get("name"),
            payload,
            jpeg if self.retention.snapshots else None,
        )

    def add_door(self, payload: dict[str, Any]) -> None:
        self._add(
            payload["event_id"],
            float(payload.get("at") or payload.get("time") or time.time()),
            "door",
            str(payload["event"]),
            payload.get("person_id"),
            payload.get("name"),
            payload,
            None,
        )

    def _add(
        self,
        event_id: str,
        at: float,
        kind: str,
        decision: str,
        person_id: str | None,
        name: str | None,
        payload: dict[str, Any],
        jpeg: bytes | None,
    ) -> None:
        def insert(db: Any) -> None:
            db.execute(
                "INSERT OR IGNORE INTO events (event_id, at, kind, decision, person_id, name, "
                "payload) VALUES (?,?,?,?,?,?,?)",
                (event_id, at, kind, decision, person_id, name, json.dumps(payload)),
            )
            if jpeg is not None:
                db.execute(
                    "INSERT OR REPLACE INTO snapshots (event_id, at, jpeg) VALUES (?,?,?)",
                    (event_id, at, jpeg),
                )

        write(self.db, self.lock, insert, self._prune_tx)
        if time.monotonic() >= self._next_prune:
            self.prune()

    def prune(self) -> int:
        """Drop what the retention says is too old or too many; how many events went."""
        with transaction(self.db, self.lock) as db:
            n = self._prune_tx(db)
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        if n:
            log.info("event log: %d old event(s) deleted", n)
        return n

    def _prune_tx(self, db: Any) -> int:
        r = self.retention
        now = time.time()
        n = db.execute("DELETE FROM events WHERE at < ?", (now - r.days * 86400,)).rowcount
        n += db.execute(
            "DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq DESC "
            "LIMIT 1 OFFSET ?)",
            (r.max_events,),
        ).rowcount
        keep = now - r.snapshot_days * 86400 if r.snapshots else float("inf")
        db.execute("DELETE FROM snapshots WHERE at < ?", (keep,))
        return int(n)

    def forget(self, person_id: str, name: str) -> int:
        """Erase a deleted person in one transaction: their decisions and snapshots go,
        and where another event names them (a door event's `name`, an unknown decision's
        near-miss `candidate`) the name is blanked. How many events were deleted."""
        with transaction(self.db, self.lock) as db:
            n = db.execute("DELETE FROM events WHERE person_id = ?", (person_id,)).rowcount
            rows = db.execute(
                "SELECT seq, payload FROM events WHERE name = ? OR payload LIKE ?",
                (name, f"%{json.dumps(name)[1:-1]}%"),
            ).fetchall()
            for seq, text in rows:
                p = json.loads(text)
                for key in ("name", "candidate"):
                    if p.get(key) == name:
                        p[key] = None
                db.execute(
                    "UPDATE events SET payload = ?, name = CASE WHEN name = ? THEN NULL "
                    "ELSE name END WHERE seq = ?",
                    (json.dumps(p), name, seq),
                )
        return int(n)

    # --- reading -------------------------------------------------------------------------

    def query(
        self,
        person: str | None = None,
        decision: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first. `person` is an id or a name (exact, any case)."""
        where, args = self._where(person, decision, since, until)
        if after_seq is not None:
            where.append("seq > ?")
            args.append(after_seq)
        sql = (
            "SELECT seq, at, kind, decision, person_id, name, payload, "
            "EXISTS(SELECT 1 FROM snapshots s WHERE s.event_id = e.event_id) "
            f"FROM events e {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY seq DESC LIMIT ?"
        )
        with self.lock:
            rows = self.db.execute(sql, (*args, max(1, min(limit, MAX_LIMIT)))).fetchall()
        out = []
        for seq, at, kind, decision_, pid, name, payload, snap in rows:
            p = json.loads(payload)
            out.append(
                {
                    "seq": seq,
                    "event_id": p["event_id"],
                    "at": at,
                    "kind": kind,
                    "decision": decision_,
                    "reason": p.get("reason"),
                    "person_id": pid,
                    "name": name,
                    "score": p.get("score"),
                    "snapshot": bool(snap),
                    "payload": p,
                }
            )
        return out

    @staticmethod
    def _where(
        person: str | None, decision: str | None, since: float | None, until: float | None
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if person:
            where.append("(person_id = ? OR name = ? COLLATE NOCASE)")
            args += [person, person]
        if decision:
            where.append("decision = ?")
            args.append(decision)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if until is not None:
            where.append("at < ?")
            args.append(until)
        return where, args

    def snapshot(self, event_id: str) -> bytes | None:
        with self.lock:
            row = self.db.execute(
                "SELECT jpeg FROM snapshots WHERE event_id = ?", (event_id,)
            ).fetchone()
        return bytes(row[0]) if row else None

    def last_seen(self) -> dict[str, float]:
        """Person id -> when they were last decided (any decision naming them)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT person_id, MAX(at) FROM events WHERE person_id IS NOT NULL "
                "GROUP BY person_id"
            ).fetchall()
        return {pid: at for pid, at in rows}

    def attendance(
        self, since: float, until: float, tz: dt.tzinfo | None, person: str | None = None
    ) -> list[dict[str, Any]]:
        """Per person and local day: first in, last out and the time between them, from the
        presence events (granted, check_in, check_out). Sorted by day, then name."""
        where, args = self._where(person, None, since, until)
        where.append(f"decision IN ({','.join('?' * len(PRESENCE))})")
        args += PRESENCE
        with self.lock:
            rows = self.db.execute(
                "SELECT at, decision, person_id, name FROM events WHERE person_id IS NOT NULL "
                f"AND {' AND '.join(where)} ORDER BY at",
                args,
            ).fetchall()
        days: dict[tuple[str, str], list[tuple[float, str, str]]] = defaultdict(list)
        for at, decision, pid, name in rows:
            day = dt.datetime.fromtimestamp(at, tz).date().isoformat()
            days[(day, pid)].append((at, decision, name))
        out = []
        for (day, pid), evs in days.items():
            first, last = evs[0][0], evs[-1][0]
            out.append(
                {
                    "date": day,
                    "person_id": pid,
                    "name": evs[-1][2],
                    "first_in": _iso(first, tz),
                    "last_out": _iso(last, tz) if len(evs) > 1 else None,
                    "present_s": round(last - first) if len(evs) > 1 else 0,
                    "events": len(evs),
                }
            )
        out.sort(key=lambda r: (r["date"], (r["name"] or "").casefold()))
        return out


def _iso(t: float, tz: dt.tzinfo | None) -> str:
    return dt.datetime.fromtimestamp(t, tz).astimezone(tz).isoformat(timespec="seconds")
