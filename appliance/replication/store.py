"""Versions and tombstones beside the gallery, and the one place records are applied.

Local state is the truth of what a door has; the `replica` table says which version of
each entity that is, with the content hash it had when versioned. `scan` finds what
changed locally (by any route: command, CLI, restored file) by comparing hashes and gives
it a new version; `apply` writes remote records that win, in one transaction per batch.
A tombstone row is kept for good (it holds an id and a version, nothing personal) so an
old copy of a deleted person is refused however late it comes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.access.schedule import Group, ScheduleError
from appliance.replication.hlc import Clock
from appliance.replication.records import (
    Record,
    Version,
    content_hash,
    decode_vector,
    encode_vector,
    newer,
)
from appliance.store.gallery import Gallery

log = logging.getLogger(__name__)

MODE = "mode/door"


@dataclass
class Applied:
    """What a batch changed."""

    applied: int = 0
    stale: int = 0  # not newer than what the door has: duplicates, replays, late copies
    refused: int = 0
    people: int = 0
    deleted: int = 0
    rules: int = 0
    unknown_tombstones: int = 0
    renamed_apart: list[str] = field(default_factory=list)  # entities renamed in a clash
    foreign: dict[str, set[str]] = field(default_factory=dict)  # person id -> embedders

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "stale": self.stale,
            "refused": self.refused,
            "people": self.people,
            "deleted": self.deleted,
            "rules": self.rules,
            "unknown_tombstones": self.unknown_tombstones,
        }


def split(entity: str) -> tuple[str, str]:
    kind, _, key = entity.partition("/")
    return kind, key


def apart(name: str, pid: str) -> str:
    """The name a person gets when another person of the site already has theirs."""
    return f"{name} ({pid[:6]})"


class ReplicaStore:
    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.db = gallery.db

    # --- versions --------------------------------------------------------------------

    def versions(self) -> dict[str, Version]:
        rows = self.db.execute("SELECT entity, hlc, origin, hash FROM replica").fetchall()
        return {e: (h, o, c) for e, h, o, c in rows}

    def version(self, entity: str, db: sqlite3.Connection | None = None) -> Version | None:
        row = (
            (db or self.db)
            .execute("SELECT hlc, origin, hash FROM replica WHERE entity = ?", (entity,))
            .fetchone()
        )
        return (row[0], row[1], row[2]) if row else None

    def max_hlc(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(hlc), 0) FROM replica").fetchone()[0])

    @staticmethod
    def _set_version(db: sqlite3.Connection, entity: str, v: Version) -> None:
        db.execute(
            "INSERT INTO replica (entity, hlc, origin, hash, at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (entity) DO UPDATE SET hlc = excluded.hlc, origin = excluded.origin, "
            "hash = excluded.hash, at = excluded.at",
            (entity, v[0], v[1], v[2], time.time()),
        )

    # --- local state as record bodies ------------------------------------------------

    def local_entities(self, db: sqlite3.Connection | None = None) -> set[str]:
        db = db or self.db
        out = {f"person/{pid}" for (pid,) in db.execute("SELECT id FROM persons")}
        out |= {f"group/{n.casefold()}" for (n,) in db.execute("SELECT name FROM access_groups")}
        if db.execute("SELECT 1 FROM door_settings WHERE key = 'mode'").fetchone():
            out.add(MODE)
        return out

    def body(self, entity: str, db: sqlite3.Connection | None = None) -> dict[str, Any] | None:
        """The entity's record body from local state; None when it is not here."""
        db = db or self.db
        kind, key = split(entity)
        if kind == "person":
            row = db.execute("SELECT name, meta FROM persons WHERE id = ?", (key,)).fetchone()
            if row is None:
                return None
            rights = db.execute(
                "SELECT groups, valid_from, valid_until FROM person_access WHERE person_id = ?",
                (key,),
            ).fetchone()
            templates = db.execute(
                "SELECT embedding, embedder, source, quality, aligned_by FROM templates "
                "WHERE person_id = ? ORDER BY id",
                (key,),
            ).fetchall()
            return {
                "name": row[0],
                "meta": json.loads(row[1]),
                "rights": {
                    "groups": json.loads(rights[0]) if rights else [],
                    "valid_from": rights[1] if rights else None,
                    "valid_until": rights[2] if rights else None,
                },
                # `aligned_by` only when not BlazeFace's: a BlazeFace-aligned person hashes
                # as before alignment was recorded, so older doors agree on its version.
                "templates": [
                    {
                        "embedding": encode_vector(np.frombuffer(t[0], np.float32)),
                        "embedder": t[1],
                        "source": t[2],
                        "quality": json.loads(t[3]),
                        **({} if t[4] == "blazeface" else {"aligned_by": t[4]}),
                    }
                    for t in templates
                ],
            }
        if kind == "group":
            for name, spec in db.execute("SELECT name, spec FROM access_groups"):
                if name.casefold() == key:
                    return {"name": name, "spec": json.loads(spec)}
            return None
        if entity == MODE:
            row = db.execute("SELECT value FROM door_settings WHERE key = 'mode'").fetchone()
            if row is None:
                return None
            v = json.loads(row[0])
            return {"mode": v.get("mode", "normal"), "group": v.get("group")}
        return None

    def current(self, entity: str) -> Record | None:
        """The record this door would send for `entity` (its stored version), or None if
        local state moved on since (a scan versions it first)."""
        v = self.version(entity)
        if v is None:
            return None
        body = self.body(entity)
        if content_hash(body) != v[2]:
            return None
        kind, key = split(entity)
        return Record(kind, key, v[0], v[1], body)

    # --- local changes ---------------------------------------------------------------

    def scan(self, clock: Clock, origin: str, entities: list[str] | None = None) -> list[Record]:
        """Version what changed locally since it was last versioned (all entities, or
        those given); tombstones for what is gone. The new records, to publish."""
        out: list[Record] = []
        with self.gallery.transaction() as db:
            present = self.local_entities(db)
            if entities is None:
                stored = self.versions()
                todo = sorted(present | {e for e, v in stored.items() if v[2]})
            else:
                stored = {e: v for e in entities if (v := self.version(e, db)) is not None}
                todo = list(dict.fromkeys(entities))
            for e in todo:
                body = self.body(e, db) if e in present else None
                h = content_hash(body)
                cur = stored.get(e)
                if (cur is None and body is None) or (cur is not None and cur[2] == h):
                    continue
                kind, key = split(e)
                rec = Record(kind, key, clock.tick(), origin, body)
                self._set_version(db, e, rec.version)
                out.append(rec)
        return out

    # --- remote changes --------------------------------------------------------------

    def apply(self, records: list[Record], actor: str, clock: Clock | None = None) -> Applied:
        """Write the records that win over what this door has; one transaction."""
        res = Applied()
        erased = False
        with self.gallery.transaction() as db:
            for r in records:
                if clock is not None:
                    clock.observe(r.hlc)
                cur = self.version(r.entity, db)
                if not newer(r.version, cur, r.kind):
                    res.stale += 1
                    continue
                try:
                    db.execute("SAVEPOINT rec")
                    if r.kind == "person":
                        erased |= self._person(db, r, actor, res)
                    elif r.kind == "group":
                        self._group(db, r)
                        res.rules += 1
                    else:
                        self._mode(db, r)
                        res.rules += 1
                    self._set_version(db, r.entity, r.version)
                    db.execute("RELEASE rec")
                    res.applied += 1
                except (ScheduleError, ValueError, sqlite3.IntegrityError) as exc:
                    db.execute("ROLLBACK TO rec")
                    db.execute("RELEASE rec")
                    res.refused += 1
                    log.warning("replication: record %s refused: %s", r.entity, exc)
        if erased:  # as Gallery.delete: erased pages out of the WAL
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return res

    def _person(self, db: sqlite3.Connection, r: Record, actor: str, res: Applied) -> bool:
        pid = r.key
        exists = db.execute("SELECT 1 FROM persons WHERE id = ?", (pid,)).fetchone()
        if r.body is None:
            if not exists:
                res.unknown_tombstones += 1
                log.info(
                    "replication: tombstone for person %s, not known here: kept, so an "
                    "older copy cannot bring them back",
                    pid,
                )
                return False
            db.execute("DELETE FROM persons WHERE id = ?", (pid,))
            db.execute("UPDATE audit SET detail = '{}' WHERE person_id = ?", (pid,))
            Gallery.audit(db, actor, "delete", pid, {"replicated": True})
            res.deleted += 1
            return True
        b = r.body
        name = b["name"].strip()
        clash = db.execute(
            "SELECT id, name FROM persons WHERE name = ? AND id != ?", (name, pid)
        ).fetchone()
        if clash:
            # Two people of one name, enrolled apart: never merged. The smaller id keeps
            # the name, on every door; the other is renamed apart (and that rename is
            # versioned and sent by whoever applies this, so all doors agree).
            other, other_name = clash
            if other < pid:
                name = apart(name, pid)
                res.renamed_apart.append(f"person/{pid}")
            else:
                db.execute(
                    "UPDATE persons SET name = ?, updated = ? WHERE id = ?",
                    (apart(other_name, other), time.time(), other),
                )
                res.renamed_apart.append(f"person/{other}")
            log.warning(
                "replication: two different people are called %r (ids %s and %s): kept "
                "apart, one renamed; rename or delete one of them",
                b["name"],
                pid[:6],
                other[:6],
            )
        now = time.time()
        meta = json.dumps(b["meta"], sort_keys=True)
        if exists:
            db.execute(
                "UPDATE persons SET name = ?, meta = ?, updated = ? WHERE id = ?",
                (name, meta, now, pid),
            )
            db.execute("DELETE FROM templates WHERE person_id = ?", (pid,))
        else:
            db.execute(
                "INSERT INTO persons (id, name, meta, created, updated) VALUES (?,?,?,?,?)",
                (pid, name, meta, now, now),
            )
        for t in b["templates"]:
            db.execute(
                "INSERT INTO templates (person_id, embedding, embedder, quality, source, "
                "created, aligned_by) VALUES (?,?,?,?,?,?,?)",
                (
                    pid,
                    decode_vector(t["embedding"]).tobytes(),
                    t["embedder"],
                    json.dumps(t["quality"], sort_keys=True),
                    t["source"],
                    now,
                    str(t.get("aligned_by", "blazeface")),
                ),
            )
            res.foreign.setdefault(pid, set()).add(t["embedder"])
        rights = b["rights"]
        if rights["groups"] or rights["valid_from"] or rights["valid_until"]:
            db.execute(
                "INSERT INTO person_access (person_id, groups, valid_from, valid_until) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (person_id) DO UPDATE SET "
                "groups = excluded.groups, valid_from = excluded.valid_from, "
                "valid_until = excluded.valid_until",
                (pid, json.dumps(rights["groups"]), rights["valid_from"], rights["valid_until"]),
            )
        else:
            db.execute("DELETE FROM person_access WHERE person_id = ?", (pid,))
        Gallery.audit(
            db, actor, "replicate", pid, {"templates": len(b["templates"]), "new": not exists}
        )
        res.people += 1
        return False

    @staticmethod
    def _group(db: sqlite3.Connection, r: Record) -> None:
        if r.body is None:
            db.execute("DELETE FROM access_groups WHERE name = ?", (r.key,))
            return
        group = Group.from_dict(r.body["name"], r.body["spec"])  # ScheduleError: refused
        db.execute(
            "INSERT INTO access_groups (name, spec, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET name = excluded.name, spec = excluded.spec, "
            "updated = excluded.updated",
            (group.name, json.dumps(r.body["spec"], sort_keys=True), time.time()),
        )

    @staticmethod
    def _mode(db: sqlite3.Connection, r: Record) -> None:
        if r.body is None:
            db.execute("DELETE FROM door_settings WHERE key = 'mode'")
            return
        if r.body["mode"] not in ("normal", "passage", "lockdown"):
            raise ValueError(f"unknown door mode {r.body['mode']!r}")
        db.execute(
            "INSERT INTO door_settings (key, value) VALUES ('mode', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (json.dumps({"mode": r.body["mode"], "group": r.body["group"]}),),
        )
