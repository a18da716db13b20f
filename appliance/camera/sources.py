"""Frame sources: every kind of camera behind one small open/read/close protocol.

The appliance runs on a Pi with a CSI camera, on a PC with a USB webcam, against an RTSP
or HTTP network camera, on a video file, on a GStreamer pipeline (a Jetson's CSI camera:
appliance.camera.gstreamer), or with no camera at all (the built-in demo).
Each source here hides what is special about its kind (backend, timeouts, pacing, pixel
order) so that the grabber (appliance.camera.grabber) can treat all of them alike: a
source only opens, reads one frame or None, and closes, and never reconnects by itself.

Frames everywhere in the project are RGB uint8 HxWx3 numpy arrays; every source here
converts to that, because OpenCV and picamera2 both deliver BGR byte order.

picamera2 exists only on Raspberry Pi OS and importing it starts libcamera, so it is
imported lazily, and only by `_import_picamera2`: the rest of the project, tests
included, runs without it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from collections.abc import Callable, Iterator
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


def _import_picamera2() -> Any:
    """The picamera2 module; the project's only import of it (see the module docstring)."""
    return importlib.import_module("picamera2")


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
                mod = _import_picamera2()
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
        return len(_import_picamera2().Picamera2.global_camera_info()) > 0
    except Exception as e:
        log.debug("picamera2 present but unusable: %s", e)
        return False


def make_source(
    spec: str, width: int, height: int, realtime: bool, timeout_s: float = 10.0
) -> FrameSource:
    """The source for a `camera.source` config value. Does not open it.

    `timeout_s` bounds a network stream's or a GStreamer pipeline's open and read: a
    stalled stream is reopened after that long (the daemon passes `camera.stall_s`).

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
    if s.startswith("gst:"):
        # Imported here: appliance.camera.gstreamer imports CameraError from this module.
        from appliance.camera.gstreamer import PREFIX, GStreamerSource

        return GStreamerSource(s[len(PREFIX) :], width, height, timeout_s)
    if s.isdigit() or s.startswith("/dev/video") or "://" in s:
        return OpenCVSource(s, width, height, realtime, timeout_s)
    if Path(s).is_file():
        return OpenCVSource(s, width, height, realtime)
    raise CameraError(
        f"camera source {s!r}: no such file (expected auto, demo, picamera2, "
        "a V4L2 index or /dev/videoN, a URL, gst:<pipeline>, or a video file)"
    )
