"""Home Assistant discovery: schema checks on every payload, and the live behaviour of
the daemon's discovery on a real broker (enrol adds an entity, delete removes it)."""

from __future__ import annotations

import json
import re
import time

from appliance.transport.mqtt import discovery
from appliance.transport.mqtt.topics import Topics
from tests.daemon_harness import DaemonProcess, Listener, b64

# Home Assistant 2024.3's device and state classes for the components used here.
SENSOR_DEVICE_CLASSES = {"duration", "timestamp", "temperature", "data_size", "frequency"}
BINARY_DEVICE_CLASSES = {"lock", "occupancy", "presence", "motion", "problem", "door"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
REQUIRED = {"unique_id", "device", "availability", "origin", "name"}
SAFE = re.compile(r"^[a-zA-Z0-9_-]+$")


def _all(snapshots=True, allow_enrol=True):
    topics = Topics("appliance", "Zoë / Front")
    people = [("0123456789abcdef0123", "Zoë / Front"), ("fedcba", "Ann")]
    return topics, discovery.payloads(
        topics,
        "homeassistant",
        "Front door",
        snapshots=snapshots,
        allow_enrol=allow_enrol,
        people=people,
    )


def test_every_payload_is_well_formed():
    topics, items = _all()
    published = {topics.event, topics.state, topics.last_person, topics.snapshot, topics.enrolment}
    published |= set(discovery.ha_topics(topics).values())
    seen_ids = set()
    for topic, payload in items:
        prefix, component, node, object_id, tail = topic.split("/")
        assert (prefix, tail) == ("homeassistant", "config")
        assert SAFE.match(node) and SAFE.match(object_id), topic
        cfg = json.loads(payload)
        assert set(cfg) >= REQUIRED, (topic, set(cfg))
        assert cfg["unique_id"] not in seen_ids
        seen_ids.add(cfg["unique_id"])
        assert cfg["device"]["identifiers"] == [f"appliance_{topics.device}"]
        assert cfg["availability"][0]["topic"] == topics.status
        for key in ("state_topic", "json_attributes_topic", "image_topic"):
            if key in cfg and "/person/" not in cfg[key]:
                assert cfg[key] in published, (key, cfg[key])
        if component == "sensor" and "device_class" in cfg:
            assert cfg["device_class"] in SENSOR_DEVICE_CLASSES
        if component == "binary_sensor":
            assert cfg["device_class"] in BINARY_DEVICE_CLASSES and cfg["off_delay"] > 0
        if "state_class" in cfg:
            assert cfg["state_class"] in STATE_CLASSES
        if component == "event":
            assert {"granted", "denied", "unknown"} <= set(cfg["event_types"])
    comps = {t.split("/")[1] for t, _ in items}
    assert comps == {"event", "sensor", "binary_sensor", "image", "text", "button"}
    diag = [json.loads(p) for t, p in items if "diagnostic" in p]
    assert len(diag) == 8


def test_switched_off_features_are_removed():
    _, items = _all(snapshots=False, allow_enrol=False)
    empty = {t.split("/")[1] for t, p in items if p == ""}
    assert empty == {"image", "text", "button", "sensor"}  # sensor: the last enrolment


def test_daemon_publishes_and_removes_person_entities(tmp_path, broker):
    from appliance.camera import assets

    d = DaemonProcess(tmp_path, broker.port, "demo")
    ha = Listener(broker.port, Topics("homeassistant", "x"))
    ha.client.subscribe("homeassistant/#", qos=1)
    listener = Listener(broker.port, d.topics)
    d.start()
    listener.wait_for(
        lambda: any(t == d.topics.status and p == b"online" for _, t, p in listener.messages), 60
    )
    listener.publish(
        d.topics.command("enroll"),
        d.signed(
            "enroll", {"name": "Zoë / Front", "images": [b64(assets.path("astronaut.png"))]}, "e"
        ),
    )
    pid = listener.reply("enroll", "e")["result"]["person"]["id"]
    person_topic = discovery.removal(d.topics, "homeassistant", pid)

    def configs():
        return {t: p for _, t, p in ha.messages if t.endswith("/config")}

    cfg = ha.wait_for(lambda: configs().get(person_topic), 30)
    assert json.loads(cfg)["name"] == "Zoë / Front last seen"
    # A second person: only their entity is sent, not everyone's again.
    time.sleep(1.0)
    n0 = len(ha.messages)
    listener.publish(
        d.topics.command("enroll"),
        d.signed(
            "enroll",
            {"name": "Twin", "images": [b64(assets.path("astronaut.png"))], "force": True},
            "e2",
        ),
    )
    pid2 = listener.reply("enroll", "e2")["result"]["person"]["id"]
    second = discovery.removal(d.topics, "homeassistant", pid2)
    ha.wait_for(lambda: [1 for _, t, _ in ha.messages[n0:] if t == second], 30)
    time.sleep(1.0)
    sent = [t for _, t, _ in ha.messages[n0:] if t.endswith("/config")]
    assert sent == [second], sent
    n = len(ha.messages)
    ha.publish("homeassistant/status", "online")  # HA restarted: discovery again
    ha.wait_for(lambda: len([1 for _, t, _ in ha.messages[n:] if t.endswith("/config")]) > 5, 30)
    listener.publish(d.topics.command("delete"), d.signed("delete", {"name": "Zoë / Front"}, "d"))
    assert listener.reply("delete", "d")["ok"]
    ha.wait_for(lambda: [1 for _, t, p in ha.messages if t == person_topic and p == b""], 30)
    listener.close()
    ha.close()
    assert d.stop() == 0
