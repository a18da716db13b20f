"""The frame loop: the only thread that runs the models and writes the gallery.

Each pass: run due side jobs, ping the watchdog (only while the camera is alive), run
queued commands, notice gallery changes made by another process, then one frame:
detect -> track -> gates -> align -> embed -> match -> vote -> decide. Commands and
jobs run between frames, so a TFLite interpreter is never used by two threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from appliance.access.decider import Decider
from appliance.camera.grabber import Camera, Frame
from appliance.config.schema import DecisionConfig
from appliance.control.bus import CommandBus, Jobs
from appliance.health import Meter
from appliance.identity.capture import CaptureSessions
from appliance.identity.recogniser import Recogniser
from appliance.identity.tracker import Tracker, Verdict
from appliance.liveness.verdict import LivenessRules, Observation, judge
from appliance.sdnotify import Notifier
from appliance.vision.pipeline import Face

log = logging.getLogger(__name__)

GALLERY_CHECK_S = 0.25  # how often another process's gallery change is looked for
# An empty scene is most of a door's day, and detection is most of what the daemon does
# then (tools/bench.py idle). Once no face has been seen for IDLE_AFTER_S and no track is
# open, frames are detected at most IDLE_DETECT_FPS a second: at a 30 fps camera every
# other frame, so a face that walks in is found at most one frame later; back to every
# frame as soon as one is found. A camera at or below IDLE_DETECT_FPS loses nothing.
IDLE_AFTER_S = 2.0
IDLE_DETECT_FPS = 15.0
# Of those, a frame that has not changed since the last one detected on (no 8x8 block
# moved by CHANGE_LEVEL grey levels in more than CHANGE_BLOCKS blocks: sensor noise
# averages out in a block, anyone walking in moves dozens) holds no new face, so it is
# not detected either, except once every IDLE_HEARTBEAT_S.
CHANGE_SCALE = 8
CHANGE_LEVEL = 10
CHANGE_BLOCKS = 3
IDLE_HEARTBEAT_S = 1.0


class FrameLoop:
    def __init__(
        self,
        *,
        camera: Camera,
        recogniser: Recogniser,
        tracker: Tracker,
        decider: Decider,
        capture: CaptureSessions,
        bus: CommandBus,
        jobs: Jobs,
        run_command: Callable[[Any, str], Any],
        notifier: Notifier,
        meter: Meter,
        gates: Callable[[], DecisionConfig],
        stall_s: Callable[[], float],
        max_frames: int = 0,
    ) -> None:
        self.camera = camera
        self.recogniser = recogniser
        self.tracker = tracker
        self.decider = decider
        self.capture = capture
        self.bus = bus
        self.jobs = jobs
        self.run_command = run_command
        self.notifier = notifier
        self.meter = meter
        self.gates = gates  # the live decision settings: who is worth embedding
        self.stall_s = stall_s
        self.max_frames = max_frames
        self.frames = 0
        self.frame_errors = 0
        self._hung_logged = False
        self._last_face_at = float("-inf")  # capture time of the last frame with a face
        self._last_detect_at = float("-inf")  # and of the last frame detected on
        self._reference: np.ndarray | None = None  # that frame, small and grey, when idle

    def run(self, stop: Any, between: Callable[[], None]) -> None:
        """Until `stop` is set; `between` runs once a pass (state publishing, reload)."""
        dog = self.notifier.watchdog_interval()
        next_dog = next_check = 0.0
        while not stop.is_set():
            self.jobs.run_due()
            now = time.monotonic()
            if dog is not None and now >= next_dog and self._camera_alive():
                self.notifier.watchdog()  # from the frame loop: a hung pipeline is restarted
                next_dog = now + dog
            self.bus.drain(self.run_command)
            if now >= next_check:
                self.recogniser.refresh()
                next_check = now + GALLERY_CHECK_S
            between()
            frame = self.camera.latest(timeout=0.2)
            if frame is None or self._idle_skip(frame):
                self.expire()
                continue
            try:
                self.process(frame)
            except Exception:  # one bad frame must not take the door down
                self.frame_errors += 1
                if self.frame_errors in (1, 10, 100) or self.frame_errors % 1000 == 0:
                    log.exception("frame %d failed (%d so far)", frame.index, self.frame_errors)
            if self.max_frames and self.frames >= self.max_frames:
                stop.set()

    def _idle_skip(self, frame: Frame) -> bool:
        """True for a frame of an empty scene that comes less than 1/IDLE_DETECT_FPS after
        the last one detected on (with a quarter period of slack for capture jitter, so a
        30 fps camera gives every other frame, not every third), or that has not changed
        since that one and comes within IDLE_HEARTBEAT_S of it."""
        if (
            self.capture.active
            or self.tracker.tracks
            or frame.captured - self._last_face_at < IDLE_AFTER_S
        ):
            self._reference = None
            return False
        since = frame.captured - self._last_detect_at
        if since < 0.75 / IDLE_DETECT_FPS:
            return True
        small = _small_grey(frame.image)
        if (
            self._reference is not None
            and since < IDLE_HEARTBEAT_S
            and not _changed(small, self._reference)
        ):
            return True
        self._reference = small
        return False

    def expire(self) -> None:
        for v in self.tracker.expire():
            self._decide(v, _last_face(v), ended=True)

    def finish(self) -> None:
        """At shutdown: decide the visits still open, so none is lost."""
        for v in self.tracker.expire_all():
            self._decide(v, _last_face(v), ended=True)

    # --- liveness (appliance.liveness): the mesh per tracked face, a verdict per visit ---

    def _liveness(self) -> LivenessRules | None:
        """The live `liveness` settings when the check applies in this mode, else None."""
        cfg = self.recogniser.cfg
        rules = LivenessRules.from_config(cfg.liveness)
        if not rules.on or (cfg.recognition.mode == "attendance" and not rules.attendance_flag):
            return None
        return rules

    def _observe(self, image: np.ndarray, dets: list[Any], tracks: list[Any], t: float) -> None:
        """One mesh batch over the faces whose visit still needs liveness evidence."""
        want = [(d, tr) for d, tr in zip(dets, tracks, strict=True) if not tr.decided or tr.pending]
        if not want:
            return
        marks = self.recogniser.pipeline.landmarks.landmarks(image, [d for d, _ in want])
        for (_, tr), lm in zip(want, marks, strict=True):
            if lm is not None:
                tr.evidence.append(Observation.of(lm, t))
            if tr.pending:
                self._decide(*tr.pending, ended=False)

    def _decide(self, v: Verdict, face: Face | None, ended: bool) -> None:
        """Hand a recognition verdict to the decider, with its liveness verdict when the
        check is on. A recognised face whose liveness is still undecided is held on its
        track until the check decides or the visit ends (then it is not live: no
        liveness verdict within the visit is no grant)."""
        rules = self._liveness()
        if rules is None or v.person_id is None:
            v.track.pending = None
            self.decider.on_verdict(v, face)
            return
        lv = judge(v.track.evidence, rules, ended=ended)
        if lv.live is None:
            v.track.pending = (v, face)
            return
        v.track.pending = None
        self.decider.on_verdict(v, face, lv.figures(rules))

    def _camera_alive(self) -> bool:
        """False once a camera read has hung for 3x `camera.stall_s`: the watchdog ping
        is then withheld, so systemd restarts the service (the only cure for a driver
        stuck inside read()). A camera that fails and reopens is alive: unplugged, it
        retries with backoff and says so in status instead of restarting in a loop."""
        blocked = self.camera.blocked_s()
        hung = blocked > 3 * self.stall_s()
        if hung and not self._hung_logged:
            log.error(
                "camera read blocked for %.0f s; withholding the watchdog ping so "
                "systemd restarts the service",
                blocked,
            )
        self._hung_logged = hung
        return not hung

    def process(self, frame: Frame) -> None:
        pipe = self.recogniser.pipeline
        gates = self.gates()
        t0 = time.perf_counter()
        dets = pipe.detect(frame.image)
        t1 = time.perf_counter()
        self._last_detect_at = frame.captured
        if dets:
            self._last_face_at = frame.captured
        wall = time.time() - (time.monotonic() - frame.captured)
        tracks = self.tracker.update([d.box for d in dets], frame.index, wall)
        if self._liveness() is not None:
            self._observe(frame.image, dets, tracks, frame.captured)
        faces = pipe.faces(frame.image, embed=False, detections=dets)
        by_det = {id(f.detection): f for f in faces}
        todo: list[tuple[Face, Any]] = []
        for d, tr in zip(dets, tracks, strict=True):
            f = by_det[id(d)]
            q = f.quality
            if (
                tr.decided
                or q.eye_distance < gates.min_eye_distance
                or q.frontal < gates.min_frontal
            ):
                continue
            todo.append((f, tr))
        t2 = time.perf_counter()
        if todo:
            vecs = pipe.embedder.embed(np.stack([f.aligned for f, _ in todo]))
            t3 = time.perf_counter()
            matches = self.recogniser.match(vecs)
            for (f, tr), m, v in zip(todo, matches, vecs, strict=True):
                f.embedding = v
                verdict = self.tracker.vote(tr, m, f.quality.score * f.quality.frontal, f)
                if verdict:
                    self._decide(verdict, f, ended=False)
        else:
            t3 = t2
        t4 = time.perf_counter()
        if self.capture.active:
            self.capture.step(faces)
        self.expire()
        self.frames += 1
        # Per what each stage works on (health.STAGES): a frame, or a face embedded.
        for name, a, b, n in (
            ("detect", t0, t1, 1),
            ("align", t1, t2, 1),
            ("embed", t2, t3, len(todo)),
            ("match_decide", t3, t4, len(todo)),
        ):
            self.meter.stage(name, b - a, n)
        self.meter.tick()


def _last_face(v: Verdict) -> Face | None:
    """The face a visit decided as it leaves is shown by: the one it was held with for
    liveness, else its best-weighted vote's."""
    return v.track.pending[1] if v.track.pending else v.track.best_face


def _small_grey(image: np.ndarray) -> np.ndarray:
    """The frame at 1/CHANGE_SCALE, grey: each pixel the mean of a block (~0.3 ms)."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // CHANGE_SCALE, h // CHANGE_SCALE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def _changed(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or int((cv2.absdiff(a, b) > CHANGE_LEVEL).sum()) > CHANGE_BLOCKS
