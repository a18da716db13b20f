"""Home Assistant discovery: schema checks on every payload, and the live behaviour of
the daemon's discovery on a real broker (enrol adds an entity, delete removes it)."""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest

from appliance.config.schema import HomeAssistantConfig, WebConfig
from appliance.control.bus import CommandBus, Jobs
from appliance.control.events import Decided, EnrolmentFinished
from appliance.health import STAGES, Health, Meter, iso_time
from appliance.transport.http.address import page_url
from appliance.transport.mqtt import discovery
from appliance.transport.mqtt.homeassistant import HomeAssistantBridge
from appliance.transport.mqtt.state import RetainedState
from appliance.transport.mqtt.topics import Topics
from tests.daemon_harness import DaemonProcess, Listener, b64

# Home Assistant 2024.3's device and state classes for the components used here.
SENSOR_DEVICE_CLASSES = {"duration", "timestamp", "temperature", "data_size", "frequency"}
BINARY_DEVICE_CLASSES = {"lock", "occupancy", "presence", "motion", "problem", "door"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
REQUIRED = {"unique_id", "device", "availability", "origin", "name"}
SAFE = re.compile(r"^[a-zA-Z0-9_-]+$")
ENTITY_ID = re.compile(r"^[a-z0-9_]+\.[a-z0-9]+(_[a-z0-9]+)*$")  # Home Assistant's valid ids


FULL_DOOR = discovery.DoorEntities(contact=True, allow_unlock=True)


def _all(snapshots=True, allow_enrol=True, door=FULL_DOOR):
    topics = Topics("appliance", "Zoë / Front")
    people = [("0123456789abcdef0123", "Zoë / Front"), ("fedcba", "Ann")]
    return topics, discovery.payloads(
        topics,
        "homeassistant",
        "Front door",
        snapshots=snapshots,
        allow_enrol=allow_enrol,
        people=people,
        door=door,
    )


def test_every_payload_is_well_formed():
    topics, items = _all()
    published = {topics.event, topics.state, topics.last_person, topics.snapshot, topics.enrolment}
    published |= set(topics.home_assistant.values())
    seen_ids = set()
    removed = {tuple(t.split("/")[1:4:2]) for t, p in items if not p}
    assert removed == discovery.RETIRED  # every feature on: only retired entities go
    for topic, payload in items:
        if not payload:
            continue
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
            assert cfg["device_class"] in BINARY_DEVICE_CLASSES
            if object_id.endswith("access_granted"):  # the others follow the state topic
                assert cfg["off_delay"] > 0
        if "state_class" in cfg:
            assert cfg["state_class"] in STATE_CLASSES
        if component == "event":
            assert {"granted", "denied", "unknown"} <= set(cfg["event_types"])
    comps = {t.split("/")[1] for t, _ in items}
    assert comps == {"event", "sensor", "binary_sensor", "image", "text", "button", "lock"}
    diag = [json.loads(p) for t, p in items if "diagnostic" in p]
    assert len(diag) == 8


def _configs(items):
    return {tuple(t.split("/")[1:4:2]): json.loads(p) for t, p in items if p}


def test_default_entity_id_is_object_id_with_its_domain():
    """2024.3 reads object_id, 2025.10+ default_entity_id: both must name the same entity."""
    topics, items = _all()
    node = discovery.slug(topics.device)
    ids = set()
    for (component, oid), cfg in _configs(items).items():
        assert cfg["default_entity_id"] == f"{component}.{cfg['object_id']}"
        assert ENTITY_ID.match(cfg["default_entity_id"]), cfg["default_entity_id"]
        assert cfg["unique_id"] == f"{node}_{oid}"  # unchanged: HA keeps the entity's history
        ids.add(cfg["default_entity_id"])
    assert len(ids) == len(_configs(items))
    assert "sensor.zo_front_fps" in ids and "binary_sensor.zo_front_access_granted" in ids
    assert "sensor.zo_front_person_0123456789abcdef" in ids  # the person id, cut to 16


def test_person_payload_matches_the_full_set():
    topics, items = _all()
    topic, payload = discovery.person_payload(topics, "homeassistant", "Front door", "fedcba", "A")
    full = dict(items)[topic]
    assert {k: v for k, v in json.loads(payload).items() if k != "name"} == {
        k: v for k, v in json.loads(full).items() if k != "name"
    }


def test_timestamps_units_and_no_uptime():
    topics, items = _all()
    cfgs = _configs(items)
    stamps = {oid for (comp, oid), c in cfgs.items() if c.get("device_class") == "timestamp"}
    assert stamps == {"started", "person_0123456789abcdef", "person_fedcba"}
    for oid in stamps:  # a timestamp has no unit and no state class in Home Assistant
        assert not {"unit_of_measurement", "state_class"} & set(cfgs["sensor", oid])
    assert cfgs["sensor", "started"]["value_template"] == "{{ value_json.started }}"
    units = {oid: c.get("unit_of_measurement") for (_, oid), c in cfgs.items()}
    assert units["dropped_frames"] == "frames" and units["outbox_depth"] == "events"
    assert units["gallery_size"] == "people" and units["fps"] == "fps"
    assert units["detect_ms"] == units["embed_ms"] == "ms"
    assert "per frame" in cfgs["sensor", "detect_ms"]["name"]
    assert "per face" in cfgs["sensor", "embed_ms"]["name"]
    # The uptime duration of earlier versions is removed from Home Assistant.
    node = discovery.slug(topics.device)
    assert (f"homeassistant/sensor/{node}/uptime/config", "") in items


def test_access_granted_is_only_switched_off_by_its_delay():
    """The event topic carries every decision: only `granted` may render a payload, the
    rest render nothing (ignored by Home Assistant), so a stranger 1 s after a granted
    visitor does not cut the 5 s short. Rendered for real against HA by tools/ha_check.py."""
    topics, items = _all()
    cfg = _configs(items)["binary_sensor", "access_granted"]
    assert cfg["state_topic"] == topics.event and cfg["off_delay"] == discovery.GRANTED_ON_S
    assert cfg["value_template"] == "{{ 'ON' if value_json.decision == 'granted' else '' }}"
    assert cfg.get("payload_off", "OFF") not in cfg["value_template"]


def test_configuration_url():
    topics = Topics("appliance", "door1")
    plain = discovery.payloads(
        topics, "homeassistant", "D", snapshots=True, allow_enrol=True, people=[]
    )
    assert all("configuration_url" not in c["device"] for c in _configs(plain).values())
    url = "http://door1.local:8080/"
    items = discovery.payloads(
        topics,
        "homeassistant",
        "D",
        snapshots=True,
        allow_enrol=True,
        people=[("p1", "Ann")],
        configuration_url=url,
    )
    assert {c["device"]["configuration_url"] for c in _configs(items).values()} == {url}
    _, one = discovery.person_payload(topics, "homeassistant", "D", "p1", "Ann", url)
    assert json.loads(one)["device"]["configuration_url"] == url
    for bad in ("door1.local", "ftp://door1/", "http://", "javascript:alert(1)"):
        with pytest.raises(ValueError, match="configuration_url"):
            discovery.payloads(
                topics,
                "homeassistant",
                "D",
                snapshots=True,
                allow_enrol=True,
                people=[],
                configuration_url=bad,
            )


def test_page_url_is_an_address_home_assistant_accepts():
    """What the daemon passes as configuration_url when web.enabled: web.url as set, else
    the listen address, with the host name for an any-address bind and https with TLS."""
    host = socket.gethostname()
    assert page_url(WebConfig()) == f"http://{host}:8080/"
    assert page_url(WebConfig(listen="[::]:81")) == f"http://{host}:81/"
    assert page_url(WebConfig(url="https://door1.example/")) == "https://door1.example/"
    tls = WebConfig(listen="127.0.0.1:8443", tls_cert_file="c.pem", tls_key_file="k.pem")
    assert page_url(tls) == "https://127.0.0.1:8443/"
    for w in (WebConfig(), tls):
        assert discovery.check_configuration_url(page_url(w)) == page_url(w)


def test_bridge_refuses_a_bad_configuration_url_before_publishing(tmp_path: Path):
    sent: list[tuple[str, str]] = []
    cfg = HomeAssistantConfig(discovery=True)

    def bridge(url):
        return HomeAssistantBridge(
            cfg,
            Topics("appliance", "door1"),
            lambda t, p, **kw: sent.append((t, p)),
            Jobs(),
            CommandBus(),
            lambda: [],
            tmp_path,
            snapshots=False,
            configuration_url=url,
        )

    with pytest.raises(ValueError, match="configuration_url"):
        bridge("not a url")
    assert sent == []
    bridge("https://door1.example/").publish_all()
    devices = [json.loads(p)["device"] for _, p in sent if p]
    assert devices and {d["configuration_url"] for d in devices} == {"https://door1.example/"}


def _parse(stamp: str) -> datetime:
    when = datetime.fromisoformat(stamp)
    assert when.tzinfo is not None, stamp  # Home Assistant refuses a naive timestamp
    return when


def test_iso_time():
    t = 1_780_000_000.25
    assert abs(_parse(iso_time(t)).timestamp() - t) < 1


def test_last_person_and_enrolment_times_are_iso_8601():
    sent: list[tuple[str, object]] = []
    topics = Topics("appliance", "door1")
    rs = RetainedState(
        topics,
        lambda t, p, **kw: sent.append((t, p)),
        Jobs(),
        snapshots=False,
        last_seen_clear_delay_s=0.0,
    )
    decided = 1_780_000_000.5
    payload = {
        "person_id": "p1",
        "decision": "granted",
        "name": "Ann",
        "score": 0.8,
        "decided": decided,
        "event_id": "e1",
    }
    rs.on_decided(Decided(payload, None))
    last = json.loads(dict(sent)[topics.last_person])
    assert abs(_parse(last["time"]).timestamp() - decided) < 1
    seen = dict(sent)[topics.person_last_seen("p1")]
    assert _parse(seen) == _parse(last["time"])
    rs.on_enrolment(EnrolmentFinished("Ann", True, "enrolled", "ok", "p1", "cli", decided))
    assert abs(_parse(json.loads(dict(sent)[topics.enrolment])["time"]).timestamp() - decided) < 1


def _health(meter: Meter) -> Health:
    return Health(
        device="door1",
        boot="b",
        mode=lambda: "access",
        meter=meter,
        parts={},
        counters=dict,
        free_bytes=lambda: None,
        min_free_bytes=lambda: 0.0,
        state_dir="/nonexistent",
    )


def test_nothing_reads_zero_before_it_is_measured():
    meter = Meter()
    health = _health(meter)
    st = health.status()
    assert st["fps"] is None
    assert st["stage_ms"] == {k: None for k in STAGES}
    assert abs(_parse(st["started"]).timestamp() - health.started) < 1
    meter.tick()
    meter.stage("detect", 0.030)
    st = health.status()
    assert st["fps"] is None and st["stage_ms"]["detect"] == 30.0  # one frame: no rate yet
    assert st["stage_ms"]["embed"] is None
    meter.tick()
    assert health.status()["fps"] > 0


def test_embedder_time_is_per_face_not_diluted_by_empty_frames():
    meter = Meter()
    meter.stage("embed", 0.040, 2)  # two faces in one batch: 20 ms each
    for _ in range(50):
        meter.stage("embed", 0.0, 0)  # frames with nobody to embed are no sample
        meter.stage("detect", 0.012)
    meter.stage("embed", 0.020, 1)
    st = _health(meter).status()["stage_ms"]
    assert st["embed"] == 20.0 and st["detect"] == 12.0


def test_switched_off_features_are_removed():
    _, items = _all(snapshots=False, allow_enrol=False, door=None)
    empty = {tuple(t.split("/")[1:4:2]) for t, p in items if p == ""}
    assert empty == discovery.OPTIONAL | discovery.RETIRED


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


def _render(template: str, value: dict) -> str:
    """Home Assistant's templates are Jinja2 with `value_json`; render them the same way
    (to_json as Home Assistant defines it) to see what an entity would show."""
    import jinja2

    env = jinja2.Environment()
    env.filters["to_json"] = json.dumps
    return env.from_string(template).render(value_json=value)


def test_door_entities_only_with_a_door_and_the_lock_only_when_allowed():
    def have(door):
        _, items = _all(door=door)
        return {tuple(t.split("/")[1:4:2]) for t, p in items if p}, {
            tuple(t.split("/")[1:4:2]) for t, p in items if not p
        }

    on, off = have(FULL_DOOR)
    assert {("lock", "door_lock"), ("binary_sensor", "door"), ("binary_sensor", "relay")} <= on
    on, off = have(discovery.DoorEntities(contact=False, allow_unlock=False))
    assert ("binary_sensor", "relay") in on and ("lock", "door_lock") in off
    assert ("binary_sensor", "door") in off  # no contact wired: no door state invented
    on, off = have(None)
    assert not {("binary_sensor", "relay"), ("sensor", "door_mode")} & on
    assert {("lock", "door_lock"), ("binary_sensor", "relay")} <= off


def test_door_payload_templates_render_what_home_assistant_should_show():
    topics = Topics("appliance", "door1")
    ents = {
        e.object_id: e.config
        for e in discovery.entities(
            topics, snapshots=False, allow_enrol=False, people=[], door=FULL_DOOR
        )
    }
    ev_tpl = ents["decision"]["value_template"]
    door_event = {"event_id": "e1", "type": "door", "event": "forced_open", "reason": None}
    got = json.loads(_render(ev_tpl, door_event))
    assert got["event_type"] == "door_forced_open" in ents["decision"]["event_types"]
    decision = {"event_id": "e2", "decision": "denied", "reason": "outside_schedule", "name": "A"}
    got = json.loads(_render(ev_tpl, {**decision, "score": 0.8, "margin": 0.2, "threshold": 0.5}))
    assert (got["event_type"], got["reason"]) == ("denied", "outside_schedule")
    # A door event never switches the access-granted sensor (nor off: it renders nothing).
    assert _render(ents["access_granted"]["value_template"], door_event) == ""
    state = {"door": {"relay": "unlocked", "contact": "open", "alarm": "held_open"}}
    state["access"] = {"mode": "passage", "group": "staff"}
    assert _render(ents["relay"]["value_template"], state) == "ON"
    assert _render(ents["door"]["value_template"], state) == "ON"
    assert _render(ents["door_lock"]["value_template"], state) == "unlocked"
    assert _render(ents["door_alarm"]["value_template"], state) == "held_open"
    assert _render(ents["door_mode"]["value_template"], state) == "passage"
    unknown = {"door": {"relay": "locked", "contact": "unknown", "alarm": None}}
    assert _render(ents["door"]["value_template"], unknown) == ""  # not a made-up "closed"
    assert _render(ents["door_alarm"]["value_template"], unknown) == "none"
    assert ents["door_lock"]["command_topic"] == topics.home_assistant["unlock"]
