"""The retained topics that say what the door last did, kept true after every change.

Subscribed to domain events: a decision updates `last_person`, the person's last-seen
time and (with snapshots on) the face snapshot; deleting a person clears every one of
these that names them or shows their face, whichever route deleted them; renaming
updates them. It remembers who each retained message is about, so nothing of a deleted
person stays on the broker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from appliance.control.bus import Jobs
from appliance.control.events import (
    Decided,
    DomainEvents,
    EnrolmentFinished,
    PersonDeleted,
    PersonRenamed,
)
from appliance.health import iso_time
from appliance.transport.mqtt.topics import Topics
from appliance.vision.imageio import encode_jpeg

log = logging.getLogger(__name__)


class RetainedState:
    def __init__(
        self,
        topics: Topics,
        publish: Callable[..., Any],
        jobs: Jobs,
        *,
        snapshots: bool,
        last_seen_clear_delay_s: float,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.topics = topics
        self.publish = publish
        self.jobs = jobs
        self.snapshots = snapshots
        # With Home Assistant, its sensor must be removed before its state topic is
        # cleared: an empty payload reaching a live timestamp sensor logs a warning there.
        self.clear_delay_s = last_seen_clear_delay_s
        self.on_change = on_change  # e.g. republish the health state, which names them too
        self.last_person: dict[str, Any] | None = None
        self.snapshot_of: str | None = None  # person id whose face is retained, or "" (a stranger)
        self.enrolment: dict[str, Any] | None = None

    def subscribe(self, events: DomainEvents) -> None:
        events.subscribe(Decided, self.on_decided)
        events.subscribe(PersonDeleted, self.on_deleted)
        events.subscribe(PersonRenamed, self.on_renamed)
        events.subscribe(EnrolmentFinished, self.on_enrolment)

    def on_connected(self) -> None:
        """Say what this run knows: a restarted daemon does not know whose name or face
        an older run left retained, so it replaces them rather than risk keeping a
        deleted person's."""
        self._publish_last_person()
        if self.snapshots and self.snapshot_of is None:
            self.publish(self.topics.snapshot, b"", qos=1, retain=True)
        if self.enrolment is not None:
            self.publish(self.topics.enrolment, json.dumps(self.enrolment), qos=1, retain=True)

    def on_decided(self, e: Decided) -> None:
        p = e.payload
        pid, decision = p["person_id"], p["decision"]
        if pid and decision != "denied":
            when = iso_time(p["decided"])
            self.publish(self.topics.person_last_seen(pid), when, qos=1, retain=True)
        if pid:
            self.last_person = {
                "name": p["name"],
                "person_id": pid,
                "score": p["score"],
                "time": iso_time(p["decided"]),
                "event_id": p["event_id"],
                "decision": decision,
            }
            self._publish_last_person()
        if self.snapshots and e.face is not None:
            self.publish(self.topics.snapshot, encode_jpeg(e.face), qos=0, retain=True)
            self.snapshot_of = pid or ""

    def on_deleted(self, e: PersonDeleted) -> None:
        pid = e.person.id
        if self.last_person and self.last_person.get("person_id") == pid:
            self.last_person = None
            self._publish_last_person()
        if self.snapshot_of == pid:
            self.publish(self.topics.snapshot, b"", qos=1, retain=True)  # removes the retained face
            self.snapshot_of = None
        if self.enrolment and (
            self.enrolment.get("person_id") == pid or self.enrolment.get("name") == e.person.name
        ):
            self.enrolment = {"result": "erased", "name": None, "person_id": None}
            self.publish(self.topics.enrolment, json.dumps(self.enrolment), qos=1, retain=True)
        topic = self.topics.person_last_seen(pid)
        self.jobs.call_later(
            self.clear_delay_s, lambda: self.publish(topic, "", qos=1, retain=True)
        )
        self.on_change()

    def on_renamed(self, e: PersonRenamed) -> None:
        if self.last_person and self.last_person.get("person_id") == e.person.id:
            self.last_person = {**self.last_person, "name": e.person.name}
            self._publish_last_person()
            self.on_change()

    def on_enrolment(self, e: EnrolmentFinished) -> None:
        self.enrolment = {
            "result": e.code,
            "ok": e.ok,
            "name": e.name,
            "person_id": e.person_id,
            "message": e.message,
            "by": e.actor,
            "time": iso_time(e.at),
        }
        self.publish(self.topics.enrolment, json.dumps(self.enrolment), qos=1, retain=True)

    def _publish_last_person(self) -> None:
        # An object, not an empty payload: Home Assistant reads its attributes as JSON.
        body = self.last_person or {"name": None}
        self.publish(self.topics.last_person, json.dumps(body), qos=1, retain=True)
