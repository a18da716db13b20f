"""GStreamer cameras: `camera.source: "gst:<pipeline>"`, read from a gst-launch-1.0 child.

A Jetson's CSI camera is only reachable through GStreamer (nvarguscamerasrc), and the
OpenCV wheel from PyPI is built without GStreamer; PyGObject would tie the venv to the
system Python. So the pipeline runs in a `gst-launch-1.0` child process that ends it with

    ! videoconvert ! videoscale ! video/x-raw,format=RGB,width=W,height=H,pixel-aspect-ratio=1/1
    ! queue max-size-buffers=1 leaky=downstream ! fdsink fd=N sync=false

and this source reads fixed-size RGB frames from the pipe on fd N. Why each part:

- format=RGB: the project's frames are RGB (appliance.camera.sources), so the conversion
  happens once, in the child, and a frame here is only a copy out of the pipe.
- width/height with pixel-aspect-ratio=1/1: every frame has the same number of bytes,
  which is what splits the byte stream into frames; the square pixels make videoscale
  letterbox a sensor of another aspect ratio instead of squashing faces.
- the leaky one-buffer queue: if the reader falls behind, GStreamer drops the older
  frame rather than queueing it (the grabber's newest-frame rule, applied in the child;
  OpenCV's V4L2 source gets the same from CAP_PROP_BUFFERSIZE 1).
- sync=false: a live camera is paced by its sensor; `camera.realtime` does not apply
  (to play a file, name the file itself as the source).
- a pipe of its own rather than stdout: elements print to stdout (nvarguscamerasrc's
  "GST_ARGUS: ..." lines), which would corrupt the frames. The child's stdout and
  stderr go to a small log file whose tail explains a failure.

The source follows the FrameSource rules: it never reconnects by itself. A pipeline
that cannot start fails `open()` with GStreamer's own message, a child that dies or
stops sending frames fails `read()`, and the grabber reopens with backoff. The child
never outlives the source: `close()` stops it (SIGINT, then SIGKILL) and reaps it; and
if this process dies without closing, the child's next write hits a closed pipe and
SIGPIPE ends it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from typing import IO

import numpy as np

from appliance.camera.sources import CameraError

log = logging.getLogger(__name__)

PREFIX = "gst:"
GST_LAUNCH = "gst-launch-1.0"
# How long close() lets the child stop its pipeline after SIGINT before killing it.
# nvarguscamerasrc wants the orderly stop: a killed client can leave nvargus-daemon
# holding the sensor until it is restarted.
CLOSE_GRACE_S = 2.0
# Bytes of the child's log read back for an error message, and the size at which the
# log is emptied, so a chatty element cannot fill the disk over months.
_LOG_TAIL = 4096
_LOG_MAX = 256 * 1024


def frame_stride(width: int) -> int:
    """Bytes per row of a GStreamer RGB frame: GStreamer pads each row to 4 bytes."""
    return (width * 3 + 3) & ~3


def parse_pipeline(pipeline: str) -> list[str]:
    """The words of a `camera.source` pipeline (without the "gst:"), or CameraError.

    Split as a shell would split it, so a pipeline copied from a `gst-launch-1.0 ...`
    command line works as it is, quotes included
    ('video/x-raw(memory:NVMM),width=1920,height=1080').
    """
    try:
        words = shlex.split(pipeline)
    except ValueError as e:
        raise CameraError(f"camera source {PREFIX}{pipeline!r}: {e}") from e
    if not words:
        raise CameraError(
            f"camera source {PREFIX}{pipeline!r}: no pipeline after {PREFIX!r} "
            '(e.g. "gst:nvarguscamerasrc ! nvvidconv" or "gst:v4l2src device=/dev/video0")'
        )
    if words[-1] == "!" or words[0] == "!":
        raise CameraError(
            f"camera source {PREFIX}{pipeline!r}: starts or ends with '!' "
            "(the appliance adds the conversion and the sink itself)"
        )
    return words


def gst_argv(words: list[str], width: int, height: int, fd: int) -> list[str]:
    """gst-launch-1.0's arguments: the pipeline, then RGB frames of one size into `fd`."""
    caps = f"video/x-raw,format=RGB,width={width},height={height},pixel-aspect-ratio=1/1"
    return [
        "-q",
        *words,
        *("!", "videoconvert", "!", "videoscale", "!", caps),
        *("!", "queue", "max-size-buffers=1", "max-size-bytes=0", "max-size-time=0"),
        "leaky=downstream",
        *("!", "fdsink", f"fd={fd}", "sync=false"),
    ]


def gst_error(log_text: str) -> str:
    """GStreamer's own reason from gst-launch-1.0's output, in one line.

    gst-launch prints "WARNING: erroneous pipeline: ..." for a pipeline it cannot build
    and "ERROR: from element ...: <summary>" followed by "Additional debug info:", a
    source location and the detail for one that fails at run time.
    """
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for tag in ("ERROR:", "WARNING:"):
        for i, ln in enumerate(lines):
            if ln.startswith(tag):
                if i + 3 < len(lines) and lines[i + 1].startswith("Additional debug info"):
                    return f"{ln} ({lines[i + 3]})"
                return ln
    return lines[-1] if lines else ""


class GStreamerSource:
    """Frames from `gst-launch-1.0 <pipeline> ! ... ! fdsink` (see the module docstring)."""

    def __init__(self, pipeline: str, width: int, height: int, timeout_s: float = 10.0) -> None:
        self.pipeline = pipeline.strip()
        self.words = parse_pipeline(self.pipeline)  # bad quoting fails before any child runs
        self.width, self.height = width, height
        self.timeout_s = timeout_s
        self.name = PREFIX + self.pipeline
        self.fps: float | None = None
        self._stride = frame_stride(width)
        self._proc: subprocess.Popen[bytes] | None = None
        self._frames: IO[bytes] | None = None  # the read end of the frame pipe
        self._log: IO[bytes] | None = None
        self._pending: np.ndarray | None = None
        # The last child's exit status once closed: 0 after an orderly stop (SIGINT),
        # -9 if it had to be killed (SIGKILL).
        self.last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (for tests and diagnostics)."""
        return None if self._proc is None else self._proc.pid

    def open(self) -> None:
        self.close()  # never two children for one source
        exe = shutil.which(GST_LAUNCH)
        if exe is None:
            raise CameraError(
                f"camera source {self.name!r}: {GST_LAUNCH} not found (apt install "
                "gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good)"
            )
        # A file, not a pipe: a chatty child can never block on it. O_APPEND so that
        # emptying it (_trim_log) moves the child's writes back to the start too.
        self._log = tempfile.TemporaryFile(prefix="appliance-gst-")  # noqa: SIM115 (closed in close())
        fl = fcntl.fcntl(self._log.fileno(), fcntl.F_GETFL)
        fcntl.fcntl(self._log.fileno(), fcntl.F_SETFL, fl | os.O_APPEND)
        r, w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [exe, *gst_argv(self.words, self.width, self.height, w)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                pass_fds=(w,),
            )
        except OSError as e:
            os.close(r)
            self.close()
            raise CameraError(f"camera source {self.name!r}: cannot start {exe}: {e}") from e
        finally:
            os.close(w)  # the child's copy is the only write end: its exit means EOF here
        self._frames = os.fdopen(r, "rb", buffering=0)
        # The first frame is read here, so a pipeline that cannot start (a missing
        # element, no camera, caps that do not link) fails open() with GStreamer's
        # reason instead of looking like a camera that opened and then went quiet.
        try:
            first = self._read_frame()
            if first is None:
                raise CameraError(self._exit_message("before its first frame"))
        except Exception:
            self.close()
            raise
        self._pending = first
        log.info(
            "opened %s (%s pid %d) %dx%d", self.name, GST_LAUNCH, self.pid, self.width, self.height
        )

    def read(self) -> np.ndarray | None:
        """The next frame; None when the pipeline ended normally (end of stream).

        A child that died with an error or stalled raises CameraError with the reason,
        which the grabber shows as `last_error` and answers with a reopen.
        """
        if self._proc is None:
            return None
        if self._pending is not None:
            img, self._pending = self._pending, None
            return img
        self._trim_log()
        img = self._read_frame()
        if img is None:
            # The child closed the pipe: it is exiting. A clean exit is the end of a
            # finite stream; anything else is a failure, with GStreamer's reason.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=CLOSE_GRACE_S)
            if self._proc.returncode != 0:
                raise CameraError(self._exit_message("mid-stream"))
            log.info("%s: end of stream", self.name)
        return img

    def _read_frame(self) -> np.ndarray | None:
        """One frame, None at end of stream; CameraError after timeout_s without one."""
        assert self._frames is not None
        buf = np.empty(self._stride * self.height, np.uint8)
        view = memoryview(buf)
        got = 0
        poller = select.poll()
        poller.register(self._frames.fileno(), select.POLLIN)
        deadline = time.monotonic() + self.timeout_s
        while got < len(buf):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                why = gst_error(self._log_text())
                raise CameraError(
                    f"{self.name}: stalled: no frame from {GST_LAUNCH} for "
                    f"{self.timeout_s:.1f} s" + (f" ({why})" if why else "")
                )
            n = self._frames.readinto(view[got:])
            if not n:
                if got:
                    log.warning("%s: stream ended inside a frame (%d bytes)", self.name, got)
                return None
            got += n
        rows = buf.reshape(self.height, self._stride)
        if self._stride != self.width * 3:
            rows = np.ascontiguousarray(rows[:, : self.width * 3])
        return rows.reshape(self.height, self.width, 3)

    def _log_text(self) -> str:
        """The tail of what the child printed."""
        if self._log is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            end = self._log.seek(0, os.SEEK_END)
            self._log.seek(max(0, end - _LOG_TAIL))
            return self._log.read().decode("utf-8", "replace")
        return ""

    def _trim_log(self) -> None:
        if self._log is not None and os.fstat(self._log.fileno()).st_size > _LOG_MAX:
            self._log.truncate(0)

    def _exit_message(self, when: str) -> str:
        """Why the child stopped sending, for CameraError and the health topic."""
        assert self._proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=CLOSE_GRACE_S)
        rc = self._proc.returncode
        how = "still running" if rc is None else f"exited with {rc}"
        if rc is not None and rc < 0:
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-rc).name}"
        why = gst_error(self._log_text()) or "no output"
        return f"{self.name}: {GST_LAUNCH} {how} {when}: {why}"

    def close(self) -> None:
        """Stop the child and wait for it; never leaves a process behind."""
        proc, self._proc = self._proc, None
        frames, self._frames = self._frames, None
        self._pending = None
        if proc is not None:
            _stop(proc, frames, CLOSE_GRACE_S)
            self.last_exit = proc.returncode
        for f in (frames, self._log):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._log = None


def _stop(proc: subprocess.Popen[bytes], frames: IO[bytes] | None, grace_s: float) -> None:
    """SIGINT (gst-launch then stops its pipeline in order), SIGKILL after grace_s.

    The frame pipe is drained meanwhile: a child blocked writing a frame nobody reads
    would never finish its SIGINT handler's pipeline shutdown.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    if frames is not None:
        poller = select.poll()
        poller.register(frames.fileno(), select.POLLIN)
        while proc.poll() is None and (left := deadline - time.monotonic()) > 0:
            if poller.poll(min(left, 0.1) * 1000) and not frames.read(1 << 16):
                break  # EOF: the child closed its end
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        log.warning(
            "%s pid %d still running %.1f s after SIGINT; killing it", GST_LAUNCH, proc.pid, grace_s
        )
        proc.kill()
        proc.wait()
