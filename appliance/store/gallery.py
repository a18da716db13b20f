"""The on-device gallery: people, their face templates and an audit log, in SQLite.

Why SQLite with these settings: one file in the state directory, WAL so the frame loop
can read while an enrolment writes, `synchronous=FULL` so an enrolment that was
acknowledged survives a power cut, and every change in one `BEGIN IMMEDIATE`
transaction so a crash at any instant leaves either all of it or none of it.
`secure_delete` overwrites what `delete` removes: faces are personal data.

Only embeddings are stored unless the config asks for thumbnails. Templates remember the
embedder version and the alignment (`aligned_by`: a detector's own keypoints or the face
mesh) that made them; the matcher never compares across either.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.store.sqlite import connect, transaction

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4

# Each entry moves the schema from version i to i + 1; they run in order on open.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE persons (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        meta TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY,
        person_id TEXT NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
        embedding BLOB NOT NULL,
        embedder TEXT NOT NULL,
        quality TEXT NOT NULL DEFAULT '{}',
        source TEXT NOT NULL,
        thumbnail BLOB,
        created REAL NOT NULL
    );
    CREATE INDEX templates_person ON templates(person_id);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        person_id TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # 2: access rules (appliance/store/access_rules.py) beside the people they govern, so
    # one transaction and one audit log cover both, and a delete cascades to them.
    """
    CREATE TABLE access_groups (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        spec TEXT NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE person_access (
        person_id TEXT PRIMARY KEY REFERENCES persons(id) ON DELETE CASCADE,
        groups TEXT NOT NULL DEFAULT '[]',
        valid_from TEXT,
        valid_until TEXT
    );
    CREATE TABLE door_settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO person_access (person_id, groups)
        SELECT id, json_array(json_extract(meta, '$.group')) FROM persons
        WHERE json_type(meta, '$.group') = 'text';
    """,
    # 3: replication (appliance/replication): the version of every replicated entity
    # (person/<id>, group/<name>, mode/door) and its content hash; hash '' is a tombstone.
    # Person ids were already stable random ids; a tombstone row holds no personal data
    # and is kept, so an old copy of a deleted person can never come back.
    """
    CREATE TABLE replica (
        entity TEXT PRIMARY KEY,
        hlc INTEGER NOT NULL,
        origin TEXT NOT NULL,
        hash TEXT NOT NULL,
        at REAL NOT NULL
    );
    """,
    # 4: what aligned each template (appliance.vision.detectors.alignment). Every older
    # row was aligned on BlazeFace's keypoints (the only detector recognition could use),
    # so it gets 'blazeface'; one ALTER inside the migration's transaction, crash-safe.
    """
    ALTER TABLE templates ADD COLUMN aligned_by TEXT NOT NULL DEFAULT 'blazeface';
    """,
]


class GalleryError(ValueError):
    """A request the gallery refuses (unknown person, name taken); nothing was changed."""


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    meta: dict[str, Any]
    created: float
    updated: float
    templates: int = 0
    stale_templates: int = 0  # another embedder version or alignment: re-enrolment needed

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "meta": self.meta,
            "created": self.created,
            "updated": self.updated,
            "templates": self.templates,
            "stale_templates": self.stale_templates,
        }


@dataclass
class Template:
    embedding: np.ndarray
    embedder: str  # embedder version, e.g. facenet-<sha12>
    source: str  # file | mqtt | camera | import
    quality: dict[str, float] = field(default_factory=dict)
    thumbnail: bytes | None = None
    aligned_by: str = "blazeface"  # FacePipeline.aligned_by of the pipeline that made it


@dataclass(frozen=True)
class TemplateSet:
    """All templates of one embedder version and alignment, grouped by person, as one
    contiguous matrix."""

    person_ids: list[str]
    names: list[str]
    owner: np.ndarray  # (T,) index into person_ids
    matrix: np.ndarray  # (T, dim) float32, unit rows


def _now() -> float:
    return time.time()


class Gallery:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = connect(self.path, "foreign_keys=ON", "secure_delete=ON")
        self._migrate()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One change, all or nothing; also for what shares this file (portable import,
        the access rules)."""
        return transaction(self.db)

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise GalleryError(
                    f"{self.path}: schema {version} is newer than this "
                    f"software ({SCHEMA_VERSION}); upgrade the appliance"
                )
            for i in range(version, SCHEMA_VERSION):
                log.info("gallery %s: migrating schema %d -> %d", self.path, i, i + 1)
                for stmt in MIGRATIONS[i].split(";"):
                    if stmt.strip():
                        db.execute(stmt)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def audit(
        db: sqlite3.Connection,
        actor: str,
        action: str,
        person_id: str | None,
        detail: dict[str, Any],
    ) -> None:
        db.execute(
            "INSERT INTO audit (at, actor, action, person_id, detail) VALUES (?,?,?,?,?)",
            (_now(), actor, action, person_id, json.dumps(detail, sort_keys=True)),
        )

    # --- reading ---------------------------------------------------------------------

    def persons(self, embedder: str | None = None, aligned_by: str | None = None) -> list[Person]:
        """Everyone; with `embedder` (and `aligned_by`), templates made otherwise count
        as stale."""
        rows = self.db.execute(
            "SELECT p.id, p.name, p.meta, p.created, p.updated, COUNT(t.id), "
            "SUM(CASE WHEN t.embedder != ? OR t.aligned_by != ? THEN 1 ELSE 0 END) "
            "FROM persons p LEFT JOIN templates t ON t.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name COLLATE NOCASE",
            (embedder or "", aligned_by or "blazeface"),
        ).fetchall()
        return [
            Person(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], (r[6] or 0) if embedder else 0)
            for r in rows
        ]

    def find(self, name_or_id: str) -> Person:
        for p in self.persons():
            if p.id == name_or_id or p.name.casefold() == name_or_id.casefold():
                return p
        raise GalleryError(f"no person called {name_or_id!r}")

    def alignments(self, embedder: str) -> dict[str, int]:
        """How many templates of `embedder` each alignment made."""
        rows = self.db.execute(
            "SELECT aligned_by, COUNT(*) FROM templates WHERE embedder = ? GROUP BY aligned_by",
            (embedder,),
        ).fetchall()
        return {str(a): int(n) for a, n in rows}

    def template_set(self, embedder: str, aligned_by: str = "blazeface") -> TemplateSet:
        rows = self.db.execute(
            "SELECT p.id, p.name, t.embedding FROM templates t JOIN persons p "
            "ON p.id = t.person_id WHERE t.embedder = ? AND t.aligned_by = ? "
            "ORDER BY p.id, t.id",
            (embedder, aligned_by),
        ).fetchall()
        ids: list[str] = []
        names: list[str] = []
        owner = np.empty(len(rows), np.int32)
        vecs = []
        for i, (pid, name, blob) in enumerate(rows):
            if not ids or ids[-1] != pid:
                ids.append(pid)
                names.append(name)
            owner[i] = len(ids) - 1
            vecs.append(np.frombuffer(blob, np.float32))
        dim = len(vecs[0]) if vecs else 0
        matrix = np.ascontiguousarray(np.stack(vecs)) if vecs else np.zeros((0, dim), np.float32)
        return TemplateSet(ids, names, owner, matrix)

    def thumbnails(self, person_id: str) -> list[bytes]:
        return [
            r[0]
            for r in self.db.execute(
                "SELECT thumbnail FROM templates WHERE person_id = ? AND thumbnail IS NOT NULL "
                "ORDER BY id",
                (person_id,),
            )
        ]

    def templates_of(self, person_id: str) -> list[dict[str, Any]]:
        """A person's templates, oldest first, without embeddings: what each was made
        from (the quality measured at enrolment), by which embedder, when, and the index
        of its thumbnail in `thumbnails` (None when none was kept)."""
        out: list[dict[str, Any]] = []
        kept = 0
        for embedder, quality, source, has_thumb, created in self.db.execute(
            "SELECT embedder, quality, source, thumbnail IS NOT NULL, created FROM templates "
            "WHERE person_id = ? ORDER BY id",
            (person_id,),
        ):
            out.append(
                {
                    "embedder": embedder,
                    "source": source,
                    "quality": json.loads(quality),
                    "added": created,
                    "thumbnail": kept if has_thumb else None,
                }
            )
            kept += bool(has_thumb)
        return out

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT at, actor, action, person_id, detail FROM audit ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {
                "at": r[0],
                "actor": r[1],
                "action": r[2],
                "person_id": r[3],
                "detail": json.loads(r[4]),
            }
            for r in rows
        ]

    def data_version(self) -> int:
        """Moves when another connection (another process) commits to the file."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def counts(self) -> tuple[int, int]:
        p = self.db.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
        t = self.db.execute("SELECT COUNT(*) FROM templates").fetchone()[0]
        return int(p), int(t)

    # --- changing (each public method is one transaction) ----------------------------

    def enrol(
        self,
        name: str,
        templates: list[Template],
        actor: str,
        meta: dict[str, Any] | None = None,
        max_templates: int = 20,
    ) -> Person:
        """Add templates to `name`, creating the person if new. All or nothing.

        When a person would exceed `max_templates`, the oldest current-version templates
        go first: a face changes over the years, the newest pictures matter most.
        """
        name = name.strip()
        if not name:
            raise GalleryError("a person needs a name")
        if not templates:
            raise GalleryError("nothing to enrol")
        if len(templates) > max_templates:
            raise GalleryError(f"{len(templates)} templates at once; at most {max_templates}")
        now = _now()
        with self.transaction() as db:
            row = db.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()
            if row:
                pid = row[0]
                if meta:
                    db.execute(
                        "UPDATE persons SET meta = ?, updated = ? WHERE id = ?",
                        (json.dumps(meta, sort_keys=True), now, pid),
                    )
                else:
                    db.execute("UPDATE persons SET updated = ? WHERE id = ?", (now, pid))
            else:
                pid = uuid.uuid4().hex
                db.execute(
                    "INSERT INTO persons (id, name, meta, created, updated) VALUES (?,?,?,?,?)",
                    (pid, name, json.dumps(meta or {}, sort_keys=True), now, now),
                )
                self.audit(db, actor, "create", pid, {"name": name})
            if meta and isinstance(meta.get("group"), str):
                self._join_group(db, pid, meta["group"])
            for t in templates:
                vec = np.ascontiguousarray(t.embedding, dtype=np.float32)
                db.execute(
                    "INSERT INTO templates (person_id, embedding, embedder, quality, "
                    "source, thumbnail, created, aligned_by) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        pid,
                        vec.tobytes(),
                        t.embedder,
                        json.dumps(t.quality, sort_keys=True),
                        t.source,
                        t.thumbnail,
                        now,
                        t.aligned_by,
                    ),
                )
            excess = self._trim(db, pid, templates[0].embedder, max_templates)
            self.audit(
                db,
                actor,
                "enrol",
                pid,
                {
                    "templates": len(templates),
                    "dropped_oldest": excess,
                    "sources": sorted({t.source for t in templates}),
                },
            )
        return self.find(pid)

    @staticmethod
    def _join_group(db: sqlite3.Connection, pid: str, group: str) -> None:
        """Metadata "group" (the older way to give a group) joins that access group."""
        row = db.execute("SELECT groups FROM person_access WHERE person_id = ?", (pid,)).fetchone()
        groups = json.loads(row[0]) if row else []
        if group not in groups:
            db.execute(
                "INSERT INTO person_access (person_id, groups) VALUES (?, ?) "
                "ON CONFLICT (person_id) DO UPDATE SET groups = excluded.groups",
                (pid, json.dumps([*groups, group])),
            )

    @staticmethod
    def _trim(db: sqlite3.Connection, pid: str, embedder: str, max_templates: int) -> int:
        """Drop a person's oldest templates of `embedder` beyond `max_templates`."""
        excess = db.execute(
            "SELECT id FROM templates WHERE person_id = ? AND embedder = ? "
            "ORDER BY id DESC LIMIT -1 OFFSET ?",
            (pid, embedder, max_templates),
        ).fetchall()
        db.executemany("DELETE FROM templates WHERE id = ?", excess)
        return len(excess)

    def rename(self, name_or_id: str, new_name: str, actor: str) -> Person:
        new_name = new_name.strip()
        if not new_name:
            raise GalleryError("a person needs a name")
        person = self.find(name_or_id)
        with self.transaction() as db:
            clash = db.execute(
                "SELECT id FROM persons WHERE name = ? AND id != ?", (new_name, person.id)
            ).fetchone()
            if clash:
                raise GalleryError(f"the name {new_name!r} is taken")
            db.execute(
                "UPDATE persons SET name = ?, updated = ? WHERE id = ?",
                (new_name, _now(), person.id),
            )
            self.audit(db, actor, "rename", person.id, {"from": person.name, "to": new_name})
        return self.find(person.id)

    def delete(self, name_or_id: str, actor: str) -> Person:
        """Erase the person: templates, thumbnails, metadata, and their name in the audit
        log (the log keeps only the anonymous id, so it still shows that a delete happened).
        """
        person = self.find(name_or_id)
        with self.transaction() as db:
            db.execute("DELETE FROM persons WHERE id = ?", (person.id,))
            db.execute("UPDATE audit SET detail = '{}' WHERE person_id = ?", (person.id,))
            self.audit(db, actor, "delete", person.id, {"templates": person.templates})
        # Move the erased pages out of the WAL into the (secure-deleted) main file.
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return person

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])
