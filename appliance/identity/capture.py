"""Enrolment from the camera: one session that collects gated faces over several frames.

Started by any route (a signed MQTT `enroll` with `capture`, the Home Assistant button,
later the web page); its result completes the caller's future later and is published as
`EnrolmentFinished`, so Home Assistant shows how it ended even though it never reads a
reply topic. Templates are made by the recogniser's own `template_of`, so the gates and
`keep_thumbnails` apply exactly as for photos.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from appliance.control.commands import CaptureEnrol, CommandError
from appliance.control.events import DomainEvents, EnrolmentFinished
from appliance.identity.gates import EnrolmentRefused, pick_face
from appliance.identity.recogniser import Recogniser
from appliance.store.gallery import GalleryError, Template
from appliance.vision.pipeline import Face

log = logging.getLogger(__name__)


@dataclass
class _Session:
    cmd: CaptureEnrol
    actor: str
    deadline: float
    future: Future[Any]
    templates: list[Template] = field(default_factory=list)
    last_reason: str = "no face seen yet"


class CaptureSessions:
    def __init__(self, recogniser: Recogniser, events: DomainEvents, timeout_s: float) -> None:
        self.recogniser = recogniser
        self.events = events
        self.timeout_s = timeout_s
        self._active: _Session | None = None

    @property
    def active(self) -> bool:
        return self._active is not None

    def start(self, cmd: CaptureEnrol, actor: str) -> Future[Any]:
        if self._active is not None:
            message = "a camera enrolment is already running"
            # Said where Home Assistant looks too: its button gets no reply topic.
            self.events.publish(
                EnrolmentFinished(cmd.name, False, "busy", message, None, actor, time.time())
            )
            raise CommandError("busy", message)
        fut: Future[Any] = Future()
        self._active = _Session(cmd, actor, time.monotonic() + self.timeout_s, fut)
        log.info("camera enrolment started (%d frames, by %s)", cmd.frames, actor)
        return fut

    def cancel(self, reason: str = "cancelled") -> None:
        if self._active is not None:
            self._finish(CommandError("cancelled", reason))

    def step(self, faces: list[Face]) -> None:
        """One frame's faces (frame loop only)."""
        s = self._active
        if s is None:
            return
        if time.monotonic() > s.deadline:
            self._finish(
                CommandError(
                    "capture_timeout",
                    f"only {len(s.templates)} of {s.cmd.frames} good frames: {s.last_reason}",
                )
            )
            return
        try:
            s.templates.append(self.recogniser.template_of(pick_face(faces), "camera"))
        except EnrolmentRefused as exc:
            s.last_reason = exc.reason
            return
        if len(s.templates) < s.cmd.frames:
            return
        try:
            person = self.recogniser.store(
                s.cmd.name, s.templates, s.actor, s.cmd.force, s.cmd.meta
            )
        except EnrolmentRefused as exc:
            self._finish(CommandError(exc.code, exc.reason))
        except GalleryError as exc:
            self._finish(CommandError("GalleryError", str(exc)))
        except sqlite3.Error as exc:
            self._finish(CommandError("storage", f"storage error ({exc}); nothing was changed"))
        else:
            self._finish({"person": person.as_dict()}, person.id)

    def _finish(self, outcome: dict[str, Any] | CommandError, person_id: str | None = None) -> None:
        s, self._active = self._active, None
        assert s is not None
        ok = not isinstance(outcome, CommandError)
        code = "enrolled" if ok else outcome.code  # type: ignore[union-attr]
        message = f"enrolled {s.cmd.name}" if ok else outcome.message  # type: ignore[union-attr]
        self.events.publish(
            EnrolmentFinished(s.cmd.name, ok, code, message, person_id, s.actor, time.time())
        )
        if isinstance(outcome, CommandError):
            log.info("camera enrolment refused: %s", outcome.message)
            s.future.set_exception(outcome)
        else:
            s.future.set_result(outcome)
