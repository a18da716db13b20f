"""Home Assistant MQTT discovery: the appliance appears as one device, by itself.

One retained config topic per entity (`<prefix>/<component>/<node>/<object>/config`),
not device-based discovery (one config for the whole device, Home Assistant >= 2024.11):
2024.3, the last release on Python 3.11, does not understand that, and current releases
still accept this form, which tools/ha_check.py checks against both. Every entity carries
the same device block, a stable unique_id, availability bound to the status topic, an
origin, and its entity id twice: `object_id` (what 2024.3 reads) and `default_entity_id`
(the same id with its domain, what Home Assistant reads since 2025.10; `object_id` alone
is deprecated there and stops working in 2026.4), so every release creates the same ids.
Pure functions: the daemon publishes what they return.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from appliance import __version__
from appliance.transport.mqtt.topics import Topics, slug

EVENT_TYPES = ["granted", "denied", "unknown", "check_in", "check_out"]
# A door event on the same topic has no `decision`: its event type is "door_<event>".
DOOR_EVENT_TYPES = [
    "door_unlocked",
    "door_locked",
    "door_opened",
    "door_closed",
    "door_forced_open",
    "door_held_open",
]
GRANTED_ON_S = 5  # binary_sensor.<door>_access_granted stays on this long after a `granted`
ORIGIN = {
    "name": "appliance",
    "sw_version": __version__,
    "support_url": "https://github.com/face-appliance/appliance",
}


@dataclass(frozen=True)
class DoorEntities:
    """What the device's door offers Home Assistant (None: it drives no door)."""

    contact: bool  # a door contact is wired: the door's open/closed state exists
    allow_unlock: bool  # homeassistant.allow_unlock: a lock entity that opens it


@dataclass(frozen=True)
class Entity:
    component: str
    object_id: str
    config: dict[str, Any]


def person_object_id(person_id: str) -> str:
    """Bound to the stable person id, so a rename keeps the entity and its history."""
    return f"person_{slug(person_id)[:16]}"


def check_configuration_url(url: str | None) -> str | None:
    """The device's web page as Home Assistant links it ("Visit"), or None.

    Checked here because Home Assistant rejects the whole discovery payload of an entity
    whose device block has an invalid URL: every entity would silently disappear."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"configuration_url must be an http(s) URL with a host, not {url!r}")
    return url


def device_block(topics: Topics, name: str, configuration_url: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "identifiers": [f"appliance_{topics.device}"],
        "name": name,
        "manufacturer": "appliance (open source)",
        "model": "Face-recognition door appliance",
        "sw_version": __version__,
    }
    if check_configuration_url(configuration_url):
        block["configuration_url"] = configuration_url
    return block


def door_entities(topics: Topics, door: DoorEntities) -> list[Entity]:
    """The relay, the contact, the mode, and (only if allowed) a lock that opens it; all
    read from the retained state message, where the door thread's changes appear."""
    state = topics.state
    out = [
        Entity(
            "binary_sensor",
            "relay",
            {
                "name": "Lock relay",
                "state_topic": state,
                "value_template": (
                    "{{ 'ON' if value_json.door and value_json.door.relay == 'unlocked' "
                    "else 'OFF' }}"
                ),
                "device_class": "lock",  # on = unlocked
            },
        ),
        Entity(
            "sensor",
            "door_mode",
            {
                "name": "Door mode",
                "state_topic": state,
                "value_template": "{{ value_json.access.mode }}",
                "icon": "mdi:door-closed-lock",
            },
        ),
        Entity(
            "sensor",
            "door_alarm",
            {
                "name": "Door alarm",
                "state_topic": state,
                "value_template": "{{ (value_json.door and value_json.door.alarm) or 'none' }}",
                "icon": "mdi:alarm-light",
            },
        ),
    ]
    if door.contact:
        out.append(
            Entity(
                "binary_sensor",
                "door",
                {
                    "name": "Door",
                    "state_topic": state,
                    # unknown (no reading yet) renders nothing: Home Assistant keeps
                    # its state instead of showing a closed door that may be open.
                    "value_template": (
                        "{{ {'open': 'ON', 'closed': 'OFF'}.get("
                        "value_json.door.contact if value_json.door else '', '') }}"
                    ),
                    "device_class": "door",
                },
            )
        )
    if door.allow_unlock:
        out.append(
            Entity(
                "lock",
                "door_lock",
                {
                    "name": "Door lock",
                    "command_topic": topics.home_assistant["unlock"],
                    "payload_open": "OPEN",
                    "payload_unlock": "UNLOCK",
                    "payload_lock": "LOCK",
                    "state_topic": state,
                    "value_template": "{{ value_json.door.relay if value_json.door else '' }}",
                    "state_locked": "locked",
                    "state_unlocked": "unlocked",
                },
            )
        )
    return out


def entities(
    topics: Topics,
    *,
    snapshots: bool,
    allow_enrol: bool,
    people: list[tuple[str, str]],
    door: DoorEntities | None = None,
) -> list[Entity]:
    """Every entity that applies now. `people`: (person_id, name)."""
    state = topics.state
    event_types = EVENT_TYPES + (DOOR_EVENT_TYPES if door is not None else [])
    out = [
        Entity(
            "event",
            "decision",
            {
                "name": "Decision",
                "state_topic": topics.event,
                "event_types": event_types,
                "value_template": (
                    '{{ {"event_type": value_json.get("decision") or '
                    '("door_" ~ value_json.get("event")), "person": '
                    'value_json.get("name"), "score": value_json.get("score"), '
                    '"margin": value_json.get("margin"), "threshold": '
                    'value_json.get("threshold"), "reason": value_json.get("reason"), '
                    '"event_id": value_json.event_id} | to_json }}'
                ),
                "icon": "mdi:door",
            },
        ),
        Entity(
            "sensor",
            "last_person",
            {
                "name": "Last person",
                "state_topic": topics.last_person,
                "value_template": "{{ value_json.name or 'unknown' }}",
                "json_attributes_topic": topics.last_person,
                "icon": "mdi:account-check",
            },
        ),
        Entity(
            "binary_sensor",
            "access_granted",
            {
                "name": "Access granted",
                "state_topic": topics.event,
                # Only `granted` says anything to this sensor: any other decision renders
                # nothing, which Home Assistant ignores, so the next stranger on the same
                # topic does not switch it off early; off_delay alone switches it off.
                "value_template": "{{ 'ON' if value_json.decision == 'granted' else '' }}",
                "off_delay": GRANTED_ON_S,
                "device_class": "lock",
            },
        ),  # lock: on = unlocked
    ]
    # A value not yet measured is null in the state message and renders "None", which Home
    # Assistant shows as unknown rather than as a 0 that reads like a measurement.
    diag = [
        ("fps", "Frame rate", "{{ value_json.fps }}", "fps", "measurement", None),
        (
            "detect_ms",
            "Detector time per frame",
            "{{ value_json.stage_ms.detect }}",
            "ms",
            "measurement",
            "duration",
        ),
        (
            "embed_ms",
            "Embedder time per face",
            "{{ value_json.stage_ms.embed }}",
            "ms",
            "measurement",
            "duration",
        ),
        (
            "dropped_frames",
            "Dropped frames",
            "{{ value_json.camera.frames_dropped }}",
            "frames",
            "total_increasing",
            None,
        ),
        (
            "outbox_depth",
            "Outbox depth",
            "{{ value_json.outbox.depth }}",
            "events",
            "measurement",
            None,
        ),
        (
            "gallery_size",
            "People enrolled",
            "{{ value_json.gallery.people }}",
            "people",
            "measurement",
            None,
        ),
        ("camera_state", "Camera", "{{ value_json.camera.state }}", None, None, None),
        # When the daemon started, not an uptime: a duration rewritten every state message
        # fills the recorder; this value changes once per start.
        ("started", "Started", "{{ value_json.started }}", None, None, "timestamp"),
    ]
    for oid, name, tpl, unit, sclass, dclass in diag:
        cfg: dict[str, Any] = {
            "name": name,
            "state_topic": state,
            "value_template": tpl,
            "entity_category": "diagnostic",
        }
        if unit:
            cfg["unit_of_measurement"] = unit
        if sclass:
            cfg["state_class"] = sclass
        if dclass:
            cfg["device_class"] = dclass
        out.append(Entity("sensor", oid, cfg))
    if snapshots:
        out.append(
            Entity(
                "image",
                "snapshot",
                {"name": "Last face", "image_topic": topics.snapshot, "content_type": "image/jpeg"},
            )
        )
    if allow_enrol:
        t = topics.home_assistant
        out.append(
            Entity(
                "sensor",
                "last_enrolment",
                {
                    "name": "Last enrolment",
                    "state_topic": topics.enrolment,
                    "value_template": "{{ value_json.result }}",
                    "json_attributes_topic": topics.enrolment,
                    "icon": "mdi:account-plus-outline",
                },
            )
        )
        out.append(
            Entity(
                "text",
                "enrol_name",
                {
                    "name": "Enrol name",
                    "command_topic": t["enrol_name"],
                    "state_topic": t["enrol_name_state"],
                    "max": 64,
                    "icon": "mdi:account-plus",
                },
            )
        )
        out.append(
            Entity(
                "button",
                "enrol",
                {
                    "name": "Enrol the person at the door",
                    "command_topic": t["enrol_press"],
                    "icon": "mdi:camera-account",
                },
            )
        )
    if door is not None:
        out.extend(door_entities(topics, door))
    out.extend(person_entity(topics, pid, name) for pid, name in people)
    return out


def person_entity(topics: Topics, person_id: str, name: str) -> Entity:
    return Entity(
        "sensor",
        person_object_id(person_id),
        {
            "name": f"{name} last seen",
            "state_topic": topics.person_last_seen(person_id),
            "device_class": "timestamp",
            "icon": "mdi:account-clock",
        },
    )


OPTIONAL = {
    ("image", "snapshot"),
    ("binary_sensor", "relay"),
    ("binary_sensor", "door"),
    ("sensor", "door_mode"),
    ("sensor", "door_alarm"),
    ("lock", "door_lock"),
    ("text", "enrol_name"),
    ("button", "enrol"),
    ("sensor", "last_enrolment"),
}
# Entities that earlier versions created: their retained configs are cleared so that
# Home Assistant removes them (the uptime duration became the `started` timestamp).
RETIRED = {("sensor", "uptime")}


def config_topic(prefix: str, node: str, e: Entity) -> str:
    return f"{prefix}/{e.component}/{node}/{e.object_id}/config"


def payloads(
    topics: Topics,
    prefix: str,
    device_name: str,
    *,
    snapshots: bool,
    allow_enrol: bool,
    people: list[tuple[str, str]],
    configuration_url: str | None = None,
    door: DoorEntities | None = None,
) -> list[tuple[str, str]]:
    """(config topic, retained payload) for every entity; empty payloads remove the
    optional entities that do not apply (a feature switched off) and retired ones.
    `configuration_url`: the device's web page, if it has one (check_configuration_url)."""
    node = slug(topics.device)
    device = device_block(topics, device_name, configuration_url)
    present = entities(
        topics, snapshots=snapshots, allow_enrol=allow_enrol, people=people, door=door
    )
    out = [_config(topics, prefix, device, e) for e in present]
    have = {(e.component, e.object_id) for e in present}
    for comp, oid in sorted((OPTIONAL - have) | RETIRED):
        out.append((config_topic(prefix, node, Entity(comp, oid, {})), ""))
    return out


def ha_object_id(node: str, e: Entity) -> str:
    """The entity id's object part as Home Assistant spells it (its slugify on our ASCII
    slugs: lower case, runs of anything else one "_"): "Zo_Front" -> "zo_front_fps"."""
    return re.sub(r"[^a-z0-9]+", "_", f"{node}_{e.object_id}".lower()).strip("_")


def entity_id(node: str, e: Entity) -> str:
    """The entity id Home Assistant gives it, e.g. "sensor.door1_fps"."""
    return f"{e.component}.{ha_object_id(node, e)}"


def _config(topics: Topics, prefix: str, device: dict[str, Any], e: Entity) -> tuple[str, str]:
    node = slug(topics.device)
    avail = [
        {"topic": topics.status, "payload_available": "online", "payload_not_available": "offline"}
    ]
    cfg = {
        **e.config,
        "unique_id": f"{node}_{e.object_id}",
        "object_id": ha_object_id(node, e),  # Home Assistant before 2025.10
        "default_entity_id": entity_id(node, e),  # 2025.10 and later
        "device": device,
        "origin": ORIGIN,
        "availability": avail,
    }
    return config_topic(prefix, node, e), json.dumps(cfg, sort_keys=True)


def person_payload(
    topics: Topics,
    prefix: str,
    device_name: str,
    person_id: str,
    name: str,
    configuration_url: str | None = None,
) -> tuple[str, str]:
    """One person's entity alone: enrolling someone does not resend everyone's."""
    device = device_block(topics, device_name, configuration_url)
    return _config(topics, prefix, device, person_entity(topics, person_id, name))


def removal(topics: Topics, prefix: str, person_id: str) -> str:
    """The config topic to clear (empty retained) when a person is deleted."""
    node = slug(topics.device)
    return config_topic(prefix, node, Entity("sensor", person_object_id(person_id), {}))
