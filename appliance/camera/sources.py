"""Camera sources and a self-healing grabber that always hands out the newest frame.

A door appliance runs for months unattended. Cameras get unplugged, RTSP servers reboot,
a USB driver hangs, and a video file used for a demo simply ends. The recognition loop
must not care: it asks `Camera.latest()` for the newest frame and either gets one or a
timeout. Everything that can go wrong with a source is handled here, in one background
thread: a source that fails, ends or stalls is closed and reopened with exponential
backoff, and the counters in `Camera.status()` tell the health topic what happened.

The grabber reads as fast as the source delivers and keeps only the newest frame. The
consumer (face detection + embedding, a few fps on a Pi) is slower than the camera, and a
queue would make the door react to where someone *was* seconds ago; so older frames are
replaced and counted as dropped instead of queued.

Frames everywhere in the project are RGB uint8 HxWx3 numpy arrays; every source here
converts to that, because OpenCV and picamera2 both deliver BGR byte order.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

log = logging.getLogger(__name__)

# demo.py has no frame-rate constant; its motion was designed for roughly 15 fps playback.
DEMO_FPS = 15.0
# The device "auto" tries when picamera2 has no camera; a module attribute so tests can
# point it elsewhere.
DEFAULT_V4L2 = "/dev/video0"
# The first reopen delay; doubled per failed attempt up to Camera.reopen_max_s.
REOPEN_MIN_S = 0.5


class CameraError(RuntimeError):
    """A source cannot be opened; the message names the source and the reason."""


@runtime_checkable
class FrameSource(Protocol):
    """Something that yields RGB frames. Not thread-safe: one grabber thread owns it.

    `read()` returns None when there is no frame (end of file, lost device, stream gone);
    the Camera then closes the source and opens a fresh one from its factory, so a source
    never has to reconnect by itself.
    """

    name: str
    fps: float | None  # the native rate if known (files, the demo), else None

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


def valid_frame(img: Any) -> bool:
    """True for an RGB uint8 HxWx3 array with pixels; all-black frames are valid (night)."""
    return (
        isinstance(img, np.ndarray)
        and img.dtype == np.uint8
        and img.ndim == 3
        and img.shape[2] == 3
        and img.shape[0] > 0
        and img.shape[1] > 0
    )


class _Pacer:
    """Releases frame i no earlier than start + i/fps, so a file plays at its own speed.

    Without this a video file would be read at hundreds of fps and the scene would fly by,
    which makes a file useless as a stand-in camera. When the reader falls more than a
    second behind (e.g. the process was suspended), the schedule restarts instead of
    bursting through the backlog.
    """

    def __init__(self, fps: float | None) -> None:
        self.fps = fps
        self._start: float | None = None
        self._i = 0

    def wait(self) -> None:
        if not self.fps:
            return
        now = time.monotonic()
        if self._start is None:
            self._start = now
        target = self._start + self._i / self.fps
        if target > now:
            time.sleep(target - now)
        elif now - target > 1.0:
            self._start, self._i = now, 0
        self._i += 1


def _sane_fps(fps: float) -> float | None:
    """OpenCV reports 0, NaN or absurd values (1000, 90000) when a container has no rate."""
    return float(fps) if 0.5 <= fps <= 240 else None


class OpenCVSource:
    """V4L2 devices, network streams (RTSP/HTTP) and video files through cv2.VideoCapture."""

    def __init__(
        self, spec: str, width: int, height: int, realtime: bool, timeout_s: float = 10.0
    ) -> None:
        self.spec = spec.strip()
        self.width, self.height = width, height
        self.realtime = realtime
        self.timeout_s = timeout_s
        self.fps: float | None = None
        self.name = self.spec
        self._cap: cv2.VideoCapture | None = None
        self._pacer: _Pacer | None = None
        self._warned_invalid = False

    @property
    def kind(self) -> str:
        """ "v4l2", "stream" or "file"; decides backend, options and pacing."""
        if self.spec.isdigit() or self.spec.startswith("/dev/video"):
            return "v4l2"
        if "://" in self.spec:
            return "stream"
        return "file"

    def open(self) -> None:
        kind = self.kind
        if kind == "v4l2":
            target: int | str = int(self.spec) if self.spec.isdigit() else self.spec
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
        elif kind == "stream":
            # Without timeouts a dead RTSP server blocks open()/read() for minutes (the
            # FFmpeg default), and the Camera could neither notice nor reconnect.
            ms = int(self.timeout_s * 1000)
            cap = cv2.VideoCapture(
                self.spec,
                cv2.CAP_FFMPEG,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms],
            )
        else:
            if not Path(self.spec).is_file():
                raise CameraError(f"camera source {self.spec!r}: no such file")
            cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open camera source {self.spec!r} ({kind})")
        if kind == "v4l2":
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            # A deep driver buffer would hand out frames that are seconds old.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        self._pacer = _Pacer(self.fps) if kind == "file" and self.realtime else None
        self._cap = cap
        log.info(
            "opened %s (%s) %dx%d fps=%s",
            self.spec,
            kind,
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            self.fps,
        )

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        if self._pacer is not None:
            self._pacer.wait()
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        if not (
            isinstance(bgr, np.ndarray) and bgr.ndim == 3 and bgr.shape[2] == 3 and bgr.size > 0
        ):
            if not self._warned_invalid:
                self._warned_invalid = True
                log.warning(
                    "%s: unexpected frame %s; treating as no frame",
                    self.spec,
                    getattr(bgr, "shape", type(bgr).__name__),
                )
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class DemoSource:
    """The built-in demo scene (appliance.camera.demo), played at DEMO_FPS like a real camera."""

    def __init__(self, realtime: bool = True) -> None:
        self.name = "demo"
        self.fps: float | None = DEMO_FPS
        self.realtime = realtime
        self._frames: Iterator[Any] | None = None
        self._pacer = _Pacer(None)

    def open(self) -> None:
        from appliance.camera import demo

        self._frames = demo.frames()
        self._pacer = _Pacer(self.fps if self.realtime else None)

    def read(self) -> np.ndarray | None:
        if self._frames is None:
            return None
        self._pacer.wait()
        f = next(self._frames, None)
        return None if f is None else f.image

    def close(self) -> None:
        self._frames = None


class Picamera2Source:
    """The Raspberry Pi camera (CSI) through picamera2, the only supported libcamera API.

    Kept thin: one video configuration, capture_array() on the main stream, no JPEG
    round trip. `module` stands in for the picamera2 module in tests (anything with a
    `Picamera2` class of the same API).
    """

    def __init__(self, width: int, height: int, module: Any = None) -> None:
        self.width, self.height = width, height
        self.name = "picamera2"
        self.fps: float | None = None
        self._module = module
        self._cam: Any = None

    def open(self) -> None:
        mod = self._module
        if mod is None:
            try:
                mod = importlib.import_module("picamera2")
            except ImportError as e:
                raise CameraError(
                    "picamera2 is not installed (on Raspberry Pi OS: apt "
                    "install python3-picamera2, and create the venv with "
                    f"--system-site-packages): {e}"
                ) from e
        try:
            cam = mod.Picamera2()
        except Exception as e:  # no camera attached, camera busy, libcamera error
            raise CameraError(f"picamera2: cannot open the camera: {e}") from e
        try:
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"}
            )
            cam.configure(config)
            cam.start()
        except Exception as e:
            _quietly(cam.close)
            raise CameraError(f"picamera2: cannot start the camera: {e}") from e
        self._cam = cam
        log.info("opened picamera2 %dx%d", self.width, self.height)

    def read(self) -> np.ndarray | None:
        if self._cam is None:
            return None
        arr = self._cam.capture_array("main")
        if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] < 3:
            return None
        # picamera2 names formats after libcamera/DRM fourccs, which describe a pixel as a
        # little-endian word: "RGB888" therefore lies in memory as B, G, R bytes, i.e. the
        # array's channels are BGR (the order OpenCV expects). Reverse them for RGB.
        # [:, :, 2::-1] also drops a fourth (padding) channel if a format ever has one.
        return np.ascontiguousarray(arr[:, :, 2::-1])

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            _quietly(cam.stop)
            _quietly(cam.close)


def _quietly(fn: Callable[[], Any]) -> None:
    """Cleanup that must not mask the error being handled, nor stop a reopen."""
    try:
        fn()
    except Exception as e:
        log.debug("ignored during camera cleanup: %s", e)


def picamera2_available() -> bool:
    """picamera2 is importable and libcamera lists at least one camera.

    Raspberry Pi OS installs picamera2 even on Pis that only have a USB webcam, so
    "importable" alone would make "auto" pick a camera that is not there.
    """
    if importlib.util.find_spec("picamera2") is None:
        return False
    try:
        from picamera2 import Picamera2

        return len(Picamera2.global_camera_info()) > 0
    except Exception as e:
        log.debug("picamera2 present but unusable: %s", e)
        return False


def make_source(
    spec: str, width: int, height: int, realtime: bool, timeout_s: float = 10.0
) -> FrameSource:
    """The source for a `camera.source` config value. Does not open it.

    `timeout_s` bounds a network stream's open and read: a stalled stream is reopened
    after that long (the daemon passes `camera.stall_s`).

    "auto" prefers the Pi camera, then the first V4L2 device, then the demo, so a fresh
    install shows something on any machine. A missing file is an error right away (a
    typo in the config), whereas a missing /dev/video* is not: a USB camera may be
    plugged in later, and the Camera keeps retrying.
    """
    s = spec.strip()
    if s == "auto":
        if picamera2_available():
            log.info("camera source auto -> picamera2")
            return Picamera2Source(width, height)
        if Path(DEFAULT_V4L2).exists():
            log.info("camera source auto -> %s", DEFAULT_V4L2)
            return OpenCVSource(DEFAULT_V4L2, width, height, realtime)
        log.info("camera source auto -> demo (no picamera2 camera, no %s)", DEFAULT_V4L2)
        return DemoSource(realtime)
    if s == "demo":
        return DemoSource(realtime)
    if s == "picamera2":
        return Picamera2Source(width, height)
    if s.isdigit() or s.startswith("/dev/video") or "://" in s:
        return OpenCVSource(s, width, height, realtime, timeout_s)
    if Path(s).is_file():
        return OpenCVSource(s, width, height, realtime)
    raise CameraError(
        f"camera source {s!r}: no such file (expected auto, demo, picamera2, "
        "a V4L2 index or /dev/videoN, a URL, or a video file)"
    )


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
