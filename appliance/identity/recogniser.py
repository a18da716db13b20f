"""Recognition as a service: pipeline + gallery + matcher + thresholds behind one lock.

The CLI and the daemon both use this, so enrolment, the duplicate check and the open-set
decision are written once. The lock lets an MQTT enrolment run while the frame loop
matches: the matcher is swapped under the lock, never half-updated.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance.config.schema import Config
from appliance.identity.gates import EnrolmentRefused, check_gates, pick_face
from appliance.identity.matcher import Match, Matcher, Thresholds
from appliance.identity.thresholds import load_calibration, resolve
from appliance.store.gallery import Gallery, Person, Template
from appliance.vision.imageio import decode_image, read_image
from appliance.vision.pipeline import Face, FacePipeline

log = logging.getLogger(__name__)

GALLERY_FILE = "gallery.sqlite3"
# A person's templates are averaged (centroid): on LFW it accepted 89.6% of enrolled
# people at 0.55% strangers where best-of accepted 85.8% (tools/evaluate.py identify).
COMBINE = "centroid"


@dataclass
class Identified:
    face: Face
    match: Match

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.match.as_dict(),
            "box": [round(float(v), 1) for v in self.face.box],
            "quality": self.face.quality.as_dict(),
        }


def open_gallery(cfg: Config) -> Gallery:
    return Gallery(cfg.storage.path() / GALLERY_FILE)


class FaceService:
    def __init__(self, cfg: Config, pipeline: FacePipeline, gallery: Gallery) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.gallery = gallery
        self.embedder = pipeline.embedder.spec.version
        self.lock = threading.RLock()
        self.calibration = load_calibration(pipeline.embedder.spec.name, pipeline.embedder.flip)
        self.matcher = Matcher(gallery.template_set(self.embedder), COMBINE)
        stale = [p.name for p in gallery.persons(self.embedder) if p.stale_templates]
        if stale:
            log.warning(
                "%d people have templates from another embedder version and need re-enrolment",
                len(stale),
            )

    @classmethod
    def open(cls, cfg: Config, pipeline: FacePipeline | None = None) -> FaceService:
        if pipeline is None:
            pipeline = FacePipeline.load(
                embedder=cfg.models.embedder,
                threads=cfg.models.threads,
                flip=cfg.models.flip,
                score_threshold=cfg.detector.score_threshold,
            )
        return cls(cfg, pipeline, open_gallery(cfg))

    def thresholds(self) -> Thresholds:
        r = self.cfg.recognition
        return resolve(
            self.calibration,
            r.mode,
            max(self.matcher.size, 1),
            r.stranger_accept,
            r.threshold,
            r.margin,
        )

    # --- recognition -----------------------------------------------------------------

    def match(self, embeddings: np.ndarray) -> list[Match]:
        with self.lock:
            return self.matcher.match(embeddings, self.thresholds())

    def identify(self, image: np.ndarray) -> list[Identified]:
        faces = self.pipeline.faces(image)
        if not faces:
            return []
        matches = self.match(np.stack([f.embedding for f in faces]))
        return [Identified(f, m) for f, m in zip(faces, matches, strict=True)]

    # --- enrolment -------------------------------------------------------------------

    def template_from(
        self, image: np.ndarray | bytes | str | Path, source: str, largest: bool = False
    ) -> tuple[Face, Template]:
        """One gated template from a photo; raises EnrolmentRefused or ImageError."""
        if isinstance(image, bytes):
            image = decode_image(image)
        elif isinstance(image, (str, Path)):
            image = read_image(image)
        face = pick_face(self.pipeline.faces(image), largest)
        check_gates(face, self.cfg.enrolment)
        thumb = None
        if self.cfg.enrolment.keep_thumbnails:
            thumb = cv2.imencode(".jpg", cv2.cvtColor(face.aligned, cv2.COLOR_RGB2BGR))[1]
            thumb = thumb.tobytes()
        return face, Template(face.embedding, self.embedder, source, face.quality.as_dict(), thumb)

    def enrol(
        self,
        name: str,
        images: list[Any],
        source: str,
        actor: str,
        force: bool = False,
        largest: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> Person:
        """Gate every photo, check for duplicates, then store all or nothing."""
        templates = [self.template_from(img, source, largest)[1] for img in images]
        with self.lock:
            if not force:
                self._duplicate_check(name, templates)
            person = self.gallery.enrol(
                name, templates, actor, meta, self.cfg.enrolment.max_templates
            )
            self._reload_person(person)
        log.info(
            "enrolled %d template(s) for person %s (source %s, by %s)",
            len(templates),
            person.id,
            source,
            actor,
        )
        return person

    def _duplicate_check(self, name: str, templates: list[Template]) -> None:
        th = self.thresholds()
        scores = self.matcher.person_scores(np.stack([t.embedding for t in templates]))
        if scores.size == 0:
            return
        for row in scores:
            j = int(np.argmax(row))
            other = self.matcher.names[j]
            if row[j] >= th.accept and other.casefold() != name.strip().casefold():
                raise EnrolmentRefused(
                    "duplicate",
                    f"looks like {other} (cosine "
                    f"{row[j]:.2f} >= {th.accept:.2f}); "
                    "use force to enrol anyway",
                )

    def _reload_person(self, person: Person) -> None:
        ts = self.gallery.template_set(self.embedder)
        if person.id in ts.person_ids:
            j = ts.person_ids.index(person.id)
            self.matcher.set_person(person.id, ts.names[j], ts.matrix[ts.owner == j])

    def rename(self, who: str, new_name: str, actor: str) -> Person:
        with self.lock:
            person = self.gallery.rename(who, new_name, actor)
            self.matcher.rename(person.id, person.name)
        return person

    def delete(self, who: str, actor: str) -> Person:
        with self.lock:
            person = self.gallery.delete(who, actor)
            self.matcher.remove(person.id)
        return person

    def close(self) -> None:
        self.gallery.close()


__all__ = ["EnrolmentRefused", "FaceService", "Identified"]
