"""Camera sources and the self-healing grabber, on real video files and a real HTTP stream.

No assertion depends on the machine being fast: timings are lower bounds only, and waits
poll with generous timeouts.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from appliance.camera import sources
from appliance.camera.grabber import Camera
from appliance.camera.gstreamer import GStreamerSource
from appliance.camera.sources import (
    CameraError,
    DemoSource,
    FrameSource,
    OpenCVSource,
    Picamera2Source,
    make_source,
)
from tests.daemon_harness import serve_mjpeg

N_FRAMES, FPS, W, H = 20, 10.0, 160, 120


def _draw(i: int) -> np.ndarray:
    """Frame i in BGR: its number in white and a pure red (BGR 0,0,255) top-left patch."""
    f = np.full((H, W, 3), 40, np.uint8)
    cv2.putText(f, str(i), (40, 85), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    f[:24, :24] = (0, 0, 255)
    return f


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "counter.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert out.isOpened()
    for i in range(N_FRAMES):
        out.write(_draw(i))
    out.release()
    return path


def _read_all(src: FrameSource, limit: int = 1000) -> list[np.ndarray]:
    out = []
    while len(out) < limit and (img := src.read()) is not None:
        out.append(img)
    return out


def _wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture
def cameras() -> Iterator[list[Camera]]:
    """Cameras registered here are stopped even when a test fails."""
    made: list[Camera] = []
    yield made
    for cam in made:
        cam.stop()


# -- OpenCVSource on a file -------------------------------------------------------------


def test_file_fast_is_rgb_and_complete(video: Path) -> None:
    src = OpenCVSource(str(video), 640, 480, realtime=False)
    src.open()
    try:
        assert src.fps == pytest.approx(FPS)
        frames = _read_all(src)
    finally:
        src.close()
    assert len(frames) == N_FRAMES
    for f in frames:
        assert f.shape == (H, W, 3) and f.dtype == np.uint8
        r, g, b = f[5:19, 5:19].reshape(-1, 3).mean(axis=0)
        assert r > 200 and g < 50 and b < 50  # BGR red came out as RGB red
    assert src.read() is None  # closed


def test_file_realtime_is_paced(video: Path) -> None:
    src = OpenCVSource(str(video), 640, 480, realtime=True)
    src.open()
    t0 = time.monotonic()
    try:
        frames = _read_all(src)
    finally:
        src.close()
    assert len(frames) == N_FRAMES
    assert time.monotonic() - t0 >= (N_FRAMES - 1) / FPS * 0.95


def test_open_failures_are_camera_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no such file"):
        OpenCVSource(str(tmp_path / "gone.mp4"), 640, 480, False).open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(CameraError, match=r"junk\.mp4"):
        OpenCVSource(str(junk), 640, 480, False).open()
    with pytest.raises(CameraError, match="/dev/video99"):
        OpenCVSource("/dev/video99", 640, 480, False).open()


# -- Camera over a file -----------------------------------------------------------------


def test_camera_replays_file_after_end(video: Path, cameras: list[Camera]) -> None:
    cam = Camera(lambda: OpenCVSource(str(video), 640, 480, realtime=False), reopen_max_s=1)
    cameras.append(cam)
    assert cam.state == "stopped"
    cam.start()
    first = cam.latest(timeout=10)
    assert first is not None and first.image.shape == (H, W, 3)
    assert _wait_for(lambda: cam.reopens >= 1)
    seen = cam.latest(timeout=10)
    assert seen is not None
    # Frames keep coming after the replay, with indices counting on across reopens.
    assert _wait_for(lambda: cam.frames_read > 2 * N_FRAMES)
    later = cam.latest(timeout=10)
    assert later is not None and later.index > seen.index > first.index
    st = cam.status()
    assert st["state"] in ("ok", "reopening") and st["reopens"] >= 1
    assert st["source"] == str(video)
    cam.stop()
    assert cam.state == "stopped"
    assert cam.latest(timeout=0.1) is None


def test_slow_consumer_gets_newest_frames(video: Path, cameras: list[Camera]) -> None:
    cam = Camera(lambda: OpenCVSource(str(video), 640, 480, realtime=False), reopen_max_s=0.5)
    cameras.append(cam)
    cam.start()
    got = []
    for _ in range(8):
        f = cam.latest(timeout=10)
        assert f is not None
        got.append(f)
        time.sleep(0.15)  # slower than the grabber, which reads the file flat out
    indices = [f.index for f in got]
    assert indices == sorted(set(indices))  # strictly increasing, never a repeat
    assert all(b.captured >= a.captured for a, b in itertools.pairwise(got))
    assert cam.frames_dropped > 0
    assert cam.frames_dropped <= cam.frames_read
    # Nothing new is handed out twice: right after a take there is no newer frame yet,
    # or a strictly newer one.
    nxt = cam.latest(timeout=0)
    assert nxt is None or nxt.index > indices[-1]


# -- Camera with fake sources -------------------------------------------------------------


class FakeSource:
    """A scripted FrameSource: frames of 8x8 grey, with hooks for failures."""

    fps: float | None = None

    def __init__(
        self,
        name: str = "fake",
        fail_open: bool = False,
        read: Callable[[int], np.ndarray | None] | None = None,
    ) -> None:
        self.name = name
        self.fail_open = fail_open
        self._read = read or (lambda i: np.full((8, 8, 3), i % 256, np.uint8))
        self.i = 0
        self.closed = False

    def open(self) -> None:
        if self.fail_open:
            raise CameraError(f"{self.name}: no camera")

    def read(self) -> np.ndarray | None:
        time.sleep(0.005)
        self.i += 1
        return self._read(self.i)

    def close(self) -> None:
        self.closed = True


def test_open_failures_then_recovery(
    cameras: list[Camera], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="appliance.camera.grabber")
    made: list[FakeSource] = []

    def factory() -> FakeSource:
        made.append(FakeSource(fail_open=len(made) < 3))
        return made[-1]

    cam = Camera(factory, reopen_max_s=0.5)
    cameras.append(cam)
    states: list[str] = []
    cam.start()
    assert _wait_for(lambda: states.append(cam.state) or cam.state == "reopening")
    assert cam.last_error == "fake: no camera"
    assert cam.latest(timeout=15) is not None
    assert cam.state == "ok"
    assert cam.reopens == 3 and len(made) == 4
    assert all(s.closed for s in made[:3])  # failed sources are closed too
    assert states[-1] == "reopening"
    # Three identical failures: one warning, the repeats at debug level only.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no camera" in warnings[0].getMessage()
    assert any("frames again" in r.getMessage() for r in caplog.records)


def test_exceptions_and_none_from_read_reopen(cameras: list[Camera]) -> None:
    made: list[FakeSource] = []

    def flaky(i: int) -> np.ndarray | None:
        if i == 5:
            raise OSError("USB disconnect")
        return np.zeros((8, 8, 3), np.uint8)  # all black is a valid frame

    def factory() -> FakeSource:
        made.append(
            FakeSource(
                read=flaky
                if len(made) == 0
                else (lambda i: None if i > 3 else np.ones((8, 8, 3), np.uint8))
            )
        )
        return made[-1]

    cam = Camera(factory, reopen_max_s=0.5)
    cameras.append(cam)
    cam.start()
    assert _wait_for(lambda: cam.reopens >= 2)
    assert cam.last_error is not None
    assert cam.frames_read >= 4 and cam.frames_invalid == 0
    assert cam._thread is not None and cam._thread.is_alive()


def test_garbage_frames_are_counted_not_fatal(cameras: list[Camera]) -> None:
    garbage = [
        np.zeros((8, 8), np.uint8),  # grey
        np.zeros((8, 8, 4), np.uint8),  # RGBA
        np.zeros((8, 8, 3), np.float32),  # wrong dtype
        np.zeros((0, 8, 3), np.uint8),  # empty
        "not an array",
    ]

    def read(i: int):
        return np.zeros((8, 8, 3), np.uint8) if i % 6 == 0 else garbage[i % 6 - 1]

    cam = Camera(lambda: FakeSource(read=read), reopen_max_s=0.5)
    cameras.append(cam)
    cam.start()
    assert _wait_for(lambda: cam.frames_invalid >= 20)
    f = cam.latest(timeout=10)
    assert f is not None and f.image.shape == (8, 8, 3) and f.image.dtype == np.uint8
    assert cam.state == "ok" and cam.reopens == 0
    assert cam.status()["frames_invalid"] >= 20


def test_stalling_read_is_reopened(cameras: list[Camera]) -> None:
    made: list[FakeSource] = []

    def stall(i: int) -> np.ndarray:
        if i == 3:
            time.sleep(1.0)  # a read that blocks well past stall_s, then returns
        return np.ones((8, 8, 3), np.uint8)

    def factory() -> FakeSource:
        made.append(FakeSource(read=stall if not made else None))
        return made[-1]

    cam = Camera(factory, reopen_max_s=0.5, stall_s=0.3)
    cameras.append(cam)
    cam.start()
    assert _wait_for(lambda: cam.reopens >= 1)
    assert cam.last_error is not None and "stalled" in cam.last_error
    assert made[0].closed
    n = cam.frames_read
    assert _wait_for(lambda: cam.frames_read > n + 5 and cam.state == "ok")


def test_status_reports_a_blocked_read(cameras: list[Camera]) -> None:
    release = threading.Event()

    def block(i: int) -> np.ndarray:
        if i > 2:
            release.wait(10)
        return np.ones((8, 8, 3), np.uint8)

    cam = Camera(lambda: FakeSource(read=block), stall_s=0.2)
    cameras.append(cam)
    cam.start()
    assert cam.latest(timeout=10) is not None
    assert _wait_for(lambda: cam.status()["stalled"])
    assert cam.blocked_s() > 0.2  # the daemon withholds its watchdog ping on this
    release.set()
    assert _wait_for(lambda: cam.blocked_s() == 0.0)  # the read returned: it reopens
    cam.stop()
    assert cam.state == "stopped"


# -- Picamera2 and the demo -------------------------------------------------------------


class FakePicamera2:
    """The slice of picamera2.Picamera2 that Picamera2Source uses; arrays are BGR, as the
    real "RGB888" format is."""

    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.config: dict | None = None
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict) -> dict:
        self.calls.append("create")
        return {"main": dict(main)}

    def configure(self, config: dict) -> None:
        self.calls.append("configure")
        self.config = config

    def start(self) -> None:
        self.calls.append("start")

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert name == "main"
        w, h = self.config["main"]["size"]
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 0] = 200  # blue, in BGR order
        bgr[..., 2] = 10  # red
        return bgr

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


def test_picamera2_frames_are_rgb(cameras: list[Camera]) -> None:
    module = types.SimpleNamespace(Picamera2=FakePicamera2)
    src = Picamera2Source(320, 240, module=module)
    src.open()
    img = src.read()
    src.close()
    pc = FakePicamera2.instances[-1]
    assert pc.config == {"main": {"size": (320, 240), "format": "RGB888"}}
    assert pc.calls == ["create", "configure", "start", "stop", "close"]
    assert img is not None and img.shape == (240, 320, 3) and img.flags.c_contiguous
    assert (img[..., 2] == 200).all() and (img[..., 0] == 10).all()  # now RGB
    assert src.read() is None

    cam = Camera(lambda: Picamera2Source(64, 48, module=module))
    cameras.append(cam)
    cam.start()
    f = cam.latest(timeout=10)
    assert f is not None and f.image.shape == (48, 64, 3) and f.image[0, 0, 2] == 200


def test_picamera2_errors() -> None:
    class NoCamera:
        def __init__(self) -> None:
            raise IndexError("list index out of range")  # what picamera2 does without one

    with pytest.raises(CameraError, match="picamera2"):
        Picamera2Source(64, 48, module=types.SimpleNamespace(Picamera2=NoCamera)).open()
    try:
        sources._import_picamera2()
    except ImportError:
        with pytest.raises(CameraError, match="not installed"):
            Picamera2Source(64, 48).open()


def test_demo_source() -> None:
    src = DemoSource()
    assert src.fps == 15.0
    src.open()
    t0 = time.monotonic()
    frames = [src.read() for _ in range(4)]
    src.close()
    assert time.monotonic() - t0 >= 3 / 15 * 0.95  # paced like a camera
    for f in frames:
        assert f is not None and f.shape == (480, 640, 3) and f.dtype == np.uint8
    assert not all((frames[0] == f).all() for f in frames[1:])  # the scene moves


# -- make_source ----------------------------------------------------------------------------


def test_make_source(video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_source("demo", 640, 480, True), DemoSource)
    assert isinstance(make_source("picamera2", 640, 480, True), Picamera2Source)
    for spec in ("0", "/dev/video2", "rtsp://cam.local/stream1", "http://x:8080/v", str(video)):
        src = make_source(spec, 320, 240, False)
        assert isinstance(src, OpenCVSource) and src.spec == spec
    assert make_source(" 1 ", 640, 480, True).kind == "v4l2"
    assert make_source("rtsp://a/b", 640, 480, True).kind == "stream"
    assert make_source(str(video), 640, 480, True).kind == "file"
    gst = make_source("gst:videotestsrc ! videoflip", 320, 240, False, timeout_s=3.0)
    assert isinstance(gst, GStreamerSource)
    assert (gst.words, gst.width, gst.height, gst.timeout_s) == (
        ["videotestsrc", "!", "videoflip"],
        320,
        240,
        3.0,
    )
    missing = tmp_path / "no_such_clip.mp4"
    with pytest.raises(CameraError, match=r"no_such_clip\.mp4"):
        make_source(str(missing), 640, 480, True)

    monkeypatch.setattr(sources, "picamera2_available", lambda: False)
    monkeypatch.setattr(sources, "DEFAULT_V4L2", str(tmp_path / "video0"))
    assert isinstance(make_source("auto", 640, 480, True), DemoSource)
    (tmp_path / "video0").touch()
    auto = make_source("auto", 640, 480, True)
    assert isinstance(auto, OpenCVSource) and auto.spec == str(tmp_path / "video0")
    monkeypatch.setattr(sources, "picamera2_available", lambda: True)
    assert isinstance(make_source("auto", 640, 480, True), Picamera2Source)


def test_sources_satisfy_protocol(video: Path) -> None:
    for src in (
        DemoSource(),
        Picamera2Source(64, 48),
        OpenCVSource(str(video), 64, 48, False),
        GStreamerSource("videotestsrc", 64, 48),
        FakeSource(),
    ):
        assert isinstance(src, FrameSource)


# -- a real network stream that dies and comes back -----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait(10)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary")
def test_stream_server_dies_hangs_and_returns(video: Path, cameras: list[Camera]) -> None:
    url = f"http://127.0.0.1:{_free_port()}/cam"
    servers = [serve_mjpeg(video, url)]
    try:
        cam = Camera(
            lambda: OpenCVSource(url, 640, 480, realtime=True, timeout_s=2.0),
            reopen_max_s=1.0,
            stall_s=5.0,
        )
        cameras.append(cam)
        cam.start()
        f = cam.latest(timeout=15)
        assert f is not None and f.image.shape == (H, W, 3)
        r, g, b = f.image[5:19, 5:19].reshape(-1, 3).mean(axis=0)
        assert r > 180 and g < 70 and b < 70

        # A hung server (process frozen, socket open): the read timeout must fire.
        os.kill(servers[0].pid, signal.SIGSTOP)
        assert _wait_for(lambda: cam.state == "reopening", timeout=15)
        # ... then it dies for good, and a new one starts on the same address.
        _kill(servers[0])
        time.sleep(0.5)
        servers.append(serve_mjpeg(video, url))
        before = cam.frames_read
        assert _wait_for(lambda: cam.state == "ok" and cam.frames_read > before + 5, timeout=20)
        assert cam.reopens >= 1
        assert cam.latest(timeout=10) is not None
    finally:
        for p in servers:
            _kill(p)
