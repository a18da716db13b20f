"""The portable gallery format: names and embeddings of one embedder version.

For moving people between devices of the same model (`appliance gallery export` /
`import`); no photos, no audit log. An import is one transaction, and never takes a
person past `max_templates` (their oldest templates go first, as in enrolment).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np

from appliance.store.gallery import Gallery, GalleryError, Template, _now

EXPORT_FORMAT = "appliance-gallery"
EXPORT_VERSION = 1


def export(g: Gallery, embedder: str, aligned_by: str = "blazeface") -> dict[str, Any]:
    """Names and embeddings of one embedder version and alignment; no photos, no audit."""
    people = []
    for p in g.persons():
        rows = g.db.execute(
            "SELECT embedding, quality, source FROM templates "
            "WHERE person_id = ? AND embedder = ? AND aligned_by = ? ORDER BY id",
            (p.id, embedder, aligned_by),
        ).fetchall()
        if rows:
            people.append(
                {
                    "name": p.name,
                    "meta": p.meta,
                    "templates": [
                        {
                            "embedding": np.frombuffer(r[0], np.float32).round(7).tolist(),
                            "quality": json.loads(r[1]),
                            "source": r[2],
                        }
                        for r in rows
                    ],
                }
            )
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "embedder": embedder,
        "aligned_by": aligned_by,
        "exported": _now(),
        "people": people,
    }


def import_(
    g: Gallery,
    data: dict[str, Any],
    embedder: str,
    actor: str,
    max_templates: int = 20,
    aligned_by: str = "blazeface",
) -> int:
    """Import an export made with the same embedder version and alignment (an export
    from before alignment was recorded was BlazeFace-aligned), in one transaction."""
    if data.get("format") != EXPORT_FORMAT or data.get("version") != EXPORT_VERSION:
        raise GalleryError("not an appliance gallery export (or a newer format)")
    if data.get("embedder") != embedder:
        raise GalleryError(
            f"export was made with embedder {data.get('embedder')!r}, "
            f"this device uses {embedder!r}: re-enrol from photos instead"
        )
    if data.get("aligned_by", "blazeface") != aligned_by:
        raise GalleryError(
            f"export was made with faces aligned by {data.get('aligned_by', 'blazeface')!r}, "
            f"this device aligns by {aligned_by!r} (detector.model): re-enrol from photos "
            "instead, or set detector.model to the exporting device's"
        )
    people = data.get("people")
    if not isinstance(people, list):
        raise GalleryError("export has no people list")
    parsed: list[tuple[str, dict[str, Any], list[Template]]] = []
    for p in people:
        try:
            tpls = [
                Template(
                    np.asarray(t["embedding"], np.float32),
                    embedder,
                    "import",
                    dict(t.get("quality", {})),
                )
                for t in p["templates"]
            ]
            name = str(p["name"])
            meta = dict(p.get("meta", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise GalleryError(f"malformed person in export: {exc}") from exc
        dims = {t.embedding.shape for t in tpls}
        if len(dims) != 1 or not tpls:
            raise GalleryError(f"{name!r}: templates of mixed or no shape")
        parsed.append((name, meta, tpls[-max_templates:]))
    # One transaction for the whole import: the nested enrol() calls would each
    # commit, so write directly here.
    now = _now()
    with g.transaction() as db:
        for name, meta, tpls in parsed:
            row = db.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()
            pid = row[0] if row else uuid.uuid4().hex
            if not row:
                db.execute(
                    "INSERT INTO persons (id, name, meta, created, updated) VALUES (?,?,?,?,?)",
                    (pid, name, json.dumps(meta), now, now),
                )
            for t in tpls:
                db.execute(
                    "INSERT INTO templates (person_id, embedding, embedder, quality, "
                    "source, created, aligned_by) VALUES (?,?,?,?,?,?,?)",
                    (
                        pid,
                        t.embedding.tobytes(),
                        embedder,
                        json.dumps(t.quality),
                        "import",
                        now,
                        aligned_by,
                    ),
                )
            dropped = g._trim(db, pid, embedder, max_templates)
            g.audit(db, actor, "import", pid, {"templates": len(tpls), "dropped_oldest": dropped})
    return len(parsed)
