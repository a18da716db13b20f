"""The GStreamer camera source on real gst-launch-1.0 children (videotestsrc), alone and
under the grabber: frames, failures with GStreamer's reasons, stalls, and no child left
behind. `make test` installs gstreamer1.0-tools and gstreamer1.0-plugins-base.

No assertion depends on the machine being fast: waits poll with generous timeouts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance.camera import gstreamer
from appliance.camera.grabber import REOPEN_MIN_S, Camera
from appliance.camera.gstreamer import GStreamerSource, frame_stride, gst_error
from appliance.camera.sources import CameraError, make_source

ROOT = Path(__file__).resolve().parents[1]


def _have_gstreamer() -> bool:
    if shutil.which("gst-launch-1.0") is None or shutil.which("gst-inspect-1.0") is None:
        return False
    for element in ("videotestsrc", "videoconvert", "videoscale", "fdsink"):
        r = subprocess.run(["gst-inspect-1.0", element], capture_output=True, check=False)
        if r.returncode != 0:
            return False
    return True


pytestmark = pytest.mark.skipif(
    not _have_gstreamer(),
    reason="needs gst-launch-1.0 with videotestsrc (apt install gstreamer1.0-tools "
    "gstreamer1.0-plugins-base; `make test` does)",
)

LIVE = "videotestsrc is-live=true"


def _wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may wait for a reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gst_children() -> list[int]:
    """This process's gst-launch-1.0 children, zombies included (a child that was never
    waited for is left behind too)."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        if ppid == me and comm.startswith("gst-launch"):
            found.append(int(stat.parent.name))
    return found


def _camera(spec: str, width: int = 64, height: int = 48, **kw: float) -> Camera:
    timeout_s = kw.pop("timeout_s", 5.0)
    return Camera(lambda: make_source(spec, width, height, True, timeout_s), **kw)


@pytest.fixture
def cameras() -> Iterator[list[Camera]]:
    made: list[Camera] = []
    yield made
    for cam in made:
        cam.stop()


# -- the source alone -----------------------------------------------------------------


def test_frames_are_rgb_of_the_configured_size() -> None:
    # 162 px: 486 bytes a row, which GStreamer pads to 488; the padding must not shear.
    assert frame_stride(162) == 488 and frame_stride(160) == 480
    red = GStreamerSource(f"{LIVE} pattern=red", 162, 120)
    red.open()
    try:
        frames = [red.read() for _ in range(3)]
    finally:
        red.close()
    for f in frames:
        assert f is not None and f.shape == (120, 162, 3) and f.dtype == np.uint8
        assert f.flags.c_contiguous
        assert (f[..., 0] > 200).all() and (f[..., 1:] < 50).all()  # RGB, not BGR
    assert red.read() is None  # closed

    bars = GStreamerSource(f"{LIVE} pattern=smpte", 162, 120)
    bars.open()
    try:
        f = bars.read()
    finally:
        bars.close()
    assert f is not None
    # SMPTE bars are vertical in the top two thirds: every row there is the same.
    assert np.abs(f[2].astype(int) - f[70].astype(int)).max() <= 2
    assert len({tuple(px) for px in f[2, ::20]}) >= 5  # and they are bars, not one colour


@pytest.mark.parametrize(
    "caps",
    [
        "video/x-raw,width=1280,height=720",  # a 16:9 sensor mode
        "video/x-raw,width=640,height=480,pixel-aspect-ratio=4/3",  # 16:9 in wide pixels
    ],
)
def test_other_aspect_ratio_is_letterboxed_not_squashed(caps: str) -> None:
    src = GStreamerSource(f"{LIVE} pattern=white ! {caps}", 640, 480)
    src.open()
    try:
        f = src.read()
    finally:
        src.close()
    assert f is not None and f.shape == (480, 640, 3)
    white_rows = (f[:, 320, :] > 200).all(axis=1)
    # 16:9 in 4:3 at square pixels: 360 picture rows between black bars of 60.
    assert white_rows.sum() == 360 and white_rows[60:420].all()
    assert (f[:50] < 20).all() and (f[430:] < 20).all()


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("gst:nosuchelement ! videoconvert", 'no element "nosuchelement"'),
        ("gst:filesrc location=/nonexistent/cam.raw", 'No such file "/nonexistent/cam.raw"'),
        ("gst:videotestsrc ! video/x-raw,width=abc", "could not link"),
    ],
)
def test_a_pipeline_that_cannot_start_says_why(spec: str, reason: str) -> None:
    src = make_source(spec, 64, 48, True, timeout_s=10.0)
    with pytest.raises(CameraError, match="before its first frame") as e:
        src.open()
    assert reason in str(e.value)
    assert spec in str(e.value)
    assert src.pid is None and src.read() is None
    assert _gst_children() == []


def test_config_mistakes_fail_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec, match in (
        ("gst:", "no pipeline"),
        ("gst:   ", "no pipeline"),
        ("gst:videotestsrc ! 'video/x-raw", "No closing quotation"),
        ("gst:videotestsrc !", "ends with '!'"),
    ):
        with pytest.raises(CameraError, match=match):
            make_source(spec, 64, 48, True)
    monkeypatch.setattr(gstreamer, "GST_LAUNCH", "gst-launch-0.0-absent")
    with pytest.raises(CameraError, match=r"not found \(apt install gstreamer1\.0-tools"):
        GStreamerSource(LIVE, 64, 48).open()


def test_shell_quoting_is_accepted() -> None:
    src = make_source(
        "gst:videotestsrc is-live=true ! 'video/x-raw,framerate=(fraction)15/1'", 64, 48, True
    )
    src.open()
    try:
        f = src.read()
    finally:
        src.close()
    assert f is not None and f.shape == (48, 64, 3)


def test_end_of_stream_then_none() -> None:
    src = GStreamerSource(f"{LIVE} num-buffers=4", 64, 48)
    src.open()
    try:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
            assert len(frames) <= 4
    finally:
        src.close()
    assert 1 <= len(frames) <= 4  # the leaky queue may drop one; never more than sent


def test_a_child_that_dies_mid_stream_fails_the_read() -> None:
    src = GStreamerSource(LIVE, 64, 48)
    src.open()
    pid = src.pid
    assert pid is not None and src.read() is not None
    os.kill(pid, signal.SIGKILL)
    try:
        with pytest.raises(CameraError, match="killed by SIGKILL mid-stream"):
            for _ in range(100):  # frames already in the pipe come first
                src.read()
    finally:
        src.close()
    assert _gst_children() == []


def test_a_stalled_child_fails_the_read_and_is_killed() -> None:
    src = GStreamerSource(LIVE, 64, 48, timeout_s=1.0)
    src.open()
    pid = src.pid
    assert pid is not None and src.read() is not None
    os.kill(pid, signal.SIGSTOP)  # a hung driver: the process is there, no frames come
    try:
        with pytest.raises(CameraError, match=r"stalled: no frame from gst-launch-1\.0 for 1\.0 s"):
            for _ in range(100):  # frames already in the pipe come first
                src.read()
    finally:
        src.close()  # SIGINT cannot reach a stopped process: the grace ends in SIGKILL
    assert not _alive(pid) and src.last_exit == -signal.SIGKILL


def test_close_stops_the_child() -> None:
    src = GStreamerSource(LIVE, 64, 48)
    src.open()
    pid = src.pid
    assert pid is not None and _alive(pid)
    time.sleep(0.5)  # let it block on a full pipe: close() must still stop it
    src.close()
    assert src.last_exit == 0  # stopped in order by SIGINT, not killed
    assert not _alive(pid)
    assert _gst_children() == []  # reaped, not a zombie of ours
    src.close()  # twice is harmless


def test_child_dies_with_a_killed_parent(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from appliance.camera.gstreamer import GStreamerSource\n"
        f"s = GStreamerSource({LIVE!r}, 64, 48)\n"
        "s.open()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        child = int(line)
        assert _alive(child)
        parent.kill()  # no close(), no atexit: only the broken pipe can end the child
        parent.wait(10)
        assert _wait_for(lambda: not _alive(child))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_a_chatty_child_cannot_fill_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GST_DEBUG", "basesrc:6")  # about 1 kB of log per frame
    monkeypatch.setattr(gstreamer, "_LOG_MAX", 4096)
    src = GStreamerSource(LIVE, 64, 48)
    src.open()
    sizes = []
    try:
        for _ in range(60):
            assert src.read() is not None
            assert src._log is not None
            sizes.append(os.fstat(src._log.fileno()).st_size)
    finally:
        src.close()
    assert max(sizes) > 4096  # the log did grow past the limit ...
    assert sizes[-1] < 32 * 1024  # ... and was emptied (60 frames write about 70 kB)


def test_gst_error_picks_gstreamers_reason() -> None:
    text = (
        "Setting pipeline to PAUSED ...\n"
        "ERROR: from element /GstPipeline:pipeline0/GstV4l2Src:v4l2src0: Cannot identify "
        "device '/dev/video9'.\n"
        "Additional debug info:\n"
        "../sys/v4l2/v4l2_calls.c(637): gst_v4l2_open (): /GstPipeline:pipeline0/GstV4l2Src:\n"
        "system error: No such file or directory\n"
    )
    assert gst_error(text) == (
        "ERROR: from element /GstPipeline:pipeline0/GstV4l2Src:v4l2src0: Cannot identify "
        "device '/dev/video9'. (system error: No such file or directory)"
    )
    assert gst_error("GST_ARGUS: Creating output stream\nsomething else\n") == "something else"
    assert gst_error("") == ""


# -- under the grabber ----------------------------------------------------------------


def test_camera_gets_frames_and_stop_ends_the_child(cameras: list[Camera]) -> None:
    assert _gst_children() == []
    cam = _camera(f"gst:{LIVE}", 96, 64, reopen_max_s=1.0, stall_s=5.0)
    cameras.append(cam)
    cam.start()
    first = cam.latest(timeout=20)
    assert first is not None and first.image.shape == (64, 96, 3)
    later = cam.latest(timeout=20)
    assert later is not None and later.index > first.index
    assert cam.state == "ok" and cam.status()["source"] == f"gst:{LIVE}"
    children = _gst_children()
    assert len(children) == 1 and _alive(children[0])
    cam.stop()
    assert _gst_children() == [] and not _alive(children[0])


def test_camera_backs_off_on_a_broken_pipeline(cameras: list[Camera]) -> None:
    cam = _camera("gst:nosuchelement", reopen_max_s=1.0)
    cameras.append(cam)
    cam.start()
    assert _wait_for(lambda: cam.reopens >= 2)
    assert cam.state == "reopening" and cam.frames_read == 0
    assert cam.last_error is not None and 'no element "nosuchelement"' in cam.last_error
    assert cam._backoff == 1.0 > REOPEN_MIN_S  # doubled from 0.5, capped at reopen_max_s
    cam.stop()
    # Every failed child was waited for (checked once stopped: while the camera retries,
    # the next attempt's child may be starting at the instant of the check).
    assert _gst_children() == []


def test_camera_reopens_after_end_of_stream(cameras: list[Camera]) -> None:
    cam = _camera(f"gst:{LIVE} num-buffers=3", reopen_max_s=0.5)
    cameras.append(cam)
    cam.start()
    assert _wait_for(lambda: cam.reopens >= 2 and cam.frames_read >= 3)
    cam.stop()
    assert _gst_children() == []


def test_camera_reopens_a_stalled_pipeline(cameras: list[Camera]) -> None:
    cam = _camera(f"gst:{LIVE}", timeout_s=1.0, reopen_max_s=0.5, stall_s=1.0)
    cameras.append(cam)
    cam.start()
    assert cam.latest(timeout=20) is not None
    (hung,) = _gst_children()
    os.kill(hung, signal.SIGSTOP)  # a hung driver: the process is there, no frames come
    assert _wait_for(lambda: cam.reopens >= 1)
    assert cam.last_error is not None and "stalled" in cam.last_error
    assert not _alive(hung)  # killed on close, not left stopped
    n = cam.frames_read
    assert _wait_for(lambda: cam.state == "ok" and cam.frames_read > n + 3)
    assert hung not in _gst_children() and len(_gst_children()) == 1
    cam.stop()
    assert _gst_children() == []
