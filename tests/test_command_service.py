"""The command service without MQTT: typed commands through the bus into the real
recogniser (real int8 models, real SQLite), and the domain events each change publishes."""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import pytest

from appliance.access.rulebook import RuleBook
from appliance.config.schema import Config, EnrolmentConfig, StorageConfig
from appliance.control import commands as c
from appliance.control.bus import CommandBus
from appliance.control.commands import CommandError, from_args
from appliance.control.events import (
    DomainEvents,
    EnrolmentFinished,
    PersonDeleted,
    PersonEnrolled,
    SettingsChanged,
)
from appliance.control.service import CommandService
from appliance.control.settings import LiveSettings
from appliance.identity.capture import CaptureSessions
from appliance.identity.recogniser import Recogniser, open_gallery


@pytest.fixture
def door(tmp_path, pipeline) -> Any:
    cfg = dataclasses.replace(
        Config(),
        storage=StorageConfig(str(tmp_path)),
        enrolment=EnrolmentConfig(keep_thumbnails=True, max_templates=3),
    )
    events = DomainEvents()
    seen: list[object] = []
    for kind in (PersonEnrolled, PersonDeleted, SettingsChanged, EnrolmentFinished):
        events.subscribe(kind, seen.append)
    rec = Recogniser(cfg, pipeline, open_gallery(cfg), events)
    capture = CaptureSessions(rec, events, timeout_s=30.0)
    service = CommandService(
        rec,
        LiveSettings(cfg, None, events),
        capture,
        lambda: {"ok": True},
        lambda: 0,
        RuleBook(rec.gallery, cfg, events),
    )
    bus = CommandBus(maxsize=2)

    def run(cmd: c.Command) -> Any:
        fut = bus.submit(cmd, "test")
        bus.drain(service.execute)
        return fut

    yield type("Door", (), {"rec": rec, "capture": capture, "bus": bus, "run": run, "seen": seen})
    rec.close()


def png(image) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_enrol_then_delete_publishes_and_revokes(door, astronaut):
    person = door.run(c.Enrol("Ann", (png(astronaut),))).result()["person"]
    assert [type(e) for e in door.seen] == [PersonEnrolled] and door.seen[0].new
    assert door.rec.identify(astronaut)[0].match.name == "Ann"
    door.run(c.Enrol("Ann", (png(astronaut),), force=True)).result()
    assert door.seen[-1].new is False  # more templates for Ann, not a new person
    assert door.run(c.Delete("Ann")).result() == {"deleted": person["id"]}
    assert isinstance(door.seen[-1], PersonDeleted) and door.seen[-1].person.id == person["id"]
    assert door.rec.identify(astronaut)[0].match.person_id is None  # at once, same process


def test_refusals_are_command_errors_and_change_nothing(door, astronaut):
    with pytest.raises(CommandError) as e:
        from_args("enroll", {"name": "", "images": []})
    assert e.value.code == "malformed"
    with pytest.raises(CommandError) as e:
        from_args("enroll", {"name": "Ann", "images": ["not base64!"]})
    assert e.value.code == "malformed"
    with pytest.raises(CommandError) as e:
        door.run(c.Delete("nobody")).result()
    assert e.value.code == "GalleryError"
    with pytest.raises(CommandError) as e:
        door.run(c.Enrol("Ann", (b"\x89PNG broken",))).result()
    assert e.value.code == "ImageError"
    with pytest.raises(CommandError) as e:
        door.run(c.SetLive({"decision.min_frames": 0})).result()
    assert e.value.code == "invalid"
    with pytest.raises(CommandError) as e:
        door.run(c.SetLive({"camera.width": 10})).result()
    assert e.value.code == "malformed"
    assert door.rec.gallery.persons() == [] and door.seen == []


def test_live_setting_is_announced(door):
    door.run(c.SetLive({"decision.min_frames": 5})).result()
    assert isinstance(door.seen[-1], SettingsChanged)
    assert door.seen[-1].cfg.decision.min_frames == 5


def test_full_queue_answers_busy(door):
    door.bus.submit(c.Status(), "a")
    door.bus.submit(c.Status(), "b")
    with pytest.raises(CommandError) as e:
        door.bus.submit(c.Status(), "c")
    assert e.value.code == "busy" and door.bus.busy == 1


def test_camera_enrolment_completes_later_and_keeps_thumbnails(door, astronaut, pipeline):
    fut = door.run(c.CaptureEnrol("Cam", frames=2))
    assert not fut.done() and door.capture.active
    with pytest.raises(CommandError) as e:
        door.run(c.CaptureEnrol("Other")).result()
    assert e.value.code == "busy"  # one capture at a time, and said so where HA looks
    assert door.seen[-1].code == "busy" and door.seen[-1].name == "Other"
    for _ in range(2):
        door.capture.step(pipeline.faces(astronaut, embed=False))
    person = fut.result(0)["person"]
    assert person["templates"] == 2
    assert len(door.rec.gallery.thumbnails(person["id"])) == 2  # keep_thumbnails honoured
    templates = door.run(c.Templates(person["id"])).result()["templates"]
    assert [t["thumbnail"] for t in templates] == [0, 1]  # which thumbnail is whose
    assert all(t["source"] == "camera" and t["current"] for t in templates)
    assert all(t["quality"]["eye_distance"] >= 40 for t in templates)
    finished = [e for e in door.seen if isinstance(e, EnrolmentFinished)]
    assert finished[-1].ok and finished[-1].person_id == person["id"]


def test_camera_enrolment_timeout_is_reported(door):
    door.capture.timeout_s = 0.0
    fut = door.run(c.CaptureEnrol("Cam"))
    door.capture.step([])
    with pytest.raises(CommandError) as e:
        fut.result(0)
    assert e.value.code == "capture_timeout"
    assert door.seen[-1].ok is False and door.seen[-1].code == "capture_timeout"


def test_import_never_exceeds_max_templates(door, astronaut):
    door.run(c.Enrol("Ann", (png(astronaut),) * 3)).result()
    data = door.run(c.ExportGallery()).result()
    assert door.run(c.ImportGallery(data)).result() == {"imported": 1}
    assert door.rec.gallery.persons()[0].templates == 3  # 3 + 3 imported, capped at 3


def test_a_change_by_another_process_is_noticed_and_published(door, astronaut, tmp_path):
    door.run(c.Enrol("Ann", (png(astronaut),))).result()
    assert door.rec.refresh() is False  # our own write: nothing to reload
    with open_gallery(door.rec.cfg) as other:  # e.g. the CLI with no daemon listening
        other.delete("Ann", "cli:test")
    assert door.rec.refresh() is True
    assert isinstance(door.seen[-1], PersonDeleted)
    assert door.rec.identify(astronaut)[0].match.person_id is None


def test_rule_commands_run_through_the_service_and_refuse_cleanly(door, astronaut):
    door.run(c.Enrol("Ann", (png(astronaut),))).result()
    got = door.run(c.SetGroup("staff", {"windows": ["mon-fri 08:00-18:00"]})).result()
    assert got["created"] is True and got["windows"] == ["mon-fri 08:00-18:00"]
    got = door.run(c.SetAccess("Ann", {"groups": ["staff"], "valid_until": "2030-01-01"})).result()
    assert got["groups"] == ["staff"] and got["valid_until"] == "2030-01-01"
    assert door.run(c.SetDoorMode("lockdown", None)).result() == {"mode": "lockdown", "group": None}
    snap = door.run(c.ListRules()).result()
    assert snap["mode"]["mode"] == "lockdown" and "staff" in snap["groups"]
    for bad, code in [
        (c.SetAccess("Ann", {"groups": ["nosuch"]}), "GalleryError"),
        (c.SetGroup("night", {"windows": ["mon 18:00-18:00"]}), "ScheduleError"),
        (c.SetDoorMode("passage", None), "ScheduleError"),
        (c.Unlock(5.0, "test"), "no_door"),  # this device drives no door
        (c.DoorStatus(), "no_door"),
    ]:
        with pytest.raises(CommandError) as e:
            door.run(bad).result()
        assert e.value.code == code, (bad, e.value.code, e.value.message)
    assert door.run(c.ListRules()).result() == snap  # the refusals changed nothing
    audit = [e["action"] for e in door.rec.gallery.audit_log(50)]
    assert {"group_set", "access_set", "door_mode"} <= set(audit)
