"""The grabber: one background thread that owns a FrameSource and keeps its newest frame.

A door appliance runs for months unattended. Cameras get unplugged, RTSP servers reboot,
a USB driver hangs, and a video file used for a demo simply ends. The recognition loop
must not care: it asks `Camera.latest()` for the newest frame and either gets one or a
timeout. Everything that can go wrong with a source is handled here, in one thread: a
source that fails, ends or stalls is closed and reopened with exponential backoff, and
the counters in `Camera.status()` tell the health topic what happened.

The grabber reads as fast as the source delivers and keeps only the newest frame. The
consumer (face detection + embedding, a few fps on a Pi) is slower than the camera, and a
queue would make the door react to where someone *was* seconds ago; so older frames are
replaced and counted as dropped instead of queued.

This module knows sources only through the FrameSource protocol and a factory, so the
recovery logic is the same for every kind of camera (see appliance.camera.sources) and
is tested with scripted fakes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.camera.sources import CameraError, FrameSource, _quietly, valid_frame

log = logging.getLogger(__name__)

# The first reopen delay; doubled per failed attempt up to Camera.reopen_max_s.
REOPEN_MIN_S = 0.5


@dataclass(frozen=True)
class Frame:
    index: int  # counts up across reopens, so a consumer can tell new from seen
    captured: float  # Camera clock (monotonic) when the grabber received it
    image: np.ndarray  # RGB uint8 HxWx3


class Camera:
    """Owns one FrameSource in a background thread; `latest()` gives the newest frame.

    `factory` makes a fresh, unopened source for every (re)open, so no source needs
    reconnect logic of its own. States: "stopped" (before start and after stop),
    "starting" (until the first frame), "ok", "reopening" (after a failure, until the
    next frame). Counters: `frames_read` valid frames received, `frames_dropped` of those
    replaced before the consumer took them, `frames_invalid` wrong shape/dtype and
    ignored, `reopens` open attempts after the first.
    """

    def __init__(
        self,
        factory: Callable[[], FrameSource],
        reopen_max_s: float = 30.0,
        stall_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.reopen_max_s = reopen_max_s
        self.stall_s = stall_s
        self.clock = clock
        self.state = "stopped"
        self.source_name: str | None = None
        self.frames_read = 0
        self.frames_dropped = 0
        self.frames_invalid = 0
        self.reopens = 0
        self.last_error: str | None = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest: Frame | None = None
        self._taken = -1
        self._next_index = 0
        self._backoff = min(REOPEN_MIN_S, reopen_max_s)
        self._recent: deque[float] = deque(maxlen=30)  # capture times, for measured fps

    # -- consumer side --------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self.state = "starting"
        self._thread = threading.Thread(target=self._run, name="camera-grabber", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the grabber; it closes the source itself when its current read returns.

        The source is never closed from this thread: releasing a cv2.VideoCapture while
        another thread is inside read() can crash the process. If a read is blocked past
        `timeout` the (daemon) thread is left behind and a warning says so.
        """
        self._stopping.set()
        with self._cond:
            self.state = "stopped"
            self._cond.notify_all()
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                log.warning(
                    "camera %s: grabber still blocked in read() after %.0f s; leaving it behind",
                    self.source_name,
                    timeout,
                )
        self._thread = None

    def latest(self, timeout: float) -> Frame | None:
        """The newest frame not returned before, waiting up to `timeout` s; None once stopped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stopping.is_set():
                f = self._latest
                if f is not None and f.index > self._taken:
                    self._taken = f.index
                    return f
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return None

    def blocked_s(self) -> float:
        """How long the grabber has been inside one read() with no frame to show.

        In "ok" the grabber returns from the pump on its own once a read comes back
        after `stall_s`, so a frame older than that means a read that has not returned:
        a hung driver that only a process restart can clear. In any other state the
        grabber is alive and retrying, and this is 0."""
        with self._cond:
            if self.state != "ok" or self._latest is None:
                return 0.0
            return max(0.0, self.clock() - self._latest.captured)

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for the daemon's health topic."""
        with self._cond:
            now = self.clock()
            age = None if self._latest is None else now - self._latest.captured
            recent = list(self._recent)
            fps = (
                (len(recent) - 1) / (recent[-1] - recent[0])
                if len(recent) >= 2 and recent[-1] > recent[0]
                else None
            )
            return {
                "state": self.state,
                "source": self.source_name,
                "frames_read": self.frames_read,
                "frames_dropped": self.frames_dropped,
                "frames_invalid": self.frames_invalid,
                "reopens": self.reopens,
                "last_error": self.last_error,
                "last_frame_age_s": None if age is None else round(age, 3),
                # A read blocked inside the source cannot be interrupted; this at least
                # makes it visible while it lasts.
                "stalled": self.state == "ok" and age is not None and age > self.stall_s,
                "fps": None if fps is None else round(fps, 2),
            }

    # -- grabber thread -------------------------------------------------------------

    def _run(self) -> None:
        first = True
        while not self._stopping.is_set():
            if not first:
                self.reopens += 1
            first = False
            src: FrameSource | None = None
            got_frames = 0
            try:
                src = self.factory()
                self.source_name = src.name
                src.open()
                got_frames, err = self._pump(src)
            except Exception as e:  # the grabber must survive anything a source does
                err = str(e) if isinstance(e, CameraError) else f"{type(e).__name__}: {e}"
            finally:
                if src is not None:
                    _quietly(src.close)
            if self._stopping.is_set() or err is None:
                break
            self._failed(err, got_frames)
            delay = self._backoff
            self._backoff = min(delay * 2, self.reopen_max_s)
            self._stopping.wait(delay)
        log.debug("camera grabber exits")

    def _pump(self, src: FrameSource) -> tuple[int, str | None]:
        """Read until stop (-> None) or a failure (-> its description)."""
        n = 0
        warned_invalid = False
        last_good = self.clock()
        while not self._stopping.is_set():
            img = src.read()
            now = self.clock()
            if img is None:
                return n, "source returned no frame (end of file, device or stream gone)"
            if now - last_good > self.stall_s:
                return n, f"stalled: no valid frame for {now - last_good:.1f} s"
            if not valid_frame(img):
                self.frames_invalid += 1
                if not warned_invalid:
                    warned_invalid = True
                    log.warning(
                        "camera %s: dropping invalid frame (%s %s)",
                        src.name,
                        getattr(img, "dtype", type(img).__name__),
                        getattr(img, "shape", ""),
                    )
                continue
            last_good = now
            n += 1
            self._publish(img, now)
        return n, None

    def _publish(self, img: np.ndarray, now: float) -> None:
        with self._cond:
            if self._stopping.is_set():
                return  # a read that returned after stop(): keep the state "stopped"
            if self._latest is not None and self._latest.index > self._taken:
                self.frames_dropped += 1
            self._latest = Frame(self._next_index, now, img)
            self._next_index += 1
            self.frames_read += 1
            self._recent.append(now)
            self._backoff = min(REOPEN_MIN_S, self.reopen_max_s)
            if self.state != "ok":
                if self.state == "reopening":
                    log.info(
                        "camera %s: frames again after %d reopens", self.source_name, self.reopens
                    )
                self.state = "ok"
            self._cond.notify_all()

    def _failed(self, err: str, got_frames: int) -> None:
        """Enter "reopening"; log on a state change or a new reason, not per attempt."""
        with self._cond:
            if self._stopping.is_set():
                return
            was, prev = self.state, self.last_error
            self.state = "reopening"
            self.last_error = err
        if was == "reopening" and err == prev:
            log.debug("camera %s: %s; retrying in %.1f s", self.source_name, err, self._backoff)
        elif got_frames and err.startswith("source returned no frame"):
            # The normal end of a looping video file: not worth a warning every loop.
            log.info("camera %s: ended after %d frames; reopening", self.source_name, got_frames)
        else:
            log.warning(
                "camera %s: %s; reopening in %.1f s (backoff up to %.0f s)",
                self.source_name,
                err,
                self._backoff,
                self.reopen_max_s,
            )
