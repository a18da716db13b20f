"""Replication's design, without a broker: versions, the conflict rule, idempotent apply,
sealing. The merge properties run on the real SQLite gallery (ReplicaStore), with
hypothesis generating what several doors do and the order records arrive in."""

from __future__ import annotations

import json
import tempfile
from datetime import timezone
from pathlib import Path
from random import Random

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appliance.access.schedule import DoorMode, Group
from appliance.replication.crypto import SiteKey
from appliance.replication.hlc import Clock, wall_ms
from appliance.replication.records import Record, RecordRefused, content_hash, newer
from appliance.replication.store import ReplicaStore, apart
from appliance.store.access_rules import AccessStore
from appliance.store.gallery import Gallery, Template

EMB = "facenet-test"


def tpl(seed: int, embedder: str = EMB) -> Template:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return Template(v / np.linalg.norm(v), embedder, "file", {"score": 0.5 + seed % 7 / 10})


class Door:
    """A gallery, its access rules and its replica versions: what a door stores."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.g = Gallery(path / f"{name}.sqlite3")
        self.rules = AccessStore(self.g)
        self.store = ReplicaStore(self.g)
        self.clock = Clock()

    def changed(self) -> list[Record]:
        return self.store.scan(self.clock, self.name)

    def state(self) -> dict[str, tuple]:
        """Every entity's version and content (tombstones too): equal states, equal doors."""
        out = {}
        for e, v in self.store.versions().items():
            out[e] = (v, json.dumps(self.store.body(e), sort_keys=True))
        for e in self.store.local_entities():
            out.setdefault(e, (None, json.dumps(self.store.body(e), sort_keys=True)))
        return out

    def close(self) -> None:
        self.g.close()


def test_clock_is_monotonic_and_follows_what_it_saw():
    t = [1000.0]
    clock = Clock(lambda: t[0])
    a = clock.tick()
    b = clock.tick()  # same millisecond: the counter moves
    assert b == a + 1 and wall_ms(a) == 1_000_000
    t[0] = 999.0  # the wall clock steps back: versions do not
    assert clock.tick() > b
    clock.observe(a + 10**9)  # another door, ahead
    assert clock.tick() > a + 10**9
    assert clock.skew_s(clock.tick()) > 0


def test_conflict_rule_is_total_and_deterministic():
    a = (5, "door-a", "x")
    b = (5, "door-b", "x")  # the same instant at two doors: the larger origin wins
    assert newer(b, a) and not newer(a, b) and not newer(a, a)
    assert newer((6, "door-a", ""), b)  # a later version wins, whoever made it
    assert newer(a, None)
    tomb = (4, "door-a", "")  # a person's delete wins over a later rename made apart
    assert newer(tomb, b, "person") and not newer(b, tomb, "person")
    assert not newer(tomb, b, "group")  # a group deleted and made again lives again


def test_seal_and_open_refuse_wrong_key_modified_moved_and_other_site():
    k = SiteKey(b"s" * 32, "hq")
    topic = "appliance/site/hq/rec/person/abc"
    sealed = k.seal(topic, b"hello")
    assert k.open(topic, sealed) == b"hello"
    assert b"hello" not in sealed
    with pytest.raises(RecordRefused, match="authentication"):
        SiteKey(b"t" * 32, "hq").open(topic, sealed)  # another key
    bad = bytearray(sealed)
    bad[20] ^= 1
    with pytest.raises(RecordRefused, match="authentication"):
        k.open(topic, bytes(bad))  # one bit changed
    with pytest.raises(RecordRefused, match="authentication"):
        k.open(topic.replace("abc", "abd"), sealed)  # moved to another person's topic
    with pytest.raises(RecordRefused, match="authentication"):
        SiteKey(b"s" * 32, "branch").open(topic, sealed)  # same secret, other site
    with pytest.raises(RecordRefused, match="not a sealed"):
        k.open(topic, b"\x01short")
    with pytest.raises(ValueError, match="at least 16"):
        SiteKey(b"short", "hq")
    assert k.topic_id("person/x") != SiteKey(b"t" * 32, "hq").topic_id("person/x")


def test_record_parsing_refuses_what_no_door_makes():
    good = Record("mode", "door", 1 << 20, "a", {"mode": "normal", "group": None})
    assert Record.from_bytes(good.to_bytes()) == good
    for mutate, match in (
        (lambda o: o.update(kind="secret"), "unknown kind"),
        (lambda o: o.update(hlc=-1), "bad version"),
        (lambda o: o.update(origin=""), "bad origin"),
        (lambda o: o.update(key="x"), "key is 'door'"),
        (lambda o: o.update(f=2), "format 1"),
        (lambda o: o.update(kind="person", key="0" * 32, body={"name": "x"}), "bad meta"),
    ):
        obj = json.loads(good.to_bytes())
        mutate(obj)
        with pytest.raises(RecordRefused, match=match):
            Record.from_bytes(json.dumps(obj).encode())
    with pytest.raises(RecordRefused, match="not JSON"):
        Record.from_bytes(b"\xff")


def test_local_changes_are_versioned_once_and_a_delete_is_a_tombstone(tmp_path):
    a = Door(tmp_path, "a")
    p = a.g.enrol("Ann", [tpl(1), tpl(2)], "t")
    recs = a.changed()
    assert [r.entity for r in recs] == [f"person/{p.id}"]
    body = recs[0].body
    assert body["name"] == "Ann" and len(body["templates"]) == 2
    assert body["templates"][0]["embedder"] == EMB
    assert a.changed() == []  # nothing new: nothing sent
    a.g.rename("Ann", "Anne", "t")
    (r2,) = a.changed()
    assert r2.body["name"] == "Anne" and r2.version > recs[0].version
    a.g.delete("Anne", "t")
    (tomb,) = a.changed()
    assert tomb.tombstone and tomb.to_bytes().count(b"Ann") == 0  # no personal data
    assert json.loads(tomb.to_bytes())["body"] is None
    a.close()


def test_replay_of_an_old_version_and_unknown_tombstone_are_harmless(tmp_path):
    a, b = Door(tmp_path, "a"), Door(tmp_path, "b")
    p = a.g.enrol("Ann", [tpl(1)], "t")
    (v1,) = a.changed()
    a.g.delete(p.id, "t")
    (tomb,) = a.changed()
    res = b.store.apply([v1, tomb], "replication:a")
    assert res.applied == 2 and b.g.persons() == []
    res = b.store.apply([v1, v1, tomb], "replication:a")  # the old version, replayed
    assert res.stale == 3 and res.applied == 0 and b.g.persons() == []
    ghost = Record("person", "f" * 32, tomb.hlc, "a", None)
    before = b.g.persons()
    res = b.store.apply([ghost], "replication:a")
    assert res.unknown_tombstones == 1 and b.g.persons() == before
    a.close()
    b.close()


def test_same_name_enrolled_at_two_doors_stays_two_people_in_either_order(tmp_path):
    a, b = Door(tmp_path, "a"), Door(tmp_path, "b")
    pa = a.g.enrol("Sam", [tpl(1)], "t")
    pb = b.g.enrol("Sam", [tpl(2)], "t")
    (ra,), (rb,) = a.changed(), b.changed()
    c, d = Door(tmp_path, "c"), Door(tmp_path, "d")
    c.store.apply([ra, rb], "r")
    d.store.apply([rb], "r")
    d.store.apply([ra], "r")
    lo, hi = sorted([pa.id, pb.id])
    for door in (c, d):
        names = {p.id: p.name for p in door.g.persons()}
        assert names == {lo: "Sam", hi: apart("Sam", hi)}, door.name
        assert door.g.counts() == (2, 2)
    for door in (a, b, c, d):
        door.close()


def test_foreign_embedder_templates_are_kept_but_not_matched(tmp_path):
    a, b = Door(tmp_path, "a"), Door(tmp_path, "b")
    a.g.enrol("Ann", [tpl(1, "arcface-other")], "t")
    b.store.apply(a.changed(), "r")
    (person,) = b.g.persons(EMB)
    assert person.stale_templates == 1  # says so: re-enrolment needed here
    assert b.g.template_set(EMB).matrix.shape[0] == 0  # never compared
    assert b.g.template_set("arcface-other").matrix.shape[0] == 1  # kept, sent on intact
    a.close()
    b.close()


# --- the merge property --------------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.integers(0, 2),  # which door
        st.sampled_from(
            ["enrol", "more", "rename", "delete", "group", "ungroup", "rights", "mode"]
        ),
        st.integers(0, 3),  # which person / group
        st.integers(0, 1000),  # a seed
    ),
    min_size=1,
    max_size=25,
)


def _act(door: Door, op: str, who: int, seed: int, step: int) -> None:
    names = [p.name for p in door.g.persons()]
    # Names never clash here (the test above covers clashes), not even with a name a door
    # gave up earlier: enrolling "P0-a" again after renaming the first "P0-a" lets a fresh
    # door hold both at once when the rename arrives last, which is a real clash there,
    # renamed apart and re-sent by sync (not by these bare stores). Hence the step.
    mine = f"P{who}-{door.name}-{step}"
    try:
        if op == "enrol":
            door.g.enrol(mine, [tpl(seed)], "t", {"n": seed})
        elif op == "more" and names:
            door.g.enrol(names[who % len(names)], [tpl(seed)], "t", max_templates=3)
        elif op == "rename" and names:
            door.g.rename(names[who % len(names)], f"R{seed}-{door.name}-{step}", "t")
        elif op == "delete" and names:
            door.g.delete(names[who % len(names)], "t")
        elif op == "group":
            door.rules.set_group(
                Group.from_dict(f"g{who}", {"windows": [f"mon {who}:00-18:00"]}), "t"
            )
        elif op == "ungroup" and door.rules.groups():
            door.rules.delete_group(sorted(door.rules.groups())[0], "t")
        elif op == "rights" and names and door.rules.groups():
            g = sorted(door.rules.groups())[seed % len(door.rules.groups())]
            door.rules.set_person(names[0], "t", timezone.utc, groups=[g])
        elif op == "mode":
            door.rules.set_door_mode(DoorMode.parse(["normal", "passage"][seed % 2], None, {}), "t")
    except Exception as exc:  # a refused change (name taken, ...) is a change not made
        if type(exc).__name__ not in ("GalleryError", "ScheduleError"):
            raise


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, sync_every=st.integers(1, 6), orders=st.randoms(use_true_random=False))
@example(
    ops=[(0, "enrol", 0, 0), (0, "rename", 0, 0), (0, "enrol", 0, 0)],
    sync_every=1,
    orders=Random(0),
)
def test_any_order_any_duplicates_same_state(ops, sync_every, orders):
    """Doors change things (sometimes after hearing from each other, so versions
    interleave); every record ever sent then reaches three fresh doors in a different
    random order, in random batches, some twice. All end identical, and equal to the
    doors that made the changes once those have heard everything."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        doors = [Door(path, n) for n in ("a", "b", "c")]
        sent: list[Record] = []
        for i, (d, op, who, seed) in enumerate(ops):
            _act(doors[d], op, who, seed, i)
            sent += doors[d].changed()
            if i % sync_every == 0:  # gossip now and then: later changes follow earlier
                for door in doors:
                    door.store.apply(sent, "r", door.clock)
                    sent += door.changed()
        for door in doors:
            door.store.apply(sent, "r", door.clock)
        fresh = [Door(path, f"x{i}") for i in range(3)]
        for door in fresh:
            recs = sent + orders.sample(sent, len(sent) // 2)
            orders.shuffle(recs)
            while recs:
                n = orders.randint(1, 5)
                door.store.apply(recs[:n], "r")
                recs = recs[n:]
        states = [d.state() for d in doors + fresh]
        for s in states[1:]:
            assert s == states[0]
        # the winner of each entity is its largest version sent
        best: dict[str, Record] = {}
        for r in sent:
            if r.entity not in best or newer(r.version, best[r.entity].version, r.kind):
                best[r.entity] = r
        assert {e: v for e, (v, _) in states[0].items()} == {e: r.version for e, r in best.items()}
        for e, r in best.items():
            assert content_hash(fresh[0].store.body(e)) == r.hash
        for door in doors + fresh:
            door.close()
