"""The replicator: local changes out as sealed records, remote records in as commands.

Out: it follows the domain events (PersonEnrolled, PersonRenamed, PersonDeleted,
RulesChanged), so every route that changes the gallery or the rules is covered without a
call in the route. On each, `ReplicaStore.scan` versions what changed, and each record
is published sealed and *retained* on its own topic (`<prefix>/site/<site>/rec/<kind>/
<hash>`), QoS 1: the broker then holds the site's latest state, and a door that joins
later gets all of it when it subscribes. A delete replaces the person's retained record
with a tombstone, so the broker no longer holds their templates either.

In: a message is opened with the site key (a wrong key, a modified byte, a record moved
to another topic are refused and logged), parsed and checked, then queued by entity
(a newer record replaces a queued older one, so a flood costs memory per entity, not per
message) and handed to the frame loop as one `ApplyRecords` command at a time: the
command service applies it, like any other change.

Anti-entropy: every `digest_interval_s`, and on connecting, a door publishes a digest
(entity -> version) of everything it has. A door that sees a newer version than its own
fetches that record's retained topic again; one that sees an older version (or a door
that lacks something) publishes its own record again. So copies converge even when the
broker dropped messages or a bridge was down.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from appliance.config.schema import ReplicationConfig
from appliance.control import commands as c
from appliance.control.bus import CommandBus, Jobs
from appliance.control.commands import CommandError
from appliance.control.events import (
    DomainEvents,
    PersonDeleted,
    PersonEnrolled,
    PersonRenamed,
    RulesChanged,
)
from appliance.replication.crypto import SiteKey
from appliance.replication.hlc import Clock, wall_ms
from appliance.replication.records import Record, RecordRefused, Version, newer, rank
from appliance.replication.store import Applied, ReplicaStore, split
from appliance.store.gallery import Gallery
from appliance.transport.mqtt.topics import SiteTopics

log = logging.getLogger(__name__)

BATCH = 200  # records per ApplyRecords command: one transaction, one matcher rebuild
MAX_INBOX = 100_000  # entities waiting to be applied; beyond, the digest brings them later
MAX_DIGEST = 16 * 1024 * 1024  # a digest's size once decompressed
# Records fetched again per digest, one topic each. Not the whole `rec/#` again: a broker
# caps what it queues for one client (Mosquitto: max_queued_messages 1000), so a refetch
# of everything would be cut at the same place again.
FETCH_MAX = 500
ACTOR = "replication"

Publish = Callable[..., Any]


def _ahead(entity: str, a: list[Any] | Version, b: list[Any] | Version) -> bool:
    """The conflict rule on digest entries (hash prefixes)."""
    kind = split(entity)[0]
    return rank(kind, (a[0], a[1], a[2][:16])) > rank(kind, (b[0], b[1], b[2][:16]))


class Replicator:
    def __init__(
        self,
        cfg: ReplicationConfig,
        key: SiteKey,
        device: str,
        prefix: str,
        gallery: Gallery,
        bus: CommandBus,
        jobs: Jobs,
        publish: Publish,
        fetch: Callable[[str, bool], None],
        connected: Callable[[], bool],
        on_applied: Callable[[str, Applied], None],
        embedder: str,
    ) -> None:
        self.cfg = cfg
        self.key = key
        self.device = device
        self.topics = SiteTopics(prefix, cfg.site)
        self.store = ReplicaStore(gallery)
        self.clock = Clock(last=self.store.max_hlc())
        self.bus = bus
        self.jobs = jobs
        self._publish = publish
        self._fetch = fetch
        self._connected = connected
        self.on_applied = on_applied
        self.embedder = embedder
        self._lock = threading.Lock()
        self._inbox: dict[str, Record] = {}
        self._inflight = False
        self._unsent: set[str] = set()
        self._pushed: dict[str, float] = {}
        self._cleared: set[str] = set()
        self._next_digest = 0.0
        self._last_digest = 0.0
        self.counts = {
            "published": 0,
            "received": 0,
            "applied": 0,
            "stale": 0,
            "refused": 0,
            "dropped": 0,
            "digests": 0,
            "fetches": 0,
            "repushed": 0,
        }

    # --- wiring ----------------------------------------------------------------------

    def subscriptions(self) -> tuple[str, ...]:
        return (self.topics.record_filter, self.topics.digest_filter)

    def owns(self, topic: str) -> bool:
        return self.topics.parse(topic) is not None

    def subscribe(self, events: DomainEvents) -> None:
        for kind in (PersonEnrolled, PersonRenamed, PersonDeleted):
            events.subscribe(kind, self._person_changed)
        events.subscribe(RulesChanged, self._rules_changed)

    def status(self) -> dict[str, Any]:
        with self._lock:
            pending = len(self._inbox)
        return {"site": self.cfg.site, "pending": pending, **self.counts}

    # --- out: local changes ----------------------------------------------------------

    def start(self) -> None:
        """Version whatever changed while replication did not run (a CLI write with no
        daemon, a restored file, replication just enabled); published once connected."""
        recs = self.store.scan(self.clock, self.device)
        if recs:
            log.info("replication: %d local change(s) to send", len(recs))
        for r in recs:
            self.send(r)

    def _person_changed(self, e: PersonEnrolled | PersonRenamed | PersonDeleted) -> None:
        if not e.actor.startswith(ACTOR):
            self.local([f"person/{e.person.id}"])

    def _rules_changed(self, e: RulesChanged) -> None:
        if not e.actor.startswith(ACTOR):
            self.local(None)  # a group's delete changes its members too: look at all

    def local(self, entities: list[str] | None) -> list[Record]:
        recs = self.store.scan(self.clock, self.device, entities)
        for r in recs:
            log.info("replication: sending %s %s", "tombstone" if r.tombstone else r.kind, r.key)
            self.send(r)
        return recs

    def topic_of(self, entity: str) -> str:
        kind, _ = split(entity)
        return self.topics.record(kind, self.key.topic_id(entity))

    def send(self, r: Record) -> None:
        if not self._connected():
            with self._lock:
                self._unsent.add(r.entity)
            return
        topic = self.topic_of(r.entity)
        self._publish(topic, self.key.seal(topic, r.to_bytes()), qos=1, retain=True)
        self.counts["published"] += 1

    def on_connected(self) -> None:
        """(frame loop) What could not be sent while away, then a `hello` digest: the
        others answer with theirs, so both sides find what the other lacks at once."""
        with self._lock:
            unsent, self._unsent = self._unsent, set()
        for e in sorted(unsent):
            rec = self.store.current(e)
            if rec is not None:
                self.send(rec)
        self.publish_digest(hello=True)

    # --- in: remote records ----------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        """(MQTT thread) Open, check and queue; nothing here touches the gallery."""
        where = self.topics.parse(topic)
        if where is None:
            return
        what, rest = where
        if not payload:
            return  # a retained record cleared (an expired tombstone)
        try:
            plain = self.key.open(topic, payload)
            if what == "digest":
                self._digest_in(rest, plain)
                return
            kind, _, tid = rest.partition("/")
            rec = Record.from_bytes(plain)
            if rec.kind != kind or self.key.topic_id(rec.entity) != tid:
                raise RecordRefused("the record does not belong to its topic")
            skew = self.clock.skew_s(rec.hlc)
            if skew > self.cfg.max_clock_skew_s:
                raise RecordRefused(f"stamped {skew:.0f} s in the future (a door's clock?)")
        except RecordRefused as exc:
            self._refused(topic, str(exc))
            return
        self.counts["received"] += 1
        with self._lock:
            queued = self._inbox.get(rec.entity)
            if queued is None and len(self._inbox) >= MAX_INBOX:
                self.counts["dropped"] += 1
                return
            if queued is None or newer(rec.version, queued.version, rec.kind):
                self._inbox[rec.entity] = rec
        self.pump()

    def _refused(self, topic: str, reason: str) -> None:
        self.counts["refused"] += 1
        n = self.counts["refused"]
        if n <= 10 or n % 1000 == 0:  # a flood must not flood the log too
            log.warning("replication: refused a message on %s: %s (%d so far)", topic, reason, n)

    def pump(self) -> None:
        """Hand the next batch to the frame loop, one command in flight at a time."""
        with self._lock:
            if self._inflight or not self._inbox:
                return
            keys = list(self._inbox)[:BATCH]
            batch = [self._inbox.pop(k) for k in keys]
            self._inflight = True
        try:
            fut = self.bus.submit(c.ApplyRecords(tuple(batch)), ACTOR)
        except CommandError:  # busy: keep them (unless newer came meanwhile), try soon
            with self._lock:
                for r in batch:
                    q = self._inbox.get(r.entity)
                    if q is None or newer(r.version, q.version, r.kind):
                        self._inbox[r.entity] = r
                self._inflight = False
            self.jobs.call_later(0.2, self.pump)
            return
        fut.add_done_callback(self._done)

    def _done(self, fut: Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            log.error("replication: a batch was not applied: %s (the digest retries)", exc)
        with self._lock:
            self._inflight = False
        self.jobs.call_soon(self.pump)  # next pass of the frame loop: frames in between

    def apply(self, records: list[Record], actor: str) -> dict[str, Any]:
        """(frame loop, the command service) Apply a batch; publish what follows."""
        res = self.store.apply(records, actor, self.clock)
        self.counts["applied"] += res.applied
        self.counts["stale"] += res.stale
        self.counts["refused"] += res.refused
        if res.applied:
            log.info(
                "replication: applied %d record(s) (%d people, %d deleted, %d rules), %d not newer",
                res.applied,
                res.people,
                res.deleted,
                res.rules,
                res.stale,
            )
            for pid, embedders in res.foreign.items():
                other = sorted(embedders - {self.embedder})
                if other and self.embedder not in embedders:
                    log.warning(
                        "replication: person %s has only templates of embedder %s; this "
                        "door runs %s and does not match them: re-enrol them at this door",
                        pid,
                        ", ".join(other),
                        self.embedder,
                    )
            self.on_applied(actor, res)
        if res.renamed_apart:
            self.local(res.renamed_apart)  # the clash's rename, versioned and sent
        return res.as_dict()

    # --- anti-entropy ----------------------------------------------------------------

    def _horizon_ms(self) -> int:
        return int((time.time() - self.cfg.tombstone_days * 86400) * 1000)

    def digest(self, hello: bool = False) -> dict[str, Any]:
        horizon = self._horizon_ms()
        return {
            "origin": self.device,
            "hello": hello,
            "entries": {
                e: [v[0], v[1], v[2][:16]]
                for e, v in self.store.versions().items()
                if v[2] or wall_ms(v[0]) >= horizon  # expired tombstones: not advertised
            },
        }

    def publish_digest(self, hello: bool = False) -> None:
        if not self._connected():
            return
        topic = self.topics.digest(self.device)
        body = zlib.compress(json.dumps(self.digest(hello)).encode(), 6)
        self._publish(topic, self.key.seal(topic, body), qos=0, retain=False)
        self._last_digest = time.monotonic()

    def _digest_in(self, device: str, plain: bytes) -> None:
        d = zlib.decompressobj()
        try:
            obj = json.loads(d.decompress(plain, MAX_DIGEST))
        except (zlib.error, ValueError) as exc:
            raise RecordRefused(f"digest not readable: {exc}") from exc
        if d.unconsumed_tail or not isinstance(obj, dict):
            raise RecordRefused("digest too large or not an object")
        entries = obj.get("entries")
        if obj.get("origin") != device or not isinstance(entries, dict):
            raise RecordRefused("digest of another door, or without entries")
        if device == self.device:
            return
        self.counts["digests"] += 1
        self.jobs.call_soon(lambda: self.compare(entries, bool(obj.get("hello"))))

    def compare(self, theirs: dict[str, Any], hello: bool) -> tuple[list[str], list[str]]:
        """(frame loop) What to fetch (they are ahead) and what to send again (we are)."""
        mine = self.store.versions()
        horizon = self._horizon_ms()
        want, push = [], []
        for e, v in theirs.items():
            if not (isinstance(v, list) and len(v) == 3 and isinstance(v[0], int)):
                continue
            if not (isinstance(v[1], str) and isinstance(v[2], str)):
                continue
            m = mine.get(e)
            if m is None or _ahead(e, v, m):
                with self._lock:
                    q = self._inbox.get(e)
                if q is None or _ahead(e, v, q.version):  # not already on its way in
                    want.append(e)
            elif _ahead(e, m, v):
                push.append(e)  # their copy is older: even of an expired tombstone
        if not hello:  # a fresh door gets the retained records anyway
            push += [
                e for e, v in mine.items() if e not in theirs and (v[2] or wall_ms(v[0]) >= horizon)
            ]
        now = time.monotonic()
        sent = 0
        for e in push:
            if now - self._pushed.get(e, -1e9) < self.cfg.digest_interval_s:
                continue
            rec = self.store.current(e)
            if rec is not None:
                self._pushed[e] = now
                self.send(rec)
                sent += 1
        self.counts["repushed"] += sent
        if want:
            self.counts["fetches"] += 1
            for e in want[:FETCH_MAX]:
                self._fetch(self.topic_of(e), True)
        if hello and now - self._last_digest > 2.0:
            self.jobs.call_later(random.uniform(0.0, 1.0), self.publish_digest)
        if want or sent:
            log.info("replication: digest of a door: %d to fetch, %d sent again", len(want), sent)
        return want, push

    def tick(self) -> None:
        """(frame loop, between frames) The periodic digest; expired tombstones leave
        the broker (their empty retained message), at most 100 per pass."""
        now = time.monotonic()
        if now < self._next_digest:
            return
        self._next_digest = now + self.cfg.digest_interval_s * random.uniform(0.9, 1.1)
        self.publish_digest()
        if not self._connected():
            return
        horizon = self._horizon_ms()
        n = 0
        for e, v in self.store.versions().items():
            if not v[2] and wall_ms(v[0]) < horizon and e not in self._cleared and n < 100:
                self._publish(self.topic_of(e), b"", qos=1, retain=True)
                self._cleared.add(e)
                n += 1
