"""Enrolment from the camera: one session that collects gated faces over several frames.

Started by any route (a signed MQTT `enroll` with `capture`, the Home Assistant button,
later the web page); its result completes the caller's future later and is published as
`EnrolmentFinished`, so Home Assistant shows how it ended even though it never reads a
reply topic. Templates are made by the recogniser's own `template_of`, so the gates and
`keep_thumbnails` apply exactly as for photos.

While it runs, each frame gets live feedback (`feedback.feedback`: "Come closer.", "Hold
still.", ...) that `status` hands to whoever asks (the web page polls it through the
`CaptureStatus` command); only frames whose feedback is `good` become templates. The last
session's outcome stays readable until the next one starts.
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
from appliance.identity.feedback import Feedback, feedback
from appliance.identity.gates import EnrolmentRefused
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
    feedback: Feedback | None = None  # the latest frame's
    last_box: Any = None  # the largest face's box in the latest frame, for movement


class CaptureSessions:
    def __init__(self, recogniser: Recogniser, events: DomainEvents, timeout_s: float) -> None:
        self.recogniser = recogniser
        self.events = events
        self.timeout_s = timeout_s
        self._active: _Session | None = None
        self._last: dict[str, Any] | None = None  # how the last session ended

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
        self._last = None
        self._active = _Session(cmd, actor, time.monotonic() + self.timeout_s, fut)
        log.info("camera enrolment started (%d frames, by %s)", cmd.frames, actor)
        return fut

    def status(self) -> dict[str, Any]:
        """The running session's latest feedback and progress, or how the last one ended
        (`result`, None before any). Frame loop only, like `step`."""
        s = self._active
        if s is None:
            return {"active": False, "result": self._last}
        fb = s.feedback
        out: dict[str, Any] = {
            "active": True,
            "name": s.cmd.name,
            "collected": len(s.templates),
            "frames": s.cmd.frames,
            "remaining_s": round(max(0.0, s.deadline - time.monotonic()), 1),
            "feedback": fb.as_dict() if fb else None,
            "result": None,
        }
        if fb is not None and fb.code == "good":
            out["feedback"]["message"] = (
                f"{fb.message} {len(s.templates)} of {s.cmd.frames} frames collected."
            )
        return out

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
        s.feedback = fb = feedback(faces, self.recogniser.cfg.enrolment, s.last_box)
        s.last_box = faces[0].box.copy() if faces else None
        if fb.code != "good":
            s.last_reason = f"{fb.message} ({fb.detail})" if fb.detail else fb.message
            return
        try:
            s.templates.append(self.recogniser.template_of(faces[0], "camera"))
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
        self._last = {
            "name": s.cmd.name,
            "ok": ok,
            "code": code,
            "message": message,
            "person_id": person_id,
            "at": round(time.time(), 3),
        }
        self.events.publish(
            EnrolmentFinished(s.cmd.name, ok, code, message, person_id, s.actor, time.time())
        )
        if isinstance(outcome, CommandError):
            log.info("camera enrolment refused: %s", outcome.message)
            s.future.set_exception(outcome)
        else:
            s.future.set_result(outcome)
