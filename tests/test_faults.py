"""Fault injection on the real daemon process: broker outages, SIGKILLs and power cuts.

Each test drives the daemon on the built-in demo scene (which decides an event every few
seconds), a real Mosquitto and real SQLite files, injects faults at seeded random
instants, and then checks what a door owner relies on: every decided event reaches the
consumer, in order; the gallery and the outbox pass `PRAGMA integrity_check`; no
acknowledged enrolment is lost and no person is half enrolled. The figures go to
build/e2e/*.json for the README's reliability section.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

from appliance import assets
from tests.daemon_harness import DaemonProcess, Listener, b64

OUT = Path(__file__).resolve().parents[1] / "build" / "e2e"


def _write(name: str, summary: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(summary, indent=2))
    print(name, json.dumps(summary))


def _check_delivery(d: DaemonProcess, listener: Listener, timeout: float) -> dict[str, Any]:
    """Wait until every decided event has arrived, then compare ids and order."""
    waited = listener.wait_for(
        lambda: (lambda dec: dec if set(dec) <= {e["event_id"] for e in listener.events()}
                 else None)(d.decided()), timeout)
    ids = [e["event_id"] for e in listener.events()]
    decided = d.decided()  # read after the events: anything received must be in here
    unique = sorted(set(ids), key=ids.index)
    assert set(waited) <= set(unique), "a decided event never arrived"
    assert set(unique) <= set(decided), "an event arrived that the daemon never decided"
    assert unique == [i for i in decided if i in set(unique)], "first arrivals out of order"
    return {"decided": len(waited), "received": len(ids), "unique": len(unique),
            "duplicates": len(ids) - len(unique),
            "replayed": sum(bool(e.get("replayed")) for e in listener.events())}


def test_twenty_broker_outages_lose_nothing(tmp_path, broker):
    """20 stop/start cycles of the broker, each 1-30 s long, while the daemon decides
    events: each arrives at least once, first arrivals in decision order, and
    de-duplication by event id leaves exactly the set decided."""
    rng = random.Random(20)
    d = DaemonProcess(tmp_path, broker.port, "demo", {"decision": {"cooldown_s": 0}})
    listener = Listener(broker.port, d.topics, durable=True)
    d.start()
    listener.wait_for(lambda: d.online_count(listener) >= 1, 60)
    outages = []
    for _ in range(20):
        time.sleep(rng.uniform(2.0, 6.0))  # up: some events go straight through
        broker.stop()
        down = rng.uniform(1.0, 30.0)
        outages.append(round(down, 1))
        time.sleep(down)
        broker.start()
    summary = _check_delivery(d, listener, 120)
    listener.close()
    assert d.proc is not None and d.proc.poll() is None, "the daemon died during the outages"
    d.stop()
    summary |= {"outages": len(outages), "outage_s_total": round(sum(outages), 1),
                "outage_s": outages}
    _write("faults_outages.json", summary)
    assert summary["decided"] >= 20  # the run really produced events throughout


def _integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def _gallery(state: Path) -> tuple[dict[str, int], int]:
    """People by name with their template count, and orphaned templates."""
    db = sqlite3.connect(state / "gallery.sqlite3")
    try:
        people = dict(db.execute(
            "SELECT p.name, COUNT(t.id) FROM persons p LEFT JOIN templates t "
            "ON t.person_id = p.id GROUP BY p.id").fetchall())
        orphans = db.execute("SELECT COUNT(*) FROM templates WHERE person_id NOT IN "
                             "(SELECT id FROM persons)").fetchone()[0]
        return people, orphans
    finally:
        db.close()


def _ready_count(d: DaemonProcess) -> int:
    return d.log_text().count("appliance.daemon: ready: ")


def test_fifty_sigkills_and_power_cuts_keep_gallery_and_outbox_whole(tmp_path, broker):
    """SIGKILL at 50 seeded random instants: during start-up, during an enrolment,
    during an outbox replay after an outage, and as a power cut (the whole process
    group). After each: both databases pass integrity_check and nobody is half
    enrolled. At the end: every acknowledged enrolment is there, and everything decided
    was delivered."""
    rng = random.Random(50)
    d = DaemonProcess(tmp_path, broker.port, "demo", {"decision": {"cooldown_s": 0}})
    state = tmp_path / "state"
    listener = Listener(broker.port, d.topics, durable=True)
    photo = b64(assets.path("astronaut.png"))
    kinds: Counter[str] = Counter()
    sent: list[str] = []
    for i in range(50):
        kind = ("anytime", "enrolment", "replay", "power cut")[i % 4]
        kinds[kind] += 1
        ready = _ready_count(d)
        d.start()
        if kind == "anytime":  # any instant from process start, model loading included
            time.sleep(rng.uniform(0.0, 8.0))
        else:
            listener.wait_for(lambda r=ready: _ready_count(d) > r, 60)
            time.sleep(0.3)
        if kind == "enrolment":
            rid = f"kill-{i}"
            sent.append(rid)
            listener.publish(d.topics.command("enroll"), d.signed(
                "enroll", {"name": f"Person {i}", "images": [photo], "force": True}, rid))
            time.sleep(rng.uniform(0.0, 0.6))
        elif kind == "replay":
            broker.stop()
            time.sleep(rng.uniform(4.0, 10.0))  # events pile up in the outbox
            broker.start()
            time.sleep(rng.uniform(0.0, 2.5))  # reconnect and replay under way
        elif kind == "power cut":
            # writes in flight: an enrolment and the frame loop's events
            rid = f"cut-{i}"
            sent.append(rid)
            listener.publish(d.topics.command("enroll"), d.signed(
                "enroll", {"name": f"Person {i}", "images": [photo], "force": True}, rid))
            time.sleep(rng.uniform(0.0, 3.0))
        d.kill(group=kind == "power cut")
        for name in ("gallery.sqlite3", "outbox.sqlite3"):
            if (state / name).exists():
                assert _integrity(state / name) == "ok", f"kill {i} ({kind}): {name}"
        people, orphans = _gallery(state)
        assert orphans == 0 and all(n > 0 for n in people.values()), (i, kind, people)
    # the 51st start: the outbox drains everything decided in all the runs before
    d.start()
    summary = _check_delivery(d, listener, 180)
    acked = {json.loads(p)["request_id"] for _, t, p in list(listener.messages)
             if t == d.topics.reply("enroll") and json.loads(p).get("ok")}
    listener.close()
    d.stop()
    people, orphans = _gallery(state)
    enrolled = {f"Person {r.split('-')[1]}" for r in acked}
    assert enrolled <= set(people), "an acknowledged enrolment was lost"
    assert orphans == 0 and all(n > 0 for n in people.values())
    summary |= {"kills": sum(kinds.values()), "by_kind": dict(kinds),
                "enrolments_sent": len(sent), "enrolments_acknowledged": len(acked),
                "people_in_gallery": len(people),
                "integrity_checks": "ok after every kill"}
    _write("faults_kills.json", summary)
    assert summary["decided"] > 0 and acked
