"""The command service: every change, from every transport, runs here (frame loop only).

One handler per typed command. The recogniser and the settings publish what changed as
domain events, so this module does not call Home Assistant, MQTT or anything else by
hand. Library errors become `CommandError` here, once, for every transport.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from appliance.access.rulebook import RuleBook
from appliance.access.schedule import zone
from appliance.control import commands as c
from appliance.control.commands import CommandError
from appliance.control.settings import LiveSettings
from appliance.identity.capture import CaptureSessions
from appliance.identity.gates import EnrolmentRefused
from appliance.identity.recogniser import Recogniser
from appliance.store.gallery import GalleryError
from appliance.vision.imageio import ImageError, decode_image

# What a person can do about a refused photo, by the refusal's code (the reason itself
# says what was measured and what is needed).
HINTS = {
    "no_face": "use a photo in which the face is clearly visible and lit from the front",
    "several_faces": "crop the photo to one person, or enrol with 'largest face'",
    "low_score": "use a sharper, better lit photo of the face",
    "too_small": "move closer or use a larger photo: the face should fill a third of it",
    "blurred": "hold the camera still, or pick a sharper photo",
    "not_frontal": "use a photo looking straight at the camera",
    "duplicate": "this face is enrolled under another name; rename that person instead",
    "ImageError": "send a JPEG or PNG photo",
}

log = logging.getLogger(__name__)


class CommandService:
    def __init__(
        self,
        recogniser: Recogniser,
        settings: LiveSettings,
        capture: CaptureSessions,
        status: Callable[[], dict[str, Any]],
        reload: Callable[[], int],
        rules: RuleBook,
        door: Any = None,  # appliance.door.controller.DoorController, when one is wired
        event_log: Any = None,  # appliance.store.event_log.EventLog, when one is wired
        replication: Any = None,  # appliance.replication.sync.Replicator, when enabled
    ) -> None:
        self.recogniser = recogniser
        self.settings = settings
        self.capture = capture
        self.status = status
        self.reload = reload
        self.rules = rules
        self.door = door
        self.event_log = event_log
        self.replication = replication
        self.counts = {"commands": 0, "commands_refused": 0}

    def execute(self, cmd: c.Command, actor: str) -> Any:
        """The command's result (a JSON-able dict), a Future for a capture, or
        CommandError; nothing is changed when it raises."""
        try:
            result = self._run(cmd, actor)
        except CommandError:
            self.counts["commands_refused"] += 1
            raise
        except EnrolmentRefused as exc:
            self.counts["commands_refused"] += 1
            raise CommandError(exc.code, exc.reason) from exc
        except (ImageError, GalleryError, ValueError) as exc:
            self.counts["commands_refused"] += 1
            raise CommandError(type(exc).__name__, str(exc)) from exc
        except sqlite3.Error as exc:  # disk full, I/O error: the transaction rolled back
            self.counts["commands_refused"] += 1
            log.error("command %s: storage error: %s", type(cmd).__name__, exc)
            raise CommandError("storage", f"storage error ({exc}); nothing was changed") from exc
        self.counts["commands"] += 1
        return result

    def _run(self, cmd: c.Command, actor: str) -> Any:
        r = self.recogniser
        if isinstance(cmd, c.Enrol):
            person = r.enrol(
                cmd.name,
                list(cmd.images),
                cmd.source,
                actor,
                force=cmd.force,
                largest=cmd.largest,
                meta=cmd.meta,
            )
            return {"person": person.as_dict()}
        if isinstance(cmd, c.CaptureEnrol):
            fut: Future[Any] = self.capture.start(cmd, actor)
            return fut
        if isinstance(cmd, c.CaptureStatus):
            return self.capture.status()
        if isinstance(cmd, c.Delete):
            return {"deleted": r.delete(cmd.who, actor).id}
        if isinstance(cmd, c.Rename):
            return {"person": r.rename(cmd.who, cmd.new_name, actor).as_dict()}
        if isinstance(cmd, c.ListPeople):
            return {"people": [p.as_dict() for p in r.gallery.persons(r.embedder, r.aligned_by)]}
        if isinstance(cmd, c.SetLive):
            self.settings.set(cmd.values)
            return {"thresholds": r.thresholds().as_dict()}
        if isinstance(cmd, c.Reload):
            return {"people": self.reload()}
        if isinstance(cmd, c.Status):
            return self.status()
        if isinstance(cmd, c.ExportGallery):
            return r.export()
        if isinstance(cmd, c.ImportGallery):
            return {"imported": r.import_(cmd.data, actor)}
        if isinstance(cmd, c.SetGroup):
            return self.rules.set_group(cmd.name, cmd.spec, actor)
        if isinstance(cmd, c.DeleteGroup):
            return self.rules.delete_group(cmd.name, actor)
        if isinstance(cmd, c.SetAccess):
            return self.rules.set_person(cmd.who, cmd.changes, actor)
        if isinstance(cmd, c.SetDoorMode):
            return self.rules.set_mode(cmd.mode, cmd.group, actor)
        if isinstance(cmd, c.ListRules):
            return self.rules.snapshot()
        if isinstance(cmd, c.Unlock):
            door = self._door()
            door.unlock(cmd.duration_s, cmd.reason, actor)
            log.info("remote unlock for %.0f s by %s: %s", cmd.duration_s, actor, cmd.reason)
            return {"unlocked_s": cmd.duration_s, "door": door.state()}
        if isinstance(cmd, c.DoorStatus):
            return {"door": self._door().state(), "mode": self.rules.snapshot()["mode"]}
        if isinstance(cmd, c.EnrolPhotos):
            return self._enrol_photos(cmd, actor)
        if isinstance(cmd, c.Recognize):
            faces = r.identify(decode_image(cmd.image))
            return {"faces": [f.as_dict() for f in faces], "thresholds": r.thresholds().as_dict()}
        if isinstance(cmd, c.Thumbnail):
            thumbs = r.gallery.thumbnails(r.gallery.find(cmd.who).id)
            if not 0 <= cmd.index < len(thumbs):
                raise CommandError("not_found", f"no thumbnail {cmd.index} (kept: {len(thumbs)})")
            return {"jpeg": thumbs[cmd.index]}
        if isinstance(cmd, c.Templates):
            templates = r.gallery.templates_of(r.gallery.find(cmd.who).id)
            for t in templates:
                t["current"] = t["embedder"] == r.embedder  # compared at this door
            return {"templates": templates}
        if isinstance(cmd, c.ApplyRecords):
            if self.replication is None:
                raise CommandError("no_replication", "replication.enabled is false here")
            return self.replication.apply(list(cmd.records), f"replication:{cmd.origin}")
        return self._history(cmd)

    def _history(self, cmd: c.Command) -> Any:
        """The event log's reads (the events and attendance pages)."""
        log_ = self.event_log
        if log_ is None:
            raise CommandError("no_event_log", "this daemon keeps no event history")
        if isinstance(cmd, c.ListEvents):
            return {
                "events": log_.query(
                    cmd.person, cmd.decision, cmd.since, cmd.until, cmd.after_seq, cmd.limit
                )
            }
        if isinstance(cmd, c.Attendance):
            tz = zone(self.settings.cfg.access.timezone or None)
            return {"days": log_.attendance(cmd.since, cmd.until, tz, cmd.person)}
        if isinstance(cmd, c.Snapshot):
            jpeg = log_.snapshot(cmd.event_id)
            if jpeg is None:
                raise CommandError("not_found", f"no snapshot kept for event {cmd.event_id!r}")
            return {"jpeg": jpeg}
        if isinstance(cmd, c.LastSeen):
            return {"last_seen": log_.last_seen()}
        raise CommandError("unknown_command", f"unknown command {type(cmd).__name__}")

    def _enrol_photos(self, cmd: c.EnrolPhotos, actor: str) -> dict[str, Any]:
        """Gate each photo on its own and say so per photo; store all (or, with
        `keep_good`, the good ones) in one transaction, or nothing."""
        r = self.recogniser
        results: list[dict[str, Any]] = []
        templates, labels = [], []
        for label, data in cmd.photos:
            try:
                face, t = r.template_from(data, "http", label=label)
            except (EnrolmentRefused, ImageError) as exc:
                code = getattr(exc, "code", "ImageError")
                reason = getattr(exc, "reason", str(exc))
                results.append(
                    {
                        "photo": label,
                        "accepted": False,
                        "code": code,
                        "reason": reason,
                        "hint": HINTS.get(code, ""),
                    }
                )
                continue
            templates.append(t)
            labels.append(label)
            results.append({"photo": label, "accepted": True, "quality": face.quality.as_dict()})
        refused = len(cmd.photos) - len(templates)
        if not templates or (refused and not cmd.keep_good):
            self.counts["commands_refused"] += 1
            return {"enrolled": False, "photos": results}
        try:
            person = r.store(cmd.name, templates, actor, cmd.force, None, labels)
        except EnrolmentRefused as exc:
            self.counts["commands_refused"] += 1
            for res in results:
                if res["accepted"] and res["photo"] in exc.reason:
                    res.update(accepted=False, code=exc.code, reason=exc.reason)
                    res["hint"] = HINTS.get(exc.code, "")
            return {"enrolled": False, "photos": results, "code": exc.code, "reason": exc.reason}
        return {"enrolled": True, "person": person.as_dict(), "photos": results}

    def _door(self) -> Any:
        if self.door is None:
            raise CommandError("no_door", "this device drives no door (door.enabled is false)")
        return self.door
