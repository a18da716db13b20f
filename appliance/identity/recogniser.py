"""The recogniser: pipeline + gallery + matcher + thresholds, and the one gallery writer.

The CLI (no daemon running) and the daemon's command service both use this, so
enrolment, the duplicate check and the open-set decision are written once. Every change
to the gallery goes through a method here and publishes a domain event, so what follows
from it (Home Assistant, retained topics) cannot be forgotten by a route. A change made
by another process (an old CLI, a restored backup) is noticed through SQLite's
`data_version` and published the same way (`refresh`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config.schema import Config
from appliance.control.events import DomainEvents, PersonDeleted, PersonEnrolled, PersonRenamed
from appliance.identity.gates import EnrolmentRefused, check_gates, photo_label, pick_face
from appliance.identity.matcher import Match, Matcher, Thresholds
from appliance.identity.thresholds import load_calibration, resolve
from appliance.store import portable
from appliance.store.gallery import Gallery, Person, Template, TemplateSet
from appliance.vision.imageio import ImageError, decode_image, encode_jpeg, read_image
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


def load_pipeline(cfg: Config) -> FacePipeline:
    """The pipeline the config asks for (models, detector): the daemon's and the CLI's."""
    return FacePipeline.load(
        embedder=cfg.models.embedder,
        threads=cfg.models.threads,
        flip=cfg.models.flip,
        score_threshold=cfg.detector.score_threshold,
        detector=cfg.detector.model,
        tiles=cfg.detector.grid(cfg.recognition.mode),
    )


class Recogniser:
    def __init__(
        self,
        cfg: Config,
        pipeline: FacePipeline,
        gallery: Gallery,
        events: DomainEvents | None = None,
    ) -> None:
        self.cfg = cfg
        self.events = events or DomainEvents()
        self.pipeline = pipeline
        self.gallery = gallery
        self.embedder = pipeline.embedder.spec.version
        # Templates are matched only against probes aligned the same way (the gallery
        # filters on it); `alignment_problem` is why the daemon refuses to start.
        self.aligned_by = pipeline.aligned_by
        self.lock = threading.RLock()
        spec, flip = pipeline.embedder.spec, pipeline.embedder.flip
        self.calibration = load_calibration(spec.name, flip, self.aligned_by)
        self.matcher = Matcher(self._templates(), COMBINE)
        self._known = {p.id: p for p in gallery.persons()}
        self._data_version = gallery.data_version()
        stale = [p for p in gallery.persons(self.embedder, self.aligned_by) if p.stale_templates]
        if stale:
            log.warning(
                "%d people have templates from another embedder version or alignment "
                "and need re-enrolment",
                len(stale),
            )

    @classmethod
    def open(
        cls, cfg: Config, pipeline: FacePipeline | None = None, events: DomainEvents | None = None
    ) -> Recogniser:
        return cls(cfg, pipeline or load_pipeline(cfg), open_gallery(cfg), events)

    def _templates(self) -> TemplateSet:
        return self.gallery.template_set(self.embedder, self.aligned_by)

    def alignment_problem(self) -> str | None:
        """Why this pipeline's faces must not be matched against this gallery or scored
        with this calibration: they were made through another alignment (a detector's
        own keypoints against the face mesh). None when all agree."""
        det = self.cfg.detector.model
        other = {a: n for a, n in self.gallery.alignments(self.embedder).items()}
        other.pop(self.aligned_by, None)
        fix = (
            f"set detector.model back to the detector the gallery was enrolled with, or "
            f"re-enrol everyone through {det} (appliance people delete NAME, then "
            "appliance enroll NAME PHOTO...)"
        )
        if other:
            made = ", ".join(f"{n} aligned by {a}" for a, n in sorted(other.items()))
            return (
                f"detector.model: {det} aligns faces by {self.aligned_by}, but the gallery "
                f"holds templates made otherwise ({made}); they are never matched against "
                f"each other: {fix}"
            )
        cal = self.calibration
        own = cal is not None and cal.aligned_by == self.aligned_by
        if self.cfg.recognition.threshold is None and not own and self.aligned_by != "blazeface":
            have = "none" if cal is None else f"one of faces aligned by {cal.aligned_by}"
            return (
                f"detector.model: {det} aligns faces by {self.aligned_by}, and "
                f"models/manifest.json has {have} for embedder {self.cfg.models.embedder}: "
                f"recalibrate (tools/evaluate.py identify --data ../shared/data/lfw "
                f"--embedder {self.cfg.models.embedder} --detector {det} --pad 100 "
                "--write-calibration) or set recognition.threshold"
            )
        return None

    def check_ready(self) -> None:
        """What the daemon checks before it starts: the thresholds resolve (calibrated or
        fixed), and no gallery or calibration of another alignment would be mixed with
        this pipeline's faces (raises ValueError with `alignment_problem`)."""
        problem = self.alignment_problem()
        if problem:
            raise ValueError(problem)
        self.thresholds()

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
        """Every face in a photo, named or unknown (a face filling the photo too)."""
        faces = self.pipeline.photo_faces(image)
        if not faces:
            return []
        matches = self.match(np.stack([f.embedding for f in faces]))
        return [Identified(f, m) for f, m in zip(faces, matches, strict=True)]

    # --- enrolment -------------------------------------------------------------------

    def template_from(
        self,
        image: np.ndarray | bytes | str | Path,
        source: str,
        largest: bool = False,
        label: str | None = None,
    ) -> tuple[Face, Template]:
        """One gated template from a photo; raises EnrolmentRefused or ImageError, whose
        message starts with the photo's `label` (default: `photo_label` of a lone photo).
        A face filling the photo is found too (`FacePipeline.photo_faces`)."""
        label = label or photo_label(image, 0)
        try:
            if isinstance(image, bytes):
                image = decode_image(image)
            elif isinstance(image, (str, Path)):
                image = read_image(image)
            face = pick_face(self.pipeline.photo_faces(image), largest, photo=True)
            return face, self.template_of(face, source)
        except ImageError as exc:
            raise ImageError(exc.reason, label) from exc
        except EnrolmentRefused as exc:
            raise exc.about(label) from exc

    def template_of(self, face: Face, source: str) -> Template:
        """A gated template from a face the pipeline found (a photo or a camera frame);
        the only place a thumbnail is made, and only when `keep_thumbnails` says so."""
        check_gates(face, self.cfg.enrolment)
        if face.embedding is None:
            face.embedding = self.pipeline.embedder.embed(face.aligned[None])[0]
        thumb = None
        if self.cfg.enrolment.keep_thumbnails:
            thumb = encode_jpeg(face.aligned)
        q = face.quality.as_dict()
        return Template(face.embedding, self.embedder, source, q, thumb, self.aligned_by)

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
        """Gate every photo, check for duplicates, then store all or nothing.

        Every photo is gated before anything is refused, so one refusal names each bad
        photo (by `photo_label`) and the person can fix them all at once; its code is the
        first bad photo's."""
        if not images:
            raise ValueError(f"no photos to enrol {name!r} from")
        labels = [photo_label(img, i) for i, img in enumerate(images)]
        templates: list[Template] = []
        refused: list[EnrolmentRefused | ImageError] = []
        for img, label in zip(images, labels, strict=True):
            try:
                templates.append(self.template_from(img, source, largest, label)[1])
            except (EnrolmentRefused, ImageError) as exc:
                refused.append(exc)
        if refused:
            text = "; ".join(str(e) for e in refused)
            if len(images) > 1:
                text = f"{len(refused)} of {len(images)} photos refused: {text}"
            first = refused[0]
            if isinstance(first, EnrolmentRefused):
                raise EnrolmentRefused(first.code, text)
            raise ImageError(text)
        return self.store(name, templates, actor, force, meta, labels)

    def store(
        self,
        name: str,
        templates: list[Template],
        actor: str,
        force: bool = False,
        meta: dict[str, Any] | None = None,
        labels: list[str] | None = None,
    ) -> Person:
        """Check for duplicates, then store all templates or none; publishes the change.
        `labels` name the templates' photos in a duplicate refusal."""
        with self.lock:
            if not force:
                self._duplicate_check(name, templates, labels)
            new = not any(p.name.casefold() == name.strip().casefold() for p in self._people())
            person = self.gallery.enrol(
                name, templates, actor, meta, self.cfg.enrolment.max_templates
            )
            self._reload_person(person)
            self._seen_own_write(person)
        log.info(
            "enrolled %d template(s) for person %s (source %s, by %s)",
            len(templates),
            person.id,
            templates[0].source,
            actor,
        )
        self.events.publish(PersonEnrolled(person, new, actor))
        return person

    def _duplicate_check(
        self, name: str, templates: list[Template], labels: list[str] | None = None
    ) -> None:
        th = self.thresholds()
        scores = self.matcher.person_scores(np.stack([t.embedding for t in templates]))
        if scores.size == 0:
            return
        for i, row in enumerate(scores):
            j = int(np.argmax(row))
            other = self.matcher.names[j]
            if row[j] >= th.accept and other.casefold() != name.strip().casefold():
                photo = f"{labels[i]}: " if labels else ""
                raise EnrolmentRefused(
                    "duplicate",
                    f"{photo}looks like {other}: cosine {row[j]:.2f}, a new name needs "
                    f"below {th.accept:.2f} (the accept threshold; recognition.mode and "
                    "recognition.threshold set it); use force to enrol anyway",
                )

    def _reload_person(self, person: Person) -> None:
        ts = self._templates()
        if person.id in ts.person_ids:
            j = ts.person_ids.index(person.id)
            self.matcher.set_person(person.id, ts.names[j], ts.matrix[ts.owner == j])

    def rename(self, who: str, new_name: str, actor: str) -> Person:
        with self.lock:
            old = self.gallery.find(who)
            person = self.gallery.rename(who, new_name, actor)
            self.matcher.rename(person.id, person.name)
            self._seen_own_write(person)
        self.events.publish(PersonRenamed(person, old.name, actor))
        return person

    def delete(self, who: str, actor: str) -> Person:
        with self.lock:
            person = self.gallery.delete(who, actor)
            self.matcher.remove(person.id)
            self._known.pop(person.id, None)
            self._data_version = self.gallery.data_version()
        self.events.publish(PersonDeleted(person, actor))
        return person

    def export(self) -> dict[str, Any]:
        return portable.export(self.gallery, self.embedder, self.aligned_by)

    def import_(self, data: dict[str, Any], actor: str) -> int:
        with self.lock:
            n = portable.import_(
                self.gallery,
                data,
                self.embedder,
                actor,
                self.cfg.enrolment.max_templates,
                self.aligned_by,
            )
        self.refresh(force=True, actor=actor)
        return n

    # --- changes made outside this process -------------------------------------------

    def _people(self) -> list[Person]:
        return list(self._known.values())

    def _seen_own_write(self, person: Person) -> None:
        self._known[person.id] = person
        self._data_version = self.gallery.data_version()

    def refresh(self, force: bool = False, actor: str = "file") -> bool:
        """Reload the matcher if another connection changed the gallery file (SQLite's
        `data_version` moves only for other connections' commits), and publish what
        changed as domain events. One PRAGMA when nothing changed: the frame loop calls it
        every `GALLERY_CHECK_S`."""
        version = self.gallery.data_version()
        if not force and version == self._data_version:
            return False
        with self.lock:
            self._data_version = version
            self.matcher = Matcher(self._templates(), COMBINE)
            now = {p.id: p for p in self.gallery.persons()}
            before, self._known = self._known, now
        for pid, p in before.items():
            if pid not in now:
                self.events.publish(PersonDeleted(p, actor))
        for pid, p in now.items():
            old = before.get(pid)
            if old is None or old.templates != p.templates or old.updated != p.updated:
                if old is not None and old.name != p.name:
                    self.events.publish(PersonRenamed(p, old.name, actor))
                else:
                    self.events.publish(PersonEnrolled(p, old is None, actor))
        log.info("gallery changed on disk: %d people now", self.matcher.size)
        return True

    def close(self) -> None:
        self.gallery.close()


__all__ = ["EnrolmentRefused", "Identified", "Recogniser"]
