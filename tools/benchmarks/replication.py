"""replication: doors sharing a gallery through real Mosquittos (tools/broker.py).

Each door here is a `Node`: the real gallery (SQLite), the real replicator and the real
MQTT link, run by a loop like the daemon's frame loop (jobs, then the command bus), but
without camera or models: the figures are replication's own. Templates are random unit
vectors of the device default embedder's size (`common.DIM`, 320 floats). Measured:

- propagation: enrolment acknowledged at A -> B has applied it (its matcher would
  match from the next frame), p50/p95 over `n`, on one broker and across a bridge;
- initial sync: a new door receiving a site of `people` people (2 templates each), and
  the broker's storage for it (retained records, Mosquitto's persistence file);
- revocation: C offline, a delete at A, C reconnects: seconds until C has erased them.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from appliance.config.schema import ReplicationConfig
from appliance.control.bus import CommandBus, Jobs
from appliance.replication.crypto import SiteKey
from appliance.replication.store import Applied
from appliance.replication.sync import Replicator
from appliance.store.gallery import Gallery, Template
from appliance.transport.mqtt.link import MqttLink, Settings
from appliance.transport.mqtt.topics import Topics
from tools.benchmarks.common import DIM
from tools.broker import Bridge, Broker

T = TypeVar("T")
EMBEDDER = "facenet-bench"
SECRET = b"bench-site-secret-0123456789abcdef"


def template(rng: np.random.Generator) -> Template:
    v = rng.standard_normal(DIM).astype(np.float32)
    return Template(v / np.linalg.norm(v), EMBEDDER, "file", {"score": 0.9})


class Node:
    """One door's replication, for the benchmark and the convergence test."""

    def __init__(self, state: Path, port: int, device: str, digest_s: float = 60.0) -> None:
        self.device = device
        self.dir = state
        self.port = port
        self.cfg = ReplicationConfig(enabled=True, site="bench", digest_interval_s=digest_s)
        self.gallery = Gallery(state / "gallery.sqlite3")
        self.bus = CommandBus(100)
        self.jobs = Jobs()
        self.stop_event = threading.Event()
        topics = Topics("appliance", device)
        self.link: MqttLink | None = None
        self.applied = 0
        self.replicator = Replicator(
            self.cfg,
            SiteKey(SECRET, self.cfg.site),
            device,
            "appliance",
            self.gallery,
            self.bus,
            self.jobs,
            lambda *a, **kw: self.link.publish(*a, **kw) if self.link else None,
            lambda topic, once: self.link.fetch(topic, once) if self.link else None,
            lambda: self.link is not None and self.link.connected.is_set(),
            self._applied,
            EMBEDDER,
        )
        settings = Settings(
            "127.0.0.1", port, "5", f"bench-{device}", None, None, False, "", "", "", False, 10, 2.0
        )
        self.link = MqttLink(
            settings,
            topics,
            lambda m: None,
            subscriptions=self.replicator.subscriptions(),
            on_other=lambda m: self.replicator.on_message(m.topic, m.payload),
            on_connected=lambda: self.jobs.call_soon(self.replicator.on_connected),
        )
        self.thread = threading.Thread(target=self._loop, name=f"node-{device}", daemon=True)

    def _applied(self, actor: str, res: Applied) -> None:
        self.applied += res.applied

    def _command(self, cmd: Any, actor: str) -> Any:
        return self.replicator.apply(list(cmd.records), f"replication:{cmd.origin}")

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            self.jobs.run_due()
            self.bus.drain(self._command)
            self.replicator.tick()
            time.sleep(0.005)

    def start(self) -> Node:
        self.replicator.start()
        self.link.start()
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.link.stop()
        self.gallery.close()

    def do(self, fn: Callable[[], T], timeout: float = 60.0) -> T:
        """Run `fn` in the node's loop (its one SQLite writer), return its result."""
        fut: Future[T] = Future()

        def job() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self.jobs.call_soon(job)
        return fut.result(timeout)

    # --- local changes, as a command would make them ---------------------------------

    def enrol(self, name: str, templates: list[Template]) -> str:
        def run() -> str:
            p = self.gallery.enrol(name, templates, "bench")
            self.replicator.local([f"person/{p.id}"])
            return p.id

        return self.do(run)

    def rename(self, who: str, new: str) -> None:
        def run() -> None:
            p = self.gallery.rename(who, new, "bench")
            self.replicator.local([f"person/{p.id}"])

        self.do(run)

    def delete(self, who: str) -> str:
        def run() -> str:
            p = self.gallery.delete(who, "bench")
            self.replicator.local([f"person/{p.id}"])
            return p.id

        return self.do(run)

    def people(self) -> dict[str, str]:
        return self.do(lambda: {p.id: p.name for p in self.gallery.persons()})

    def has(self, pid: str) -> bool:
        return self.do(
            lambda: bool(
                self.gallery.db.execute("SELECT 1 FROM persons WHERE id = ?", (pid,)).fetchone()
            )
        )

    def state(self) -> dict[str, Any]:
        """Versions and content of everything: equal for doors that converged."""
        st = self.replicator.store
        return self.do(lambda: {e: (v, st.body(e)) for e, v in st.versions().items()})


def until(pred: Callable[[], Any], timeout: float, poll: float = 0.005) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return time.monotonic()
        time.sleep(poll)
    raise TimeoutError("not within the time allowed")


def _pcts(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "n": len(xs),
        "p50_s": round(statistics.median(xs), 4),
        "p95_s": round(xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))], 4),
        "max_s": round(xs[-1], 4),
    }


def propagation(a: Node, b: Node, n: int, rng: np.random.Generator) -> dict[str, float]:
    times = []
    for i in range(n):
        pid = a.enrol(
            f"prop-{a.device}-{i}-{rng.integers(1 << 30)}", [template(rng), template(rng)]
        )
        t0 = time.monotonic()
        times.append(until(lambda pid=pid: b.has(pid), 30) - t0)
    return _pcts(times)


def measure(work: Path, n: int = 20, people: int = 1000) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {}
    hub = Broker(work / "hub")
    hub.start()
    site = Broker(work / "site", bridge=Bridge(hub.port, ("appliance/site/#",)))
    site.start()
    nodes: list[Node] = []
    try:
        a = Node(work / "a", site.port, "door-a").start()
        b = Node(work / "b", site.port, "door-b").start()
        h = Node(work / "h", hub.port, "door-h").start()
        nodes += [a, b, h]
        for x in (a, b, h):
            until(lambda x=x: x.link.connected.is_set(), 20)
        out["propagation_one_broker"] = propagation(a, b, n, rng)
        out["propagation_bridge"] = propagation(a, h, n, rng)
        # a site of `people`, 2 templates each, enrolled at A (one scan, one publish each)
        t0 = time.monotonic()

        def populate() -> int:
            for i in range(people):
                a.gallery.enrol(f"site-{i}", [template(rng), template(rng)], "bench")
            return len(a.replicator.local(None))

        sent = a.do(populate, 600)
        total = people + 2 * n
        until(lambda: len(b.people()) >= total, 300, 0.2)
        out["site"] = {
            "people": total,
            "records_sent": sent,
            "populate_s": round(time.monotonic() - t0, 2),
        }
        time.sleep(2.5)  # Mosquitto's autosave_interval is 1 s
        db = work / "site" / "mosquitto.db"
        out["site"]["broker_persistence_bytes"] = db.stat().st_size if db.exists() else None
        first = next(iter(a.people()))
        sample = a.do(lambda: a.replicator.store.current(f"person/{first}"))
        topic = a.replicator.topic_of(sample.entity)
        out["site"]["person_record_bytes"] = len(a.replicator.key.seal(topic, sample.to_bytes()))
        # a new door joins the site broker: everything, from retained records
        t0 = time.monotonic()
        new = Node(work / "new", site.port, "door-new").start()
        nodes.append(new)
        t1 = until(lambda: len(new.people()) >= total, 300, 0.1)
        out["initial_sync"] = {"people": total, "seconds": round(t1 - t0, 2)}
        # revocation: the new door goes offline, A deletes, it reconnects
        new.close()
        nodes.remove(new)
        victim = a.delete("site-7")
        until(lambda: not b.has(victim), 30)
        t0 = time.monotonic()
        back = Node(work / "new", site.port, "door-new").start()
        nodes.append(back)
        until(lambda: back.link.connected.is_set(), 20)
        tc = time.monotonic()
        t1 = until(lambda: not back.has(victim), 60)
        out["revocation_after_reconnect"] = {
            "seconds_after_connect": round(t1 - tc, 3),
            "seconds_after_start": round(t1 - t0, 3),
        }
    finally:
        for x in nodes:
            x.close()
        site.stop()
        hub.stop()
    return out


def bench_replication(n: int = 20, people: int = 1000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return measure(Path(tmp), n, people)
