"""The composition root: build every component from the Config, start them in order,
stop them in reverse. Nothing else constructs adapters, so a test or a tool builds the
same door with other parts (a fake link, no camera) without a second wiring."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.access.decider import Decider
from appliance.access.events import Origin
from appliance.access.policy import AccessPolicy, Rules
from appliance.access.rulebook import RuleBook
from appliance.app_transports import Transports
from appliance.camera.grabber import Camera
from appliance.camera.sources import make_source
from appliance.config.schema import Config
from appliance.control.bus import CommandBus, Jobs
from appliance.control.events import (
    Decided,
    DomainEvents,
    DoorEvent,
    PersonDeleted,
    SettingsChanged,
)
from appliance.control.service import CommandService
from appliance.control.settings import LiveSettings
from appliance.door import open_door
from appliance.frame_loop import GALLERY_CHECK_S, FrameLoop
from appliance.health import Meter
from appliance.identity.capture import CaptureSessions
from appliance.identity.recogniser import Recogniser
from appliance.identity.tracker import Tracker, VoteRules
from appliance.sdnotify import Notifier
from appliance.store.event_log import EVENTS_FILE, EventLog, Retention
from appliance.store.nonces import Nonces
from appliance.store.outbox import Outbox
from appliance.transport.http.live import LiveTap, LiveView
from appliance.transport.local import LocalServer, socket_path
from appliance.transport.mqtt.signing import read_secret
from appliance.transport.mqtt.topics import Topics, device_id
from appliance.vision.imageio import encode_jpeg

log = logging.getLogger(__name__)

QUEUE = 100  # commands waiting for the frame loop; more answer `busy`
PASSAGE_CHECK_S = 1.0  # how often passage mode's schedule is looked at


def vote_rules(cfg: Config) -> VoteRules:
    d = cfg.decision
    return VoteRules(
        d.min_frames,
        max(d.unknown_frames, d.min_frames),
        max(d.max_frames, d.min_frames),
        d.track_iou,
        d.max_missed,
    )


class App(Transports):
    """One door: recognition, decisions, commands, MQTT, Home Assistant, the local socket."""

    def __init__(
        self,
        cfg: Config,
        config_path: Path | None = None,
        source: str | None = None,
        max_frames: int = 0,
    ) -> None:
        self.source = source or cfg.camera.source
        self.device = device_id(cfg.mqtt.device_id)
        self.topics = Topics(cfg.mqtt.prefix, self.device)
        self.boot = uuid.uuid4().hex
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.notifier = Notifier()
        self.events = DomainEvents()
        self.jobs = Jobs()
        self.bus = CommandBus(QUEUE)
        self.settings = LiveSettings(cfg, config_path, self.events)
        state = cfg.storage.path()
        state.mkdir(parents=True, exist_ok=True)
        o = cfg.outbox
        self.outbox = Outbox(
            state / "outbox.sqlite3",
            o.max_events,
            o.max_age_days * 86400,
            int(o.min_free_mb * 1e6),
            int(o.reserve_mb * 1e6),
        )
        self.nonces = Nonces(self.outbox.db, self.outbox.lock)
        ev = cfg.events
        self.event_log = EventLog(
            state / EVENTS_FILE,
            Retention(ev.retention_days, ev.max_events, ev.snapshots, ev.snapshot_retention_days),
        )
        # The pins early, before the models load: the relay sits at its locked level
        # from here on (a fail-safe maglock is released until a process drives it).
        self.door = open_door(cfg.door, self._door_event)
        self.recogniser = Recogniser.open(cfg, events=self.events)
        self.recogniser.check_ready()  # fail at start, not on the first face
        self.key = read_secret(cfg.commands.key_file, "command-key")
        if cfg.commands.require_signature and self.key is None:
            log.warning(
                "no command key (commands.key_file or credential 'command-key'): "
                "every command will be refused"
            )
        self.tracker = Tracker(vote_rules(cfg))
        c = cfg.camera
        self.camera = Camera(
            lambda: make_source(self.source, c.width, c.height, c.realtime, c.stall_s),
            reopen_max_s=c.reopen_max_s,
            stall_s=c.stall_s,
        )
        self.stats = {"events": 0, "suppressed": 0}
        self.rules = RuleBook(self.recogniser.gallery, cfg, self.events)
        self.policy = AccessPolicy(Rules.from_config(cfg), self.rules.check)
        models = {
            "detector": self.recogniser.pipeline.detector.version,
            "embedder": self.recogniser.embedder,
            "appliance": __version__,
        }
        self.origin = Origin(cfg.recognition.mode, self.source, self.device, models)
        self.decider = Decider(self.policy, self.origin, self.events, self.stats)
        self.capture = CaptureSessions(self.recogniser, self.events, cfg.commands.capture_timeout_s)
        self.meter = Meter()
        self.replication = self._build_replication(cfg)
        self._build_mqtt(cfg, state)
        self.service = CommandService(
            self.recogniser,
            self.settings,
            self.capture,
            self.health.status,
            self.reload,
            self.rules,
            self.door,
            self.event_log,
            self.replication,
        )
        self.local = LocalServer(socket_path(cfg), self.bus)
        self.tap = LiveTap(self.camera)  # the live view draws the frame the loop processed
        self.live = LiveView(cfg.web.live_fps)
        self.web = self._build_web(cfg, state) if cfg.web.enabled else None
        self.loop = FrameLoop(
            camera=self.tap,  # type: ignore[arg-type]
            recogniser=self.recogniser,
            tracker=self.tracker,
            decider=self.decider,
            capture=self.capture,
            bus=self.bus,
            jobs=self.jobs,
            run_command=self.service.execute,
            notifier=self.notifier,
            meter=self.meter,
            gates=lambda: self.cfg.decision,
            stall_s=lambda: self.cfg.camera.stall_s,
            max_frames=max_frames,
        )
        self._subscribe()
        self._next_state = 0.0
        self._next_passage = 0.0
        self._next_rules = 0.0

    @property
    def cfg(self) -> Config:
        return self.settings.cfg

    def _door_event(self, payload: dict[str, Any]) -> None:
        """From the door's own thread: stored in the outbox at once (the frame loop may
        be stuck on a hung camera), then announced to the frame loop's subscribers."""
        payload = {**payload, "device": self.device, "camera": self.source}
        self.outbox.add(payload["event_id"], self.topics.event, payload, self.boot)
        log.info("door event %s: %s (%s)", payload["event_id"], payload["event"], payload["reason"])
        self.jobs.call_soon(lambda: self.events.publish(DoorEvent(payload)))
        self.jobs.call_soon(self.publish_state)

    def _on_decided(self, e: Decided) -> None:
        p = e.payload
        if self.door is not None and p["decision"] == "granted":
            self.door.grant(p["event_id"], p["person_id"], p["name"])

    def _log_decision(self, e: Decided) -> None:
        jpeg = None
        if self.cfg.events.snapshots and e.face is not None:
            jpeg = encode_jpeg(e.face)
        self.event_log.add_decision(e.payload, jpeg)
        self.live.decided(e.payload)

    def _counters(self) -> dict[str, int]:
        return {
            "frames": self.loop.frames,
            "events": self.stats["events"],
            "suppressed": self.stats["suppressed"],
            "commands": self.service.counts["commands"],
            "commands_refused": self.service.counts["commands_refused"]
            + self.mqtt_commands.refused,
            "commands_busy": self.bus.busy,
            "frame_errors": self.loop.frame_errors,
        }

    def _subscribe(self) -> None:
        """Who follows what. The order matters once: the outbox stores a decision
        before anything publishes about it (an event logged is an event kept)."""
        ev = self.events
        ev.subscribe(
            Decided,
            lambda e: self.outbox.add(
                e.payload["event_id"], self.topics.event, e.payload, self.boot
            ),
        )
        ev.subscribe(Decided, self._on_decided)
        ev.subscribe(Decided, self._log_decision)
        ev.subscribe(DoorEvent, lambda e: self.event_log.add_door(e.payload))
        self.retained.subscribe(ev)
        self.ha.subscribe(ev)
        ev.subscribe(PersonDeleted, self._erase)
        ev.subscribe(SettingsChanged, self._settings_changed)
        if self.replication is not None:
            self.replication.subscribe(ev)

    def _erase(self, e: PersonDeleted) -> None:
        self.policy.forget(e.person.id)
        self.rules.load()  # their rights went with them (ON DELETE CASCADE)
        n = self.outbox.redact_person(e.person.id, e.person.name)
        if n:
            log.info("erased person %s from %d undelivered event(s)", e.person.id, n)
        n = self.event_log.forget(e.person.id, e.person.name)
        log.info("erased person %s from the event history (%d event(s))", e.person.id, n)

    def _settings_changed(self, e: SettingsChanged) -> None:
        self.recogniser.cfg = e.cfg
        self.tracker.rules = vote_rules(e.cfg)
        self.policy.rules = Rules.from_config(e.cfg)
        self.rules.configure(e.cfg)
        self.rules.load()
        self.origin = Origin(e.cfg.recognition.mode, self.source, self.device, self.origin.models)
        self.decider.origin = self.origin
        self.capture.timeout_s = e.cfg.commands.capture_timeout_s

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self.door is not None:
            self.door.start()  # first: the exit button works while the rest starts
        self.camera.start()
        if self.replication is not None:
            self.replication.start()
        self.link.start()
        self.delivery = threading.Thread(
            target=self.link.deliver, args=(self.outbox, self.stop), name="outbox", daemon=True
        )
        self.delivery.start()
        self.local.start()
        if self.web is not None:
            self.web.start()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """READY when models and gallery are loaded (the constructor did that), MQTT is
        connected and the camera gives frames, or either is in its retry loop with
        status reported."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self.stop.is_set():
            if self.link.connected.is_set() and self.camera.state == "ok":
                break
            time.sleep(0.05)
        status = f"camera {self.camera.state}, mqtt {self.link.state}"
        self.notifier.ready(f"running; {status}")
        log.info(
            "ready: %s, %d people enrolled, device %s",
            status,
            self.recogniser.matcher.size,
            self.device,
        )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())
        self.start()
        try:
            self.wait_ready()
            self.loop.run(self.stop, self._between)
        finally:
            self.shutdown()
        return 0

    def _between(self) -> None:
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.reload()
        now = time.monotonic()
        if now >= self._next_rules:  # as often as the gallery is looked at, not per frame
            self.rules.refresh()
            self._next_rules = now + GALLERY_CHECK_S
        self.live.offer(self.tap.last, self.tracker.tracks)
        if self.replication is not None:
            self.replication.tick()
        if self.door is not None and now >= self._next_passage:
            self.door.set_passage(self.rules.passage_open(time.time()))
            self._next_passage = now + PASSAGE_CHECK_S
        if now >= self._next_state:
            self.publish_state()
            self._next_state = now + self.cfg.mqtt.state_interval_s

    def publish_state(self) -> None:
        try:
            st = self.health.status()
        except Exception:
            log.exception("status failed")
            return
        self.link.publish(self.topics.state, json.dumps(st), qos=0, retain=True)
        self.notifier.status(self.health.summary(st))

    def reload(self) -> int:
        """SIGHUP or the `reload` command: re-read the config's live settings and the
        gallery. Models, camera and broker settings need a restart (logged)."""
        self.notifier.reloading()
        if not self.settings.reload():
            self.notifier.ready("running; reload refused: config errors")
            return self.recogniser.matcher.size
        self.recogniser.refresh(force=True, actor="reload")
        log.info("reloaded: %d people", self.recogniser.matcher.size)
        self.notifier.ready("running; reloaded")
        return self.recogniser.matcher.size

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.stop.set()
        if self.web is not None:
            self.web.stop()
        self.local.stop()
        self.capture.cancel("the daemon is stopping")
        self.loop.finish()
        self.jobs.run_all()  # e.g. a deleted person's last-seen topic still to clear
        self.camera.stop()
        if self.door is not None:
            self.door.stop()  # relocks; its last events reach the outbox
        self.delivery.join(timeout=5)
        self.publish_state()
        self.link.stop()
        self.outbox.close()
        self.event_log.close()
        self.recogniser.close()
        log.info("stopped: %d frames, %d events", self.loop.frames, self.stats["events"])
