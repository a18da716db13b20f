"""Home Assistant: discovery kept in step with the gallery, and its enrol button.

Subscribed to domain events: a new person gets their own entity (only theirs is sent),
a rename updates it, a delete removes it, whichever route made the change. The full set
is sent when the broker connects and when Home Assistant announces itself (spread over a
few seconds, as its docs ask), from the frame loop's job queue, never a timer thread.
The enrol button submits a camera enrolment to the command bus like any transport; how
it ended is shown by the `last enrolment` sensor (retained state).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.config.schema import HomeAssistantConfig
from appliance.control.bus import CommandBus, Jobs
from appliance.control.commands import CaptureEnrol, CommandError, Unlock
from appliance.control.events import DomainEvents, PersonDeleted, PersonEnrolled, PersonRenamed
from appliance.transport.mqtt import discovery
from appliance.transport.mqtt.link import Incoming
from appliance.transport.mqtt.topics import Topics

log = logging.getLogger(__name__)

NAME_VALID_S = 120.0  # the typed name must be this recent when the button is pressed


class HomeAssistantBridge:
    def __init__(
        self,
        cfg: HomeAssistantConfig,
        topics: Topics,
        publish: Callable[..., Any],
        jobs: Jobs,
        bus: CommandBus,
        people: Callable[[], list[tuple[str, str]]],
        state_dir: Path,
        *,
        snapshots: bool,
        configuration_url: str | None = None,
        door: discovery.DoorEntities | None = None,
        unlock_s: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.topics = topics
        self.publish = publish
        self.jobs = jobs
        self.bus = bus
        self.people = people  # (person id, name) of everyone enrolled; frame loop only
        self.people_file = state_dir / "ha_people.json"  # ids only: no names, no faces
        self.snapshots = snapshots
        self.device_name = cfg.device_name or f"Door {topics.device}"
        # The device's web page, linked from Home Assistant's device page; checked now, so
        # a bad URL is refused at start rather than hiding every entity from HA later.
        self.configuration_url = discovery.check_configuration_url(configuration_url)
        self.ha = topics.home_assistant
        self.door = door
        self.unlock_s = unlock_s
        self._name: tuple[str, float] | None = None

    def subscriptions(self) -> tuple[str, ...]:
        if not self.cfg.discovery:
            return ()
        subs: tuple[str, ...] = (f"{self.cfg.discovery_prefix}/status",)
        if self.cfg.allow_enrol:
            subs += (self.ha["enrol_name"], self.ha["enrol_press"])
        if self._unlock_allowed():
            subs += (self.ha["unlock"],)
        return subs

    def _unlock_allowed(self) -> bool:
        return self.door is not None and self.door.allow_unlock

    def subscribe(self, events: DomainEvents) -> None:
        if not self.cfg.discovery:
            return
        events.subscribe(PersonEnrolled, self._on_enrolled)
        events.subscribe(PersonRenamed, lambda e: self._send_person(e.person.id, e.person.name))
        events.subscribe(PersonDeleted, lambda e: self._remove_person(e.person.id))

    # --- discovery -------------------------------------------------------------------

    def publish_all(self) -> None:
        """Every entity, and removal of people deleted while the daemon was stopped."""
        if not self.cfg.discovery:
            return
        people = self.people()
        for topic, payload in discovery.payloads(
            self.topics,
            self.cfg.discovery_prefix,
            self.device_name,
            snapshots=self.snapshots,
            allow_enrol=self.cfg.allow_enrol,
            people=people,
            configuration_url=self.configuration_url,
            door=self.door,
        ):
            self.publish(topic, payload, qos=1, retain=True)
        ids = {pid for pid, _ in people}
        for pid in self._recorded() - ids:
            self._remove_person(pid)
        self._record(ids)
        log.info("Home Assistant discovery published: %d people", len(people))

    def _on_enrolled(self, e: PersonEnrolled) -> None:
        if e.new:  # more templates for someone known change nothing Home Assistant shows
            self._send_person(e.person.id, e.person.name)

    def _send_person(self, person_id: str, name: str) -> None:
        topic, payload = discovery.person_payload(
            self.topics,
            self.cfg.discovery_prefix,
            self.device_name,
            person_id,
            name,
            self.configuration_url,
        )
        self.publish(topic, payload, qos=1, retain=True)
        self._record(self._recorded() | {person_id})

    def _remove_person(self, person_id: str) -> None:
        topic = discovery.removal(self.topics, self.cfg.discovery_prefix, person_id)
        self.publish(topic, "", qos=1, retain=True)
        self._record(self._recorded() - {person_id})

    def _recorded(self) -> set[str]:
        try:
            return set(json.loads(self.people_file.read_text()))
        except (OSError, ValueError):
            return set()

    def _record(self, ids: set[str]) -> None:
        try:
            self.people_file.write_text(json.dumps(sorted(ids)))
        except OSError as exc:
            log.warning("cannot record Home Assistant entities: %s", exc)

    # --- what Home Assistant sends (network thread) ----------------------------------

    def on_message(self, msg: Incoming) -> None:
        if msg.topic == f"{self.cfg.discovery_prefix}/status":
            if msg.payload == b"online":  # HA restarted: send discovery again, spread out
                self.jobs.call_later(1.0 + 4.0 * random.random(), self.publish_all)
        elif msg.topic == self.ha["enrol_name"]:
            name = msg.payload.decode(errors="replace").strip()[:64]
            self._name = (name, time.monotonic()) if name else None
            self.publish(self.ha["enrol_name_state"], name, qos=1, retain=False)
        elif msg.topic == self.ha["enrol_press"]:
            self._press()
        elif msg.topic == self.ha["unlock"]:
            self._unlock(msg.payload)

    def _unlock(self, payload: bytes) -> None:
        """Home Assistant's lock entity: OPEN or UNLOCK opens for `door.unlock_s`.

        Unsigned (Home Assistant cannot sign), hence off unless `homeassistant.allow_unlock`
        and only as safe as the broker ACL on this topic (SECURITY.md). LOCK is ignored:
        the door relocks by itself, and nothing here may hold it open."""
        if not self._unlock_allowed():
            return
        if payload.strip() not in (b"OPEN", b"UNLOCK"):
            log.info("Home Assistant lock: %r ignored (the door relocks by itself)", payload[:16])
            return
        try:
            self.bus.submit(Unlock(self.unlock_s, "homeassistant"), "homeassistant")
        except CommandError as exc:
            log.warning("Home Assistant unlock not run: %s", exc.message)

    def _press(self) -> None:
        """Enrol whoever stands at the door under the name typed in Home Assistant.

        Safe enough to offer because: it is off unless `homeassistant.allow_enrol`; it
        only captures from this device's own camera (someone must physically stand
        there, a photo cannot be injected); the name must have been set in the last
        2 minutes; the quality gates and the duplicate check apply; and it is audited
        as `homeassistant`. Deleting or renaming people is not possible from HA.
        """
        if not self.cfg.allow_enrol:
            return
        if not self._name or time.monotonic() - self._name[1] > NAME_VALID_S:
            log.warning("Home Assistant enrol pressed without a recent name; ignored")
            return
        name, self._name = self._name[0], None
        try:
            self.bus.submit(CaptureEnrol(name, 3), "homeassistant")
        except CommandError as exc:
            log.warning("Home Assistant enrol not started: %s", exc.message)
