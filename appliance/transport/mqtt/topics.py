"""Every MQTT topic name, written once; adapters and tests build topics only through here."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

COMMANDS = (
    "enroll",
    "delete",
    "rename",
    "list",
    "set",
    "reload",
    "status",
    "group_set",
    "group_delete",
    "access",
    "door_mode",
    "unlock",
    "rules",
    "door",
)
_SAFE = re.compile(r"[^a-zA-Z0-9_-]+")


def slug(text: str) -> str:
    """A topic- and object-id-safe form of any name ("Zoë / Front" -> "Zo_Front")."""
    return _SAFE.sub("_", text).strip("_") or "x"


def device_id(configured: str) -> str:
    """The device's name in topics: `mqtt.device_id`, else the host name."""
    return slug(configured or socket.gethostname())


@dataclass(frozen=True)
class Topics:
    prefix: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def status(self) -> str:  # availability: online / offline (the will), retained
        return f"{self.base}/status"

    @property
    def event(self) -> str:  # decisions, QoS 1, never retained
        return f"{self.base}/event"

    @property
    def state(self) -> str:  # health and counters, retained
        return f"{self.base}/state"

    @property
    def last_person(self) -> str:
        return f"{self.base}/last_person"

    @property
    def snapshot(self) -> str:
        return f"{self.base}/snapshot"

    @property
    def enrolment(self) -> str:  # the last camera enrolment's result, retained
        return f"{self.base}/enrolment"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    @property
    def command_filter(self) -> str:
        return f"{self.base}/cmd/+"

    def reply(self, name: str) -> str:
        return f"{self.base}/reply/{name}"

    def command_name(self, topic: str) -> str | None:
        head = f"{self.base}/cmd/"
        return topic[len(head) :] if topic.startswith(head) else None

    def person_last_seen(self, person_id: str) -> str:  # retained, under an anonymous id
        return f"{self.base}/person/{slug(person_id)[:16]}/last_seen"

    @property
    def home_assistant(self) -> dict[str, str]:
        """What Home Assistant writes: the enrol name (text), the enrol button, the lock."""
        return {
            "enrol_name": f"{self.base}/ha/enrol_name/set",
            "enrol_name_state": f"{self.base}/ha/enrol_name",
            "enrol_press": f"{self.base}/ha/enrol/press",
            "unlock": f"{self.base}/ha/unlock",
        }


@dataclass(frozen=True)
class SiteTopics:
    """Replication (appliance/replication): one site's records and digests, shared by its
    doors. Record topics end in a keyed hash of the entity, so the broker sees no ids."""

    prefix: str
    site: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/site/{slug(self.site)}"

    def record(self, kind: str, topic_id: str) -> str:  # retained, QoS 1
        return f"{self.base}/rec/{kind}/{topic_id}"

    @property
    def record_filter(self) -> str:
        return f"{self.base}/rec/#"

    def digest(self, device: str) -> str:  # a door's versions, QoS 0, not retained
        return f"{self.base}/digest/{device}"

    @property
    def digest_filter(self) -> str:
        return f"{self.base}/digest/+"

    def parse(self, topic: str) -> tuple[str, str] | None:
        """("rec", "<kind>/<id>") or ("digest", device) for this site's topics, else None."""
        head = f"{self.base}/"
        if not topic.startswith(head):
            return None
        what, _, rest = topic[len(head) :].partition("/")
        return (what, rest) if what in ("rec", "digest") and rest else None
