"""Check the appliance's MQTT discovery against a real, headless Home Assistant.

Why: the discovery payloads (appliance/transport/mqtt/discovery.py) are only unit-tested
against what we *think* Home Assistant accepts. A payload that HA silently rejects (wrong key, bad
template, a device block that splits the device) does not show up in any of our tests,
only in a user's dashboard. This script runs the whole chain for real:

    mosquitto (loopback) <- appliance daemon (demo camera) -> Home Assistant

against Home Assistant 2024.3 (`make ha-check`, the last release on Python 3.11) and the
newest release on Python 3.13 (`make ha-check-current`: tools/ha/run.sh runs it in a
Debian trixie root filesystem and passes `--hass "tools/ha/run.sh hass"`),

and then reads what Home Assistant itself stored: its entity and device registries
(`.storage/`) and its recorder database (SQLite, `states` table). It checks

* every discovery entity exists in HA, created by the MQTT integration, under the entity
  id discovery.entity_id() names (object_id for 2024.3, default_entity_id for current
  releases: both must give the same ids);
* all of them are bound to ONE device with the appliance's identifiers and metadata;
* their states update (decisions, last person, snapshot, diagnostics, per-person sensor,
  the enrol text's state round trip); no diagnostic reads 0 before it is measured; the
  timestamps (last person's `time`, last seen, started) are ISO 8601 with an offset;
* access_granted stays on its full off_delay, even when another decision follows;
* the README's automations load, and the greeting one runs on `granted` with the name;
* HA's own text.set_value + button.press (an automation) reach the daemon's enrol;
* deleting a person by a signed MQTT command removes the per-person entity from HA
  and clears its retained last_seen topic;
* every entity goes unavailable when the daemon stops (availability topic);
* HA logged no MQTT errors or warnings and set up every integration.

Home Assistant lives in its own venv (it pins its own dependencies), e.g.:

    python3 -m venv /opt/havenv
    PIP_CONSTRAINT= /opt/havenv/bin/pip install homeassistant==2024.3.3 'josepy<2' \
        habluetooth==2.4.2 bluetooth-data-tools==1.19.0 bluetooth-adapters==0.18.0 \
        bluetooth-auto-recovery==1.3.0 bleak==0.21.1 bleak-retry-connector==3.4.0 \
        dbus-fast==2.21.1 paho-mqtt==1.6.1 SQLAlchemy==2.0.27 fnv-hash-fast==0.5.0 \
        psutil-home-assistant==0.0.1 janus==1.0.0 Pillow==10.2.0 securetar==2024.2.1 \
        home-assistant-frontend==20240307.0 PyTurboJPEG==1.7.1 numpy==1.26.0

(the bluetooth pins stop pip backtracking for many minutes through habluetooth
releases; the rest are the requirements of the integrations HA 2024.3 always loads,
so it can run with --skip-pip, offline and without loading into recovery mode).

and this script runs from the appliance's venv (stdlib + paho):

    .venv/bin/python tools/ha_check.py --hass /opt/havenv/bin/hass

Exit status 0 when every check passes, 1 otherwise. Every process it starts is stopped.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance import __version__  # noqa: E402
from appliance.camera import assets  # noqa: E402
from appliance.transport.mqtt import discovery  # noqa: E402
from appliance.transport.mqtt.discovery import DoorEntities  # noqa: E402
from appliance.transport.mqtt.signing import sign  # noqa: E402
from appliance.transport.mqtt.topics import Topics, slug  # noqa: E402
from tools.broker import Broker, free_port  # noqa: E402

DEVICE = "door1"
PREFIX = "homeassistant"
DOOR = DoorEntities(contact=True, allow_unlock=True)
PERSON = "astronaut"
HA_NAME = "HA Visitor"  # typed into the enrol text by an HA automation, then the button


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Procs:
    """Every child process, stopped (TERM, then KILL) in reverse order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: list[str], logfile: Path, **kw: Any
    ) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            argv,
            stdout=logfile.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **kw,
        )
        self.items.append((name, p))
        return p

    def stop(self, p: subprocess.Popen[bytes], timeout: float = 60.0) -> int | None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        return p.returncode

    def stop_all(self) -> None:
        for _, p in reversed(self.items):
            self.stop(p, 30)


class Client:
    """A paho client that records everything under the appliance's base topic."""

    def __init__(self, port: int, topics: Topics) -> None:
        self.topics = topics
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(f"{topics.base}/#", 1), (f"{PREFIX}/#", 1)]
        )
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, c: Any, u: Any, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait_for(self, pred: Any, timeout: float) -> Any:
        end = time.time() + timeout
        with self.cond:
            while True:
                got = pred()
                if got:
                    return got
                if time.time() > end:
                    raise TimeoutError(
                        f"timed out; last topics: {[t for t, _ in self.messages[-8:]]}"
                    )
                self.cond.wait(0.5)

    def reply(self, name: str, rid: str, timeout: float = 60.0) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for t, p in self.messages:
                if t == self.topics.reply(name):
                    body = json.loads(p)
                    if body.get("request_id") == rid:
                        return body
            return None

        return self.wait_for(find, timeout)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def readme_automations() -> list[dict[str, Any]]:
    """The automations the README's Home Assistant section shows, for the door of this
    run (the README's `door_front` is DEVICE here), so they load and run for real."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Home Assistant\n", 1)[1].split("\n## ", 1)[0]
    out: list[dict[str, Any]] = []
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        out += yaml.safe_load(block.replace("door_front", DEVICE)).get("automation", [])
    return out


def ha_config(
    ha_dir: Path, broker_port: int, http_port: int, automations: list[dict[str, Any]]
) -> None:
    """A minimal HA: no default_config, only http (an MQTT dependency), the recorder
    (to read states back), the logger and automations (ours, and the README's). The MQTT
    config entry is written before the first start, as the UI's config flow would have
    stored it."""
    (ha_dir / ".storage").mkdir(parents=True, exist_ok=True)
    (ha_dir / "configuration.yaml").write_text(f"""\
homeassistant:
  name: ha_check
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
http:
  server_host: 127.0.0.1
  server_port: {http_port}
recorder:
  db_url: sqlite:///{ha_dir}/home-assistant_v2.db
  commit_interval: 1
automation:
  - alias: ha_check enrol from Home Assistant
    trigger:
      - platform: homeassistant
        event: start
    action:
      # states() says 'unknown' for an entity that does not exist yet: wait for it
      - wait_template: "{{{{ states.text.{DEVICE}_enrol_name is not none and
          states('text.{DEVICE}_enrol_name') == 'unknown' }}}}"
        timeout: 120
        continue_on_timeout: false
      - service: text.set_value
        target: {{entity_id: text.{DEVICE}_enrol_name}}
        data: {{value: "{HA_NAME}"}}
      - delay: 2
      - service: button.press
        target: {{entity_id: button.{DEVICE}_enrol}}
  - alias: ha_check open the door from Home Assistant
    trigger:
      - platform: homeassistant
        event: start
    action:
      - wait_template: "{{{{ states.lock.{DEVICE}_door_lock is not none and
          states('lock.{DEVICE}_door_lock') == 'locked' }}}}"
        timeout: 120
        continue_on_timeout: false
      - delay: 4
      - service: lock.open
        target: {{entity_id: lock.{DEVICE}_door_lock}}
automation readme: {json.dumps(automations)}
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
""")
    entry = {
        "entry_id": uuid.uuid4().hex,
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": "127.0.0.1",
        "data": {
            "broker": "127.0.0.1",
            "port": broker_port,
            "discovery": True,
            "discovery_prefix": PREFIX,
        },
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }
    (ha_dir / ".storage" / "core.config_entries").write_text(
        json.dumps(
            {
                "version": 1,
                "minor_version": 1,
                "key": "core.config_entries",
                "data": {"entries": [entry]},
            },
            indent=1,
        )
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def registry(ha_dir: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(mqtt entities by unique_id, devices) as HA last wrote them."""
    ents = read_json(ha_dir / ".storage" / "core.entity_registry").get("data", {})
    devs = read_json(ha_dir / ".storage" / "core.device_registry").get("data", {})
    by_uid = {e["unique_id"]: e for e in ents.get("entities", []) if e.get("platform") == "mqtt"}
    return by_uid, devs.get("devices", [])


History = dict[str, list[tuple[str, dict[str, Any], float]]]


def history(db: Path) -> History:
    """entity_id -> [(state, attributes, last_updated unix time)] in order, from HA's
    recorder."""
    if not db.exists():
        return {}
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute(
            "SELECT m.entity_id, s.state, a.shared_attrs, s.last_updated_ts FROM states s "
            "JOIN states_meta m ON s.metadata_id = m.metadata_id "
            "LEFT JOIN state_attributes a ON s.attributes_id = a.attributes_id "
            "ORDER BY s.state_id"
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        con.close()
    for eid, state, attrs, ts in rows:
        out.setdefault(eid, []).append((state, json.loads(attrs) if attrs else {}, ts or 0.0))
    return out


def expected(topics: Topics, person_id: str) -> dict[str, str]:
    """unique_id -> component, from the appliance's own discovery module."""
    ents = discovery.entities(
        topics, snapshots=True, allow_enrol=True, people=[(person_id, PERSON)], door=DOOR
    )
    return {f"{DEVICE}_{e.object_id}": e.component for e in ents}


def entity_id(uid: str, component: str) -> str:
    """The entity id discovery asks for (object_id / default_entity_id) for a unique id."""
    oid = uid[len(DEVICE) + 1 :]
    return discovery.entity_id(slug(DEVICE), discovery.Entity(component, oid, {}))


def is_iso(s: Any) -> bool:
    """ISO 8601 with a UTC offset, as Home Assistant's timestamps need."""
    try:
        return datetime.fromisoformat(s).tzinfo is not None
    except (TypeError, ValueError):
        return False


def on_periods(hist: list[tuple[str, dict[str, Any], float]]) -> list[tuple[float, float]]:
    """(on, off) times of a binary sensor's on periods that ended in `off` (not in
    `unavailable`, which is the daemon stopping)."""
    out, since = [], None
    for s, _, ts in hist:
        if s == "on" and since is None:
            since = ts
        elif s != "on" and since is not None:
            if s == "off":
                out.append((since, ts))
            since = None
    return out


def is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def scenario(
    args: argparse.Namespace, work: Path, procs: Procs, check: Any, out: dict[str, Any]
) -> None:
    """The run itself; fills `out` with what `finish` prints."""
    ha_dir = work / "ha"
    topics = Topics("appliance", DEVICE)
    final_hist: History = {}
    uid2eid: dict[str, str] = {}
    # --- broker -------------------------------------------------------------------
    broker = out["broker"] = Broker(work, persistence=False)  # main stops it after procs
    broker.start()
    mport = broker.port
    log(f"mosquitto on {broker.host}:{mport}")

    # --- appliance daemon ---------------------------------------------------------
    key = secrets.token_hex(32).encode()
    (work / "command-key").write_bytes(key)
    cfg = {
        "camera": {"source": "demo"},
        "storage": {"state_dir": str(work / "state")},
        "mqtt": {
            "host": "127.0.0.1",
            "port": mport,
            "device_id": DEVICE,
            "state_interval_s": 2.0,
            "reconnect_max_s": 2.0,
        },
        "commands": {"key_file": str(work / "command-key")},
        "decision": {"cooldown_s": 0, "snapshot": True},
        "homeassistant": {
            "discovery": True,
            "discovery_prefix": PREFIX,
            "allow_enrol": True,
            "allow_unlock": True,
        },
        # The door on gpiozero's mock pins; the test opens and shuts it through the
        # adapter's simulator file, and Home Assistant's lock entity opens it.
        "door": {"enabled": True, "relay_pin": 17, "contact_pin": 27, "unlock_s": 1.0},
    }
    sim = work / "door.sim"
    sim.write_text("close\n")
    (work / "config.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    client = out["client"] = Client(mport, topics)
    daemon = procs.start(
        "daemon",
        [args.python, "-m", "appliance", "-c", str(work / "config.yaml"), "run"],
        work / "daemon.log",
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GPIOZERO_PIN_FACTORY": "mock",
            "APPLIANCE_DOOR_SIM": str(sim),
        },
    )
    client.wait_for(lambda: (topics.status, b"online") in client.messages, 120)
    log("daemon online")
    rid = "ha-check-enrol"
    img = base64.b64encode(assets.path("astronaut.png").read_bytes()).decode()
    client.publish(
        topics.command("enroll"),
        sign(key, "enroll", DEVICE, {"name": PERSON, "images": [img]}, rid),
    )
    reply = client.reply("enroll", rid, 90)
    if not check("enrol astronaut (signed MQTT)", reply.get("ok"), json.dumps(reply)[:120]):
        return
    person_id = reply["result"]["person"]["id"]
    person_uid = f"{DEVICE}_{discovery.person_object_id(person_id)}"
    want = expected(topics, person_id)
    person_cfg = discovery.removal(topics, PREFIX, person_id)
    client.wait_for(lambda: any(t == person_cfg and p for t, p in client.messages), 30)
    log(f"enrolled {PERSON} ({person_id}); {len(want)} discovery entities expected")

    # --- Home Assistant -----------------------------------------------------------
    hport = free_port()
    # Every run traced (Home Assistant keeps 5 by default), so the checks see them all.
    automations = [{**a, "trace": {"stored_traces": 100}} for a in readme_automations()]
    ha_config(ha_dir, mport, hport, automations)
    argv = [*shlex.split(args.hass), "-c", str(ha_dir), "--log-no-color"]
    if not args.pip:
        argv.append("--skip-pip")
    t_ha = time.time()
    hass = procs.start("hass", argv, work / "hass.out")
    log(f"hass starting (http 127.0.0.1:{hport})")

    # HA publishes its birth message when its MQTT client is up.
    try:
        client.wait_for(lambda: (f"{PREFIX}/status", b"online") in client.messages, args.run_s)
        check(
            "HA connected to the broker (birth message)",
            True,
            f"{time.time() - t_ha:.0f} s after start",
        )
    except TimeoutError:
        check(
            "HA connected to the broker (birth message)",
            False,
            "see " + str(ha_dir / "home-assistant.log"),
        )
        return

    def ha_reply() -> dict[str, Any] | None:
        """How the enrolment HA started ended: the retained result its sensor shows."""
        for t, p in reversed(client.messages):
            if t == topics.enrolment and p:
                body = json.loads(p)
                if body.get("by") == "homeassistant":
                    return body
        return None

    db = ha_dir / "home-assistant_v2.db"
    needed_states = {"event", "sensor", "binary_sensor", "image"}
    end = time.time() + args.run_s
    while time.time() < end:
        if hass.poll() is not None:
            break
        by_uid, _ = registry(ha_dir)
        uid2eid = {u: by_uid[u]["entity_id"] for u in want if u in by_uid}
        hist = history(db)
        have_states = all(
            any(s not in ("unknown", "unavailable") for s, *_ in hist.get(uid2eid.get(u, ""), []))
            for u, comp in want.items()
            if comp in needed_states
        )
        granted = any(
            s == "on" for s, *_ in hist.get(uid2eid.get(f"{DEVICE}_access_granted", ""), [])
        )
        if len(uid2eid) == len(want) and have_states and granted and ha_reply():
            break
        time.sleep(3)
    log(f"HA shows {len(uid2eid)}/{len(want)} entities after {time.time() - t_ha:.0f} s")
    # The door opens and shuts (someone walks through), read by HA from the state topic.
    for line in ("open", "close"):
        with sim.open("a") as f:
            f.write(line + "\n")
        time.sleep(4)

    # --- HA's text + button: enrol whoever the camera sees under HA_NAME ---------
    # The demo walks the astronaut (refused: a duplicate) and a stranger (enrolled) past
    # the camera, so either answer proves HA -> command topics -> daemon works.
    hr = ha_reply()
    check(
        "HA text.set_value + button.press reach the daemon",
        hr is not None,
        (
            "enrolled " + str(hr["name"])
            if hr.get("ok")
            else f"refused: {hr.get('result')}: {hr.get('message')}"
        )
        if hr
        else "no enrolment result from an HA enrol",
    )
    extra: list[str] = []
    if hr and hr.get("ok"):
        vid = hr["person_id"]
        extra.append(f"{DEVICE}_{discovery.person_object_id(vid)}")
        want[extra[0]] = "sensor"
        end = time.time() + 30
        while time.time() < end and extra[0] not in registry(ha_dir)[0]:
            time.sleep(2)

    # --- removal --------------------------------------------------------------------
    rid = "ha-check-delete"
    client.publish(topics.command("delete"), sign(key, "delete", DEVICE, {"name": PERSON}, rid))
    dreply = client.reply("delete", rid, 60)
    check("delete astronaut (signed MQTT)", dreply.get("ok"), json.dumps(dreply)[:120])
    seen_topic = topics.person_last_seen(person_id)
    try:
        client.wait_for(lambda: (seen_topic, b"") in client.messages, 20)
        check("retained last_seen cleared after delete", True, seen_topic)
    except TimeoutError:
        check("retained last_seen cleared after delete", False, seen_topic)
    end = time.time() + 40  # the entity registry is saved 10 s after a change
    while time.time() < end and person_uid in registry(ha_dir)[0]:
        time.sleep(2)
    removed_live = person_uid not in registry(ha_dir)[0]

    # --- availability: the daemon stops, its entities must go unavailable ---------
    fps_eid = uid2eid.get(f"{DEVICE}_fps", "")
    drc = procs.stop(daemon, 60)
    check("daemon stopped cleanly", drc == 0, f"exit {drc}")
    end = time.time() + 20
    while time.time() < end and (
        not history(db).get(fps_eid) or history(db)[fps_eid][-1][0] != "unavailable"
    ):
        time.sleep(1)

    # --- stop HA cleanly: flushes .storage and the recorder ------------------------
    rc = procs.stop(hass, 90)
    check("HA stopped cleanly", rc == 0, f"exit {rc}, ran {time.time() - t_ha:.0f} s")
    by_uid, devices = registry(ha_dir)
    final_hist = history(db)

    # --- checks ---------------------------------------------------------------------
    uid2eid = {u: (by_uid[u]["entity_id"] if u in by_uid else "") for u in want}
    for uid, comp in want.items():
        if uid == person_uid:
            continue
        e = by_uid.get(uid)
        check(
            f"entity {uid} ({comp})",
            e is not None and e["entity_id"] == entity_id(uid, comp),
            e["entity_id"] if e else "missing from the entity registry",
        )
    person_hist = final_hist.get(entity_id(person_uid, "sensor"), [])
    check(
        f"entity {person_uid} (sensor) was created",
        bool(person_hist),
        f"{len(person_hist)} recorded states",
    )
    check(
        f"entity {person_uid} removed after delete",
        removed_live and person_uid not in by_uid,
        "within 40 s" if removed_live else "still registered",
    )

    ours = [d for d in devices if ["mqtt", f"appliance_{DEVICE}"] in d.get("identifiers", [])]
    dev_ids = {by_uid[u]["device_id"] for u in want if u in by_uid}
    check("exactly one device appliance_door1", len(ours) == 1, f"{len(ours)} found")
    if ours:
        d = ours[0]
        check(
            "every entity bound to that device",
            dev_ids == {d["id"]},
            f"{len(dev_ids)} distinct device ids",
        )
        meta = {k: d.get(k) for k in ("name", "manufacturer", "model", "sw_version")}
        check(
            "device name/manufacturer/model/sw_version",
            meta
            == {
                "name": f"Door {DEVICE}",
                "manufacturer": "appliance (open source)",
                "model": "Face-recognition door appliance",
                "sw_version": __version__,
            },
            json.dumps(meta),
        )

    def states(uid: str) -> list[str]:
        return [s for s, *_ in final_hist.get(uid2eid.get(uid, ""), [])]

    def real(uid: str) -> list[str]:
        return [s for s in states(uid) if s not in ("unknown", "unavailable", "")]

    ev = [
        a.get("event_type")
        for s, a, _ in final_hist.get(uid2eid.get(f"{DEVICE}_decision", ""), [])
        if s not in ("unknown", "unavailable")
    ]
    check(
        "event decision fires with event types",
        bool(ev) and set(ev) <= set(discovery.EVENT_TYPES + discovery.DOOR_EVENT_TYPES),
        f"{len(ev)} events: {sorted(set(ev))}",
    )
    check(
        "door events reach the event entity",
        {"door_unlocked", "door_locked"} <= set(ev),
        str(sorted(t for t in set(ev) if t.startswith("door_"))),
    )
    lock = real(f"{DEVICE}_door_lock")
    check(
        "lock door_lock shows locked and unlocked",
        {"locked", "unlocked"} <= set(lock),
        f"{len(lock)} states: {sorted(set(lock))}",
    )
    dlog = (work / "daemon.log").read_text(errors="replace")
    check(
        "HA lock.open unlocks the door (unsigned, allow_unlock)",
        "remote unlock for 1 s by homeassistant" in dlog,
        "door thread logged the remote unlock" if "by homeassistant" in dlog else "not seen",
    )
    door = real(f"{DEVICE}_door")
    check(
        "binary_sensor door follows the contact",
        "on" in door and "off" in door,
        str(door[-6:]),
    )
    check(
        "sensor last_person = astronaut",
        PERSON in real(f"{DEVICE}_last_person"),
        str(sorted(set(real(f"{DEVICE}_last_person")))),
    )
    ag = states(f"{DEVICE}_access_granted")
    check("binary_sensor access_granted turns on", "on" in ag, f"{len(ag)} states")
    periods = on_periods(final_hist.get(uid2eid.get(f"{DEVICE}_access_granted", ""), []))
    decided = [
        ts
        for s, a, ts in final_hist.get(uid2eid.get(f"{DEVICE}_decision", ""), [])
        if s not in ("unknown", "unavailable") and a.get("event_type") != "granted"
    ]
    crossed = sum(1 for a, b in periods if any(a < t < b for t in decided))
    short = min((b - a for a, b in periods), default=0.0)
    check(
        f"access_granted stays on {discovery.GRANTED_ON_S} s",
        bool(periods) and short >= discovery.GRANTED_ON_S - 0.05,
        f"{len(periods)} on periods, shortest {short:.2f} s; "
        f"{crossed} with another decision during them",
    )
    check(
        "image snapshot updates",
        bool(real(f"{DEVICE}_snapshot")),
        f"{len(real(f'{DEVICE}_snapshot'))} updates",
    )
    n = 1 + len(extra)
    check(
        f"diagnostic gallery_size {n} enrolled, {n - 1} after delete",
        real(f"{DEVICE}_gallery_size")[-2:] == [str(n), str(n - 1)],
        str(real(f"{DEVICE}_gallery_size")),
    )
    for oid in ("fps", "detect_ms", "embed_ms", "dropped_frames", "outbox_depth", "gallery_size"):
        r = real(f"{DEVICE}_{oid}")
        check(
            f"diagnostic {oid} numeric",
            bool(r) and all(is_number(s) for s in r),
            f"last {r[-1] if r else None}",
        )
    for oid in ("fps", "detect_ms", "embed_ms"):  # unknown until measured, never a 0
        r = real(f"{DEVICE}_{oid}")
        check(
            f"diagnostic {oid} never 0",
            bool(r) and all(is_number(s) and float(s) > 0 for s in r),
            f"first {r[0] if r else None}",
        )
    started = real(f"{DEVICE}_started")
    check(
        "diagnostic started is one timestamp",
        len(set(started)) == 1 and is_iso(started[0]),
        str(sorted(set(started))),
    )
    times = [
        a.get("time") for s, a, _ in final_hist.get(uid2eid.get(f"{DEVICE}_last_person", ""), [])
    ]
    times = [t for t in times if t is not None]
    check(
        "last_person time attribute is ISO 8601",
        bool(times) and all(is_iso(t) for t in times),
        f"last {times[-1] if times else None}",
    )
    cam = real(f"{DEVICE}_camera_state")
    check("diagnostic camera_state", bool(cam), f"last {cam[-1] if cam else None}")
    stamps = [s for s, *_ in person_hist if s and s[:2] == "20"]
    check(
        f"sensor {person_uid} timestamp",
        bool(stamps),
        f"{len(stamps)} updates, last {stamps[-1] if stamps else None}",
    )
    check(
        "text enrol_name state round trip",
        HA_NAME in states(f"{DEVICE}_enrol_name"),
        str(sorted(set(states(f"{DEVICE}_enrol_name")))),
    )
    shown = states(f"{DEVICE}_last_enrolment")
    check(
        "sensor last_enrolment shows how the HA enrolment ended",
        bool(hr) and str(hr.get("result")) in shown,
        str(sorted(set(shown))),
    )
    # Runs are read from the traces Home Assistant saves at stop (the last 5 of each
    # automation; the recorder leaves last_triggered out): the message each one rendered.
    traces = read_json(ha_dir / ".storage" / "trace.saved_traces").get("data", {})
    for auto in automations:
        ran = [
            step.get("result", {}).get("params", {})
            for t in traces.get(f"automation.{auto['id']}", [])
            for step in t.get("extended_dict", {}).get("trace", {}).get("action/0", [])
        ]
        alias = auto["alias"]
        st = [s for h in final_hist.values() for s, a, _ in h if a.get("friendly_name") == alias]
        check(f"README automation {auto['id']} loads", "on" in st, f"{len(ran)} runs traced")
    greeting = f"Welcome, {PERSON}."
    said = [
        step.get("result", {}).get("params", {}).get("service_data", {}).get("message")
        for t in traces.get("automation.front_door_greet", [])
        for step in t.get("extended_dict", {}).get("trace", {}).get("action/0", [])
    ]
    check(
        "README greeting says the name on granted",
        greeting in said,
        str(sorted({str(m) for m in said})) if said else "never ran",
    )
    never = [u for u in want if u != person_uid and all(s == "unavailable" for s in states(u))]
    check("every entity was available", not never, ", ".join(never))
    still = [u for u in want if u != person_uid and states(u)[-1:] != ["unavailable"]]
    check("every entity unavailable after the daemon stops", not still, ", ".join(still))

    halog = ha_dir / "home-assistant.log"
    text = halog.read_text(errors="replace") if halog.exists() else ""
    bad = [
        ln
        for ln in text.splitlines()
        if ("ERROR" in ln or "WARNING" in ln)
        and ("mqtt" in ln.lower() or "discovery" in ln.lower())
    ]
    check("no MQTT errors/warnings in the HA log", not bad, bad[0][-90:] if bad else "")
    failed = [ln for ln in text.splitlines() if "Setup failed for" in ln]
    check("HA set up every integration", not failed, failed[0][-90:] if failed else "")
    out["uid2eid"], out["hist"] = uid2eid, final_hist
    stamp = ha_dir / ".HA_VERSION"  # written by Home Assistant itself
    out["version"] = stamp.read_text().strip() if stamp.exists() else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--hass",
        default="/opt/havenv/bin/hass",
        help="Home Assistant's hass: a path, or a command line (tools/ha/run.sh hass)",
    )
    ap.add_argument("--python", default=sys.executable, help="python with the appliance")
    ap.add_argument("--workdir", help="keep files here (default: a temp dir, removed on PASS)")
    ap.add_argument(
        "--run-s",
        type=float,
        default=150.0,
        help="longest wait for HA to show every entity with a state",
    )
    ap.add_argument(
        "--pip",
        action="store_true",
        help="let HA pip-install integration requirements (default --skip-pip)",
    )
    args = ap.parse_args()
    if not shlex.split(args.hass) or not Path(shlex.split(args.hass)[0]).exists():
        print(f"no Home Assistant at {args.hass}", file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ha_check-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> bool:
        results.append((name, bool(ok), detail))
        return bool(ok)

    procs = Procs()
    out: dict[str, Any] = {}
    try:
        scenario(args, work, procs, check, out)
    except Exception as exc:
        check("harness", False, f"{type(exc).__name__}: {exc}")
    finally:
        if out.get("client"):
            out["client"].close()
        procs.stop_all()
        if out.get("broker"):
            out["broker"].stop()
    return finish(
        results,
        work,
        t0,
        args.workdir,
        out.get("uid2eid", {}),
        out.get("hist", {}),
        out.get("version", "?"),
    )


def finish(
    results: list[tuple[str, bool, str]],
    work: Path,
    t0: float,
    keep: str | None,
    uid2eid: dict[str, str],
    hist: History,
    version: str = "?",
) -> int:
    if uid2eid:
        print("\nEntities in Home Assistant (last available state, number of states):")
        for uid, eid in sorted(uid2eid.items()):
            st = hist.get(eid, [])
            up = [s for s, *_ in st if s and s != "unavailable"]
            last = up[-1] if up else "-"
            print(f"  {eid or '(removed) ' + uid:45s} {last[:32]:32s} {len(st):4d}")
    print("\nCheck" + " " * 51 + "Result  Detail")
    for name, ok, detail in results:
        print(f"  {name[:53]:53s} {'PASS' if ok else 'FAIL':6s}  {detail[:90]}")
    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"\nHome Assistant {version}")
    print(
        f"{len(results) - failed} passed, {failed} failed in {time.time() - t0:.0f} s "
        f"(files: {work})"
    )
    if not failed and not keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
