"""Convergence and hostile input, with real Mosquittos and the real replicator.

The doors are `tools.benchmarks.replication.Node`s (the real gallery, replicator and MQTT
link, no camera): the daemon tests (test_replication_doors.py) show the same path ends
in a grant; here many operations and outages fit in a test's time.
"""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from appliance.replication.crypto import SiteKey
from appliance.replication.records import Record
from tools.benchmarks.replication import SECRET, Node, template, until
from tools.broker import Bridge, Broker


def test_random_changes_at_three_doors_with_broker_and_bridge_cuts_converge(tmp_path):
    """A and B on a site broker bridged to a hub, C on the hub. Random enrol, rename
    and delete at random doors while the site broker (both doors' link and the bridge)
    or the hub (C's link and the bridge) is stopped and restarted at random instants."""
    rnd = random.Random(19)
    rng = np.random.default_rng(19)
    hub = Broker(tmp_path / "hub")
    hub.start()
    site = Broker(tmp_path / "site", bridge=Bridge(hub.port, ("appliance/site/#",)))
    site.start()
    nodes = [
        Node(tmp_path / "a", site.port, "door-a", digest_s=1.0).start(),
        Node(tmp_path / "b", site.port, "door-b", digest_s=1.0).start(),
        Node(tmp_path / "c", hub.port, "door-c", digest_s=1.0).start(),
    ]
    enrolled: set[str] = set()
    deleted: set[str] = set()
    ops = cuts = 0
    try:
        for n in nodes:
            until(lambda n=n: n.link.connected.is_set(), 20)
        back_at = -1
        for step in range(120):
            if step % 15 == 7:  # a cut: one broker down for a while, then back
                rnd.choice([site, hub]).stop()
                cuts += 1
                back_at = step + rnd.randint(2, 10)
            door = rnd.choice(nodes)
            people = door.people()
            op = rnd.choice(["enrol", "enrol", "rename", "delete"]) if people else "enrol"
            try:
                if op == "enrol":
                    if people and rnd.random() < 0.3:  # more templates for someone known
                        door.enrol(rnd.choice(list(people.values())), [template(rng)])
                    else:
                        enrolled.add(door.enrol(f"p{step}-{door.device}", [template(rng)]))
                elif op == "rename":
                    door.rename(rnd.choice(list(people)), f"r{step}-{door.device}")
                else:
                    deleted.add(door.delete(rnd.choice(list(people))))
                ops += 1
            except ValueError:  # GalleryError: e.g. someone deleted meanwhile
                pass
            if step == back_at:
                for b in (site, hub):
                    if b.proc is None:
                        b.start()
            time.sleep(rnd.uniform(0.0, 0.05))
        for b in (site, hub):
            if b.proc is None:
                b.start()

        def same() -> bool:
            states = [n.state() for n in nodes]
            return all(s == states[0] for s in states[1:])

        t0 = time.monotonic()
        until(same, 90, 0.5)
        print(
            f"\n{ops} operations, {cuts} broker stops, converged {time.monotonic() - t0:.1f} s "
            f"after the last restart"
        )
        final = [n.people() for n in nodes]
        assert final[0] == final[1] == final[2]
        assert not set(final[0]) & deleted  # no deleted person anywhere
        assert set(final[0]) == enrolled - deleted  # no person lost
        print(f"{len(enrolled)} enrolled, {len(deleted)} deleted, {len(final[0])} at each door")
        assert len(deleted) > 5 and len(final[0]) > 5 and cuts >= 5
    finally:
        for n in nodes:
            n.close()
        site.stop()
        hub.stop()


def test_wrong_key_modified_replayed_ghost_and_flood_change_nothing(tmp_path, broker, caplog):
    a = Node(tmp_path / "a", broker.port, "door-a").start()
    b = Node(tmp_path / "b", broker.port, "door-b").start()
    rng = np.random.default_rng(3)
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for n in (a, b):
            until(lambda n=n: n.link.connected.is_set(), 20)
        pid = a.enrol("Ann", [template(rng)])
        until(lambda: b.has(pid), 10)
        old = a.do(lambda: a.replicator.store.current(f"person/{pid}"))
        a.rename("Ann", "Anne")
        until(lambda: b.people().get(pid) == "Anne", 10)
        before = b.state()
        refused0 = b.replicator.counts["refused"]
        topic = a.replicator.topic_of(f"person/{pid}")
        key = SiteKey(SECRET, "bench")
        # 1. a record sealed with another key: an intruder enrolling "Mallory"
        evil = Record("person", "e" * 32, old.hlc + 10**9, "door-x", {**old.body, "name": "M"})
        evil_topic = a.replicator.topic_of(evil.entity)
        wrong = SiteKey(b"not-the-site-secret-at-all!!", "bench").seal(evil_topic, evil.to_bytes())
        # 2. a real record with one byte changed
        good = bytearray(key.seal(topic, old.to_bytes()))
        good[-5] ^= 0x40
        # 3. a replay of her old version (correctly sealed: it was sent once)
        replay = key.seal(topic, old.to_bytes())
        # 4. a real record moved to another person's topic
        moved_to = a.replicator.topic_of("person/" + "d" * 32)
        # 5. a tombstone for someone who never existed (sealed by a door: harmless)
        ghost = Record("person", "c" * 32, old.hlc + 1, "door-a", None)
        caplog.set_level(logging.INFO, logger="appliance.replication")
        for t, p in (
            (evil_topic, wrong),
            (topic, bytes(good)),
            (topic, replay),
            (moved_to, replay),
            (
                a.replicator.topic_of(ghost.entity),
                key.seal(a.replicator.topic_of(ghost.entity), ghost.to_bytes()),
            ),
        ):
            client.publish(t, p, qos=1).wait_for_publish(5)
        # 6. a flood: 3,000 garbage messages on the site's record topics
        for i in range(3000):
            client.publish(f"appliance/site/bench/rec/person/{i:032x}", b"\x01" + bytes(40), qos=0)
        until(lambda: b.replicator.counts["refused"] >= refused0 + 3003, 30, 0.1)
        until(lambda: b.replicator.counts["stale"] >= 1, 10)  # the replay: not newer
        time.sleep(0.5)
        after = b.state()
        ghost_entity = f"person/{'c' * 32}"
        assert {e: v for e, v in after.items() if e != ghost_entity} == before
        assert after[ghost_entity][1] is None  # only an id and a version: no person
        assert b.people() == {pid: "Anne"}
        logged = caplog.text
        assert "authentication failed" in logged and "not known here" in logged
        # 3,004 refusals at each of the two doors; the log has 10 + one per 1,000 of each
        assert logged.count("refused a message") <= 2 * 13
        # and the door still works: a change made now still arrives
        pid2 = a.enrol("Bob", [template(rng)])
        until(lambda: b.has(pid2), 10)
    finally:
        client.loop_stop()
        client.disconnect()
        a.close()
        b.close()
