"""The live view: a small annotated JPEG of what the door sees, only while someone looks.

The frame loop must not pay for a page nobody has open, so it renders nothing until a
logged-in browser asks (`touch`), and then at most `fps` frames a second, downscaled to
`WIDTH` pixels. Rendering happens in the frame loop's own thread between frames (`offer`,
called from the app's once-a-pass hook), where the last processed frame and the tracker's
boxes are consistent; the HTTP thread only reads the finished JPEG and, beside it, what
was drawn on it as data (`caption`: each face's box and name or "unknown", the decision
on top), which the page prints under the picture as text.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2
import numpy as np

from appliance.camera.grabber import Camera, Frame
from appliance.vision.imageio import encode_jpeg

WIDTH = 480
WATCH_S = 3.0  # a viewer counts as watching this long after its last request
DECISION_S = 4.0  # a decision stays on the picture this long
COLOURS = {"granted": (40, 180, 60), "check_in": (40, 180, 60), "check_out": (40, 140, 200)}


class LiveTap:
    """The camera as the frame loop sees it, remembering the last frame it handed out."""

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.last: Frame | None = None

    def latest(self, timeout: float) -> Frame | None:
        f = self.camera.latest(timeout)
        if f is not None:
            self.last = f
        return f

    def __getattr__(self, name: str) -> Any:  # blocked_s, status, state, ...
        return getattr(self.camera, name)


class LiveView:
    def __init__(self, fps: float) -> None:
        self.fps = fps
        self._lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._index = -1
        self._watched_until = 0.0
        self._next = 0.0
        self._decision: tuple[float, str, tuple[int, int, int]] | None = None
        self._caption: dict[str, Any] = {"frame": None, "faces": [], "decision": None}
        self.rendered = 0

    def touch(self) -> bytes | None:
        """A viewer asks: keep rendering for a while; the newest JPEG (None before the first)."""
        self._watched_until = time.monotonic() + WATCH_S
        with self._lock:
            return self._jpeg

    def caption(self) -> dict[str, Any]:
        """What the newest JPEG shows, as data: {frame, faces: [{box, label, known}],
        decision} (the frame index is None before the first)."""
        self._watched_until = time.monotonic() + WATCH_S
        with self._lock:
            return self._caption

    @property
    def watched(self) -> bool:
        return time.monotonic() < self._watched_until

    def decided(self, payload: dict[str, Any]) -> None:
        """A decision (frame loop): shown on the picture for a few seconds."""
        who = payload.get("name") or "unknown"
        d = str(payload.get("decision"))
        self._decision = (
            time.monotonic() + DECISION_S,
            f"{who}: {d}",
            COLOURS.get(d, (200, 60, 40)),
        )

    def offer(self, frame: Frame | None, tracks: list[Any]) -> None:
        """Frame loop, once a pass: render if watched, due and a new frame is there."""
        now = time.monotonic()
        if frame is None or now >= self._watched_until or now < self._next:
            return
        if frame.index == self._index:
            return
        self._next = now + 1.0 / self.fps
        caption = self.describe(tracks)
        jpeg = encode_jpeg(self.render(frame.image, caption))
        with self._lock:
            self._jpeg, self._index = jpeg, frame.index
            self._caption = {**caption, "frame": frame.index}
        self.rendered += 1

    def describe(self, tracks: list[Any]) -> dict[str, Any]:
        """The faces in view (box in frame pixels, the name of the last vote, "unknown",
        or "..." before the first vote) and the decision still shown."""
        faces = []
        for t in tracks:
            if t.missed:
                continue
            label, known = "...", None
            if t.votes:
                m = t.votes[-1].match
                label, known = (m.name if m.accepted else "unknown"), bool(m.accepted)
            faces.append(
                {"box": [round(float(v), 1) for v in t.box[:4]], "label": label, "known": known}
            )
        d = self._decision
        shown = d[1] if d is not None and time.monotonic() < d[0] else None
        return {"faces": faces, "decision": shown}

    def render(self, image: np.ndarray, caption: dict[str, Any]) -> np.ndarray:
        h, w = image.shape[:2]
        s = min(1.0, WIDTH / w)
        img = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        for f in caption["faces"]:
            x1, y1, x2, y2 = (int(v * s) for v in f["box"])
            colour = {None: (220, 200, 40), True: (40, 180, 60), False: (200, 60, 40)}[f["known"]]
            cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(
                img, f["label"], (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1
            )
        d = self._decision
        if caption["decision"] is not None and d is not None:
            cv2.rectangle(img, (0, 0), (img.shape[1], 24), (0, 0, 0), -1)
            cv2.putText(img, caption["decision"], (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, d[2], 1)
        return img
