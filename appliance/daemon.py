"""The daemon: camera -> detect -> track -> embed -> vote -> decide -> outbox -> MQTT.

One thread runs the frame loop and owns the models (TFLite interpreters are not
thread-safe), so MQTT commands are queued to it and run between frames. The camera has
its own grabber thread (newest frame wins), and the outbox its own delivery thread.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import queue
import signal
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance import __version__
from appliance.camera.sources import Camera, make_source
from appliance.config.schema import Config, ConfigError, load
from appliance.identity.gates import EnrolmentRefused, check_gates, pick_face
from appliance.identity.recogniser import FaceService
from appliance.identity.tracker import Tracker, Verdict, VoteRules
from appliance.sdnotify import Notifier
from appliance.store.gallery import GalleryError, Template
from appliance.store.outbox import Outbox
from appliance.transport.mqtt import discovery
from appliance.transport.mqtt.link import Incoming, MqttLink, Settings, client_id
from appliance.transport.mqtt.signing import CommandRejected, read_secret, verify
from appliance.transport.mqtt.topics import Topics, slug
from appliance.vision.imageio import ImageError
from appliance.vision.pipeline import Face

log = logging.getLogger(__name__)

MAX_IMAGES = 10
MAX_IMAGE_B64 = 8 * 1024 * 1024
LIVE_SETTINGS = {
    "recognition.stranger_accept",
    "recognition.threshold",
    "recognition.margin",
    "recognition.mode",
    "decision.min_frames",
    "decision.cooldown_s",
    "decision.unknown_frames",
}


def device_id(cfg: Config) -> str:
    return slug(cfg.mqtt.device_id or socket.gethostname())


def vote_rules(cfg: Config) -> VoteRules:
    d = cfg.decision
    return VoteRules(
        d.min_frames,
        max(d.unknown_frames, d.min_frames),
        max(d.max_frames, d.min_frames),
        d.track_iou,
        d.max_missed,
    )


class Daemon:
    def __init__(
        self,
        cfg: Config,
        config_path: Path | None = None,
        source: str | None = None,
        max_frames: int = 0,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.source = source or cfg.camera.source
        self.max_frames = max_frames
        self.device = device_id(cfg)
        self.topics = Topics(cfg.mqtt.prefix, self.device)
        self.boot = uuid.uuid4().hex
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.commands: queue.Queue[Incoming] = queue.Queue(maxsize=100)
        self.notifier = Notifier()
        self.stats: dict[str, Any] = {
            "frames": 0,
            "events": 0,
            "suppressed": 0,
            "commands": 0,
            "commands_refused": 0,
            "commands_busy": 0,
            "frame_errors": 0,
        }
        self.stage_ms: dict[str, float] = {}
        self.last_person: dict[str, Any] | None = None
        self.cooldown: dict[str, float] = {}
        self.attendance: dict[str, tuple[str, str]] = {}  # person -> (day, last state)
        self.capture: dict[str, Any] | None = None
        self.jobs: queue.Queue[Any] = queue.Queue()  # callables run by the frame loop
        self.started = time.time()
        self.ha_name: tuple[str, float] | None = None  # (name, when set) from the HA text
        self._warned_disk = False
        self._hung_logged = False

    # --- lifecycle -------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        state = cfg.storage.path()
        state.mkdir(parents=True, exist_ok=True)
        self.service = FaceService.open(cfg)
        self.service.thresholds()  # fail at start, not on the first face, if uncalibrated
        self.outbox = Outbox(
            state / "outbox.sqlite3",
            cfg.outbox.max_events,
            cfg.outbox.max_age_days * 86400,
            int(cfg.outbox.min_free_mb * 1e6),
            int(cfg.outbox.reserve_mb * 1e6),
        )
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
        m = cfg.mqtt
        password = read_secret(m.password_file, "mqtt-password")
        ha = cfg.homeassistant
        subs: tuple[str, ...] = ()
        if ha.discovery:
            subs = (f"{ha.discovery_prefix}/status",)
            if ha.allow_enrol:
                t = discovery.ha_topics(self.topics)
                subs += (t["enrol_name"], t["enrol_press"])
        self.link = MqttLink(
            Settings(
                m.host,
                m.port,
                m.protocol,
                client_id(self.device),
                m.username or None,
                password or None,
                m.tls,
                m.ca_file,
                m.cert_file,
                m.key_file,
                m.tls_insecure,
                m.keepalive,
                m.reconnect_max_s,
            ),
            self.topics,
            self._enqueue,
            subscriptions=subs,
            on_other=self._on_other,
            on_connected=lambda: self.jobs.put(self._publish_discovery),
        )
        self.camera.start()
        self.link.start()
        self.delivery = threading.Thread(
            target=self.link.deliver, args=(self.outbox, self.stop), name="outbox", daemon=True
        )
        self.delivery.start()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """READY when models and gallery are loaded (setup did that), MQTT is connected and
        the camera gives frames, or either is in its retry loop with status reported."""
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
            self.service.matcher.size,
            self.device,
        )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())
        self.setup()
        try:
            self.wait_ready()
            self.loop()
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.stop.set()
        for v in self.tracker.expire_all():
            self._emit(v)
        self.camera.stop()
        self.delivery.join(timeout=5)
        self._publish_state()
        self.link.stop()
        self.outbox.close()
        self.service.close()
        log.info("stopped: %d frames, %d events", self.stats["frames"], self.stats["events"])

    def reload(self) -> None:
        """SIGHUP or the `reload` command: re-read the config's live settings and the
        gallery. Models, camera and broker settings need a restart (logged)."""
        self.notifier.reloading()
        if self.config_path is not None:
            try:
                new = load(self.config_path)
            except ConfigError as exc:
                log.error("reload refused, config has errors: %s", "; ".join(exc.problems))
                self.notifier.ready("running; reload refused: config errors")
                return
            for section in ("models", "camera", "mqtt", "storage"):
                if getattr(new, section) != getattr(self.cfg, section):
                    log.warning("reload: '%s' changed; it takes effect on restart", section)
            self.cfg = dataclasses.replace(
                self.cfg,
                recognition=new.recognition,
                decision=new.decision,
                enrolment=new.enrolment,
                commands=new.commands,
                outbox=new.outbox,
            )
            self.service.cfg = self.cfg
            self.tracker.rules = vote_rules(self.cfg)
        with self.service.lock:
            from appliance.identity.matcher import Matcher
            from appliance.identity.recogniser import COMBINE

            self.service.matcher = Matcher(
                self.service.gallery.template_set(self.service.embedder), COMBINE
            )
        log.info("reloaded: %d people", self.service.matcher.size)
        self.notifier.ready("running; reloaded")

    # --- the frame loop --------------------------------------------------------------

    def loop(self) -> None:
        next_state = 0.0
        self._t_last = time.monotonic()
        fps = 0.0
        dog = self.notifier.watchdog_interval()
        next_dog = 0.0
        while not self.stop.is_set():
            self._drain_jobs()
            if dog is not None and time.monotonic() >= next_dog and self._camera_alive():
                self.notifier.watchdog()  # from the frame loop: a hung pipeline is restarted
                next_dog = time.monotonic() + dog
            self._drain_commands()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            now = time.monotonic()
            if now >= next_state:
                self._publish_state(fps)
                next_state = now + self.cfg.mqtt.state_interval_s
            frame = self.camera.latest(timeout=0.2)
            if frame is None:
                for v in self.tracker.expire():
                    self._emit(v)
                continue
            try:
                fps = self._process(frame, fps)
            except Exception:  # one bad frame must not take the door down
                self.stats["frame_errors"] += 1
                if (
                    self.stats["frame_errors"] in (1, 10, 100)
                    or self.stats["frame_errors"] % 1000 == 0
                ):
                    log.exception(
                        "frame %d failed (%d so far)", frame.index, self.stats["frame_errors"]
                    )
            if self.max_frames and self.stats["frames"] >= self.max_frames:
                self.stop.set()

    def _camera_alive(self) -> bool:
        """False once a camera read has hung for 3x `camera.stall_s`: the watchdog ping
        is then withheld, so systemd restarts the service (the only cure for a driver
        stuck inside read()). A camera that fails and reopens is alive: unplugged, it
        retries with backoff and says so in status instead of restarting in a loop."""
        blocked = self.camera.blocked_s()
        hung = blocked > 3 * self.cfg.camera.stall_s
        if hung and not self._hung_logged:
            log.error(
                "camera read blocked for %.0f s; withholding the watchdog ping so "
                "systemd restarts the service",
                blocked,
            )
        self._hung_logged = hung
        return not hung

    def _process(self, frame: Any, fps: float) -> float:
        pipe = self.service.pipeline
        t0 = time.perf_counter()
        dets = pipe.detector.detect(frame.image)
        t1 = time.perf_counter()
        wall = time.time() - (time.monotonic() - frame.captured)
        tracks = self.tracker.update([d.box for d in dets], frame.index, wall)
        faces = pipe.faces(frame.image, embed=False, detections=dets)
        by_det = {id(f.detection): f for f in faces}
        todo: list[tuple[Face, Any]] = []
        for d, tr in zip(dets, tracks, strict=True):
            f = by_det[id(d)]
            q = f.quality
            if (
                tr.decided
                or q.eye_distance < self.cfg.decision.min_eye_distance
                or q.frontal < self.cfg.decision.min_frontal
            ):
                continue
            todo.append((f, tr))
        t2 = time.perf_counter()
        if todo:
            vecs = pipe.embedder.embed(np.stack([f.aligned for f, _ in todo]))
            t3 = time.perf_counter()
            matches = self.service.match(vecs)
            for (f, tr), m, v in zip(todo, matches, vecs, strict=True):
                f.embedding = v
                verdict = self.tracker.vote(tr, m, f.quality.score * f.quality.frontal)
                if verdict:
                    self._emit(verdict, f)
        else:
            t3 = t2
        t4 = time.perf_counter()
        if self.capture is not None:
            self._capture_step(faces, frame.image)
        for v in self.tracker.expire():
            self._emit(v)
        self.stats["frames"] += 1
        for k, a, b in (
            ("detect", t0, t1),
            ("align", t1, t2),
            ("embed", t2, t3),
            ("match_decide", t3, t4),
        ):
            self.stage_ms[k] = 0.9 * self.stage_ms.get(k, (b - a) * 1e3) + 0.1 * (b - a) * 1e3
        t_now = time.monotonic()
        dt = max(t_now - self._t_last, 1e-6)
        self._t_last = t_now
        return 0.9 * fps + 0.1 / dt if fps else 1 / dt

    # --- Home Assistant ----------------------------------------------------------------

    def _drain_jobs(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            try:
                job()
            except Exception:  # a failed side job must not stop the door
                log.exception("background job failed")

    def _people_file(self) -> Path:
        return self.cfg.storage.path() / "ha_people.json"

    def _publish_discovery(self) -> None:
        ha = self.cfg.homeassistant
        if not ha.discovery:
            return
        people = [(p.id, p.name) for p in self.service.gallery.persons()]
        name = ha.device_name or f"Door {self.device}"
        for topic, payload in discovery.payloads(
            self.topics,
            ha.discovery_prefix,
            name,
            snapshots=self.cfg.decision.snapshot,
            allow_enrol=ha.allow_enrol,
            people=people,
        ):
            self.link.publish(topic, payload, qos=1, retain=True)
        # people deleted while the daemon was not running
        try:
            before = set(json.loads(self._people_file().read_text()))
        except (OSError, ValueError):
            before = set()
        for pid in before - {p for p, _ in people}:
            self._remove_person_entity(pid)
        try:
            self._people_file().write_text(json.dumps(sorted(p for p, _ in people)))
        except OSError as exc:
            log.warning("cannot record Home Assistant entities: %s", exc)
        log.info("Home Assistant discovery published: %d people", len(people))

    def _remove_person_entity(self, person_id: str) -> None:
        ha = self.cfg.homeassistant
        self.link.publish(
            discovery.removal(self.topics, ha.discovery_prefix, person_id), "", qos=1, retain=True
        )
        # Clear the retained last-seen time only after Home Assistant has dropped the
        # sensor: an empty payload reaching a live timestamp sensor logs a warning there.
        topic = discovery.person_last_seen_topic(self.topics, person_id)
        t = threading.Timer(
            5.0, lambda: self.jobs.put(lambda: self.link.publish(topic, "", qos=1, retain=True))
        )
        t.daemon = True
        t.start()

    def _on_other(self, msg: Incoming) -> None:
        """Network thread: Home Assistant's status and its enrol text/button."""
        ha = self.cfg.homeassistant
        if msg.topic == f"{ha.discovery_prefix}/status":
            if msg.payload == b"online":  # HA restarted: send discovery again, spread out
                delay = 1.0 + 4.0 * (uuid.uuid4().int % 1000) / 1000
                threading.Timer(delay, lambda: self.jobs.put(self._publish_discovery)).start()
            return
        t = discovery.ha_topics(self.topics)
        if msg.topic == t["enrol_name"]:
            name = msg.payload.decode(errors="replace").strip()[:64]
            self.ha_name = (name, time.monotonic()) if name else None
            self.link.publish(t["enrol_name_state"], name, qos=1, retain=False)
        elif msg.topic == t["enrol_press"]:
            self.jobs.put(self._ha_enrol)

    def _ha_enrol(self) -> None:
        """Enrol whoever stands at the door under the name typed in Home Assistant.

        Safe enough to offer because: it is off unless `homeassistant.allow_enrol`; it
        only captures from this device's own camera (someone must physically stand
        there, a photo cannot be injected); the name must have been set in the last
        2 minutes; the quality gates and the duplicate check apply; and it is audited
        as `homeassistant`. Deleting or renaming people is not possible from HA.
        """
        if not self.cfg.homeassistant.allow_enrol or self.capture is not None:
            return
        if not self.ha_name or time.monotonic() - self.ha_name[1] > 120:
            log.warning("Home Assistant enrol pressed without a recent name; ignored")
            return
        name = self.ha_name[0]
        self.ha_name = None
        rid = f"homeassistant-{uuid.uuid4().hex[:8]}"
        self._start_capture(
            name, 3, False, {}, Incoming(self.topics.command("enroll"), b"", None, None), rid
        )

    # --- decisions and events --------------------------------------------------------

    def _emit(self, v: Verdict, face: Face | None = None) -> None:
        cfg = self.cfg
        now = time.time()
        decision = "unknown"
        person = None
        if v.person_id:
            person = next((p for p in self.service.gallery.persons() if p.id == v.person_id), None)
            last = self.cooldown.get(v.person_id, 0.0)
            if now - last < cfg.decision.cooldown_s:
                self.stats["suppressed"] += 1
                log.debug("track %d: person %s within cooldown, no event", v.track.id, v.person_id)
                return
            self.cooldown[v.person_id] = now
            if cfg.recognition.mode == "attendance":
                day = time.strftime("%Y-%m-%d", time.localtime(now))
                prev = self.attendance.get(v.person_id)
                decision = (
                    "check_out" if prev and prev[0] == day and prev[1] == "check_in" else "check_in"
                )
                self.attendance[v.person_id] = (day, decision)
            else:
                groups = cfg.decision.allowed_groups
                group = person.meta.get("group") if person else None
                decision = "granted" if not groups or group in groups else "denied"
        event_id = str(uuid.uuid4())
        payload: dict[str, Any] = {
            "event_id": event_id,
            "type": cfg.recognition.mode,
            "decision": decision,
            "person_id": v.person_id,
            "name": v.name,
            "candidate": v.last.candidate,
            "score": round(v.score, 4),
            "margin": round(v.margin, 4),
            "threshold": round(v.threshold, 4),
            "margin_required": round(v.last.thresholds.margin, 4),
            "frames": v.frames,
            "box": [round(float(x), 1) for x in v.track.box],
            "first_seen": round(v.track.first_seen, 3),
            "decided": round(now, 3),
            "camera": self.source,
            "device": self.device,
            "models": {
                "detector": self.service.pipeline.detector.version,
                "embedder": self.service.embedder,
                "appliance": __version__,
            },
            "replayed": False,
        }
        self.outbox.add(event_id, self.topics.event, payload, self.boot)
        self.stats["events"] += 1
        log.info(
            "decision %s: %s (person %s, cosine %.3f, %d frames)",
            event_id,
            decision,
            v.person_id or "-",
            v.score,
            v.frames,
        )
        if v.person_id and decision != "denied":
            self.link.publish(
                discovery.person_last_seen_topic(self.topics, v.person_id),
                time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
                qos=1,
                retain=True,
            )
        if v.person_id:
            self.last_person = {
                "name": v.name,
                "person_id": v.person_id,
                "score": payload["score"],
                "time": now,
                "event_id": event_id,
                "decision": decision,
            }
            self.link.publish(
                self.topics.last_person, json.dumps(self.last_person), qos=1, retain=True
            )
        if cfg.decision.snapshot and face is not None:
            jpg = cv2.imencode(".jpg", cv2.cvtColor(face.aligned, cv2.COLOR_RGB2BGR))[1]
            self.link.publish(self.topics.snapshot, jpg.tobytes(), qos=0, retain=True)

    def status(self, fps: float = 0.0) -> dict[str, Any]:
        th = self.service.thresholds()
        return {
            "device": self.device,
            "version": __version__,
            "boot": self.boot,
            "time": round(time.time(), 3),
            "mode": self.cfg.recognition.mode,
            "uptime_s": round(time.time() - self.started, 1),
            "fps": round(fps, 2),
            "stage_ms": {k: round(v, 2) for k, v in self.stage_ms.items()},
            "camera": self.camera.status(),
            "mqtt": self.link.state,
            "outbox": {
                "depth": self.outbox.depth(),
                **self.outbox.counters(),
                "error": self.outbox.last_error,
            },
            "storage": self._storage_status(),
            "gallery": {
                "people": self.service.matcher.size,
                "templates": self.service.matcher.template_count,
            },
            "thresholds": th.as_dict(),
            "counters": dict(self.stats),
            "last_person": self.last_person,
        }

    def _storage_status(self) -> dict[str, Any]:
        """Free space where gallery and outbox live; `low` below outbox.min_free_mb."""
        free = self.outbox.free_bytes()
        low = free is not None and free < self.cfg.outbox.min_free_mb * 1e6
        if low and not self._warned_disk:
            log.warning(
                "state directory %s is nearly full: %s bytes free", self.cfg.storage.path(), free
            )
        self._warned_disk = low
        return {"free_bytes": free, "low": low}

    def _publish_state(self, fps: float = 0.0) -> None:
        try:
            st = self.status(fps)
        except Exception:
            log.exception("status failed")
            return
        self.link.publish(self.topics.state, json.dumps(st), qos=0, retain=True)
        self.notifier.status(
            f"{st['fps']} fps, camera {st['camera'].get('state')}, "
            f"mqtt {st['mqtt']}, outbox {st['outbox']['depth']}"
        )

    # --- commands --------------------------------------------------------------------

    def _enqueue(self, msg: Incoming) -> None:
        try:
            self.commands.put_nowait(msg)
        except queue.Full:
            self.stats["commands_busy"] += 1  # only the network thread writes this one
            name = self.topics.command_name(msg.topic) or "unknown"
            self._reply(msg, name, None, error=("busy", "too many commands queued"))

    def _drain_commands(self) -> None:
        while True:
            try:
                msg = self.commands.get_nowait()
            except queue.Empty:
                return
            self._handle(msg)

    def _reply(
        self,
        msg: Incoming,
        name: str,
        rid: str | None,
        result: Any = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {"request_id": rid, "command": name, "ok": error is None}
        if error:
            body["error"] = {"code": error[0], "message": error[1]}
        else:
            body["result"] = result
        topic = msg.response_topic or self.topics.reply(name)
        self.link.publish(topic, json.dumps(body), qos=1, response=msg)

    def _handle(self, msg: Incoming) -> None:
        name = self.topics.command_name(msg.topic) or ""
        rid = None
        try:
            if name not in HANDLERS:
                rid = _peek_request_id(msg.payload)
                raise CommandRejected("unknown_command", f"unknown command {name!r}", rid)
            c = self.cfg.commands
            req = verify(
                msg.payload,
                name,
                self.device,
                self.key,
                c.require_signature,
                c.max_age_s,
                self.outbox.nonce_seen,
            )
            rid = req["request_id"]
            result = HANDLERS[name](self, req["args"], msg, rid)
            self.stats["commands"] += 1
            if result is not _DEFERRED:
                self._reply(msg, name, rid, result)
        except CommandRejected as exc:
            self.stats["commands_refused"] += 1
            log.warning("command %s refused: %s", name or msg.topic, exc.reason)
            self._reply(msg, name or "unknown", exc.request_id or rid, error=(exc.code, exc.reason))
        except (EnrolmentRefused, ImageError, GalleryError, ValueError) as exc:
            self.stats["commands_refused"] += 1
            code = getattr(exc, "code", type(exc).__name__)
            self._reply(msg, name, rid, error=(code, str(exc)))
        except sqlite3.Error as exc:  # disk full, I/O error: the transaction rolled back
            self.stats["commands_refused"] += 1
            log.error("command %s: storage error: %s", name, exc)
            self._reply(
                msg,
                name,
                rid or _peek_request_id(msg.payload),
                error=("storage", f"storage error ({exc}); nothing was changed"),
            )
        except Exception:  # the last net: a hostile command must never end the frame loop
            self.stats["commands_refused"] += 1
            log.exception("command %s failed", name)
            self._reply(
                msg,
                name or "unknown",
                rid or _peek_request_id(msg.payload),
                error=("internal", "internal error; nothing was changed"),
            )

    def cmd_enroll(self, args: dict[str, Any], msg: Incoming, rid: str | None) -> Any:
        name = _str_arg(args, "name", rid)
        force = bool(args.get("force", False))
        meta = args.get("meta") or {}
        if not isinstance(meta, dict):
            raise CommandRejected("malformed", "'meta' must be an object", rid)
        if args.get("capture"):
            n = args.get("frames", 3)
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
                raise CommandRejected("malformed", "'frames' must be 1..10", rid)
            self._start_capture(name, n, force, meta, msg, rid)
            return _DEFERRED
        images = args.get("images")
        if not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES:
            raise CommandRejected(
                "malformed",
                f"'images' must be a list of 1..{MAX_IMAGES} base64 JPEG/PNG strings",
                rid,
            )
        raw = []
        for i, b in enumerate(images):
            if not isinstance(b, str) or len(b) > MAX_IMAGE_B64:
                raise CommandRejected(
                    "too_large" if isinstance(b, str) else "malformed",
                    f"image {i}: must be base64 text of at most {MAX_IMAGE_B64} characters",
                    rid,
                )
            try:
                raw.append(base64.b64decode(b, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise CommandRejected("malformed", f"image {i}: not base64: {exc}", rid) from exc
        person = self.service.enrol(
            name, raw, "mqtt", f"mqtt:{rid}", force=force, meta=meta or None
        )
        self.jobs.put(self._publish_discovery)
        return {"person": person.as_dict()}

    def _start_capture(
        self, name: str, n: int, force: bool, meta: dict[str, Any], msg: Incoming, rid: str | None
    ) -> None:
        """The frame loop collects `n` gated faces, then enrols them (see _capture_step)."""
        self.capture = {
            "name": name,
            "n": n,
            "templates": [],
            "force": force,
            "meta": meta,
            "deadline": time.monotonic() + self.cfg.commands.capture_timeout_s,
            "msg": msg,
            "rid": rid,
            "last_reason": "no face seen yet",
        }

    def _capture_step(self, faces: list[Face], image: np.ndarray) -> None:
        cap = self.capture
        assert cap is not None
        if time.monotonic() > cap["deadline"]:
            self.capture = None
            self._reply(
                cap["msg"],
                "enroll",
                cap["rid"],
                error=(
                    "capture_timeout",
                    f"only {len(cap['templates'])} of {cap['n']} good frames: {cap['last_reason']}",
                ),
            )
            return
        try:
            face = pick_face(faces)
            check_gates(face, self.cfg.enrolment)
        except EnrolmentRefused as exc:
            cap["last_reason"] = exc.reason
            return
        vec = self.service.pipeline.embedder.embed(face.aligned[None])[0]
        cap["templates"].append(
            Template(vec, self.service.embedder, "camera", face.quality.as_dict())
        )
        if len(cap["templates"]) < cap["n"]:
            return
        self.capture = None
        try:
            with self.service.lock:
                if not cap["force"]:
                    self.service._duplicate_check(cap["name"], cap["templates"])
                person = self.service.gallery.enrol(
                    cap["name"],
                    cap["templates"],
                    f"mqtt:{cap['rid']}",
                    cap["meta"] or None,
                    self.cfg.enrolment.max_templates,
                )
                self.service._reload_person(person)
            self._reply(cap["msg"], "enroll", cap["rid"], {"person": person.as_dict()})
            self.jobs.put(self._publish_discovery)
        except (EnrolmentRefused, GalleryError, sqlite3.Error) as exc:
            code = "storage" if isinstance(exc, sqlite3.Error) else getattr(exc, "code", "refused")
            self._reply(cap["msg"], "enroll", cap["rid"], error=(code, str(exc)))

    def cmd_delete(self, args: dict[str, Any], msg: Incoming, rid: str | None) -> Any:
        person = self.service.delete(_str_arg(args, "name", rid), f"mqtt:{rid}")
        self.cooldown.pop(person.id, None)
        if self.last_person and self.last_person.get("person_id") == person.id:
            # Their name must not stay retained on the broker; an object, not an empty
            # payload, because Home Assistant reads this topic's attributes as JSON.
            self.last_person = None
            self.link.publish(
                self.topics.last_person, json.dumps({"name": None}), qos=1, retain=True
            )
        if self.cfg.homeassistant.discovery:
            self._remove_person_entity(person.id)
        return {"deleted": person.id}

    def cmd_rename(self, args: dict[str, Any], msg: Incoming, rid: str | None) -> Any:
        p = self.service.rename(
            _str_arg(args, "name", rid), _str_arg(args, "new_name", rid), f"mqtt:{rid}"
        )
        self.jobs.put(self._publish_discovery)  # the entity keeps its id, gets the new name
        return {"person": p.as_dict()}

    def cmd_list(self, args: dict[str, Any], msg: Incoming, rid: str | None) -> Any:
        return {
            "people": [p.as_dict() for p in self.service.gallery.persons(self.service.embedder)]
        }

    def cmd_set(self, args: dict[str, Any], msg: Incoming, rid: str | None) -> Any:
        """Live settings (not written back to config.yaml; a restart restores the file's)."""
        if not args or set(args) - LIVE_SETTINGS:
            raise CommandRejected("malformed", f"settable: {', '.join(sorted(LIVE_SETTINGS))}", rid)
        from appliance.config.schema import parse

        text = "\n".join(
            f"{k.split('.')[0]}:\n  {k.split('.')[1]}: {json.dumps(v)}" for k, v in args.items()
        )
        try:
            partial = parse(text, "set")
        except ConfigError as exc:
            raise CommandRejected("invalid", "; ".join(exc.problems), rid) from exc
        rec, dec = self.cfg.recognition, self.cfg.decision
        for k in args:
            section, key = k.split(".")
            if section == "recognition":
                rec = dataclasses.replace(rec, **{key: getattr(partial.recognition, key)})
            else:
                dec = dataclasses.replace(dec, **{key: getattr(partial.decision, key)})
        self.cfg = dataclasses.replace(self.cfg, recognition=rec, decision=dec)
        self.service.cfg = self.cfg
        self.tracker.rules = vote_rules(self.cfg)
        return {"thresholds": self.service.thresholds().as_dict()}

    def cmd_reload(self, args: dict[str, Any], msg: Incoming, rid: str | None) -> Any:
        self.reload()
        return {"people": self.service.matcher.size}

    def cmd_status(self, args: dict[str, Any], msg: Incoming, rid: str | None) -> Any:
        return self.status()


_DEFERRED = object()
HANDLERS = {
    "enroll": Daemon.cmd_enroll,
    "delete": Daemon.cmd_delete,
    "rename": Daemon.cmd_rename,
    "list": Daemon.cmd_list,
    "set": Daemon.cmd_set,
    "reload": Daemon.cmd_reload,
    "status": Daemon.cmd_status,
}


def _str_arg(args: dict[str, Any], key: str, rid: str | None) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v.strip() or len(v) > 200:
        raise CommandRejected(
            "malformed", f"'{key}' must be a non-empty string (at most 200 characters)", rid
        )
    return v


def _peek_request_id(payload: bytes) -> str | None:
    try:
        obj = json.loads(payload)
        if isinstance(obj, dict) and isinstance(obj.get("body"), str):
            obj = json.loads(obj["body"])
        rid = obj.get("request_id") if isinstance(obj, dict) else None
        return rid if isinstance(rid, str) else None
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return None
