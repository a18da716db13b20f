"""The device's health as one JSON-able dict: the `state` topic, the `status` command,
and (later) the web page's system view all read this, so they never disagree."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance import __version__

log = logging.getLogger(__name__)


# What the frame loop times, and per what: the detector and the aligner (with the quality
# gates) run once per frame whatever it shows; the embedder and the matcher once per face
# worth embedding, so frames with nobody to embed say nothing about them.
STAGES = {"detect": "frame", "align": "frame", "embed": "face", "match_decide": "face"}


def iso_time(ts: float) -> str:
    """A unix time as ISO 8601 with the local UTC offset ("2026-12-02T03:00:00+01:00"):
    what Home Assistant's timestamp sensors parse, and what a person can read."""
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="seconds")


@dataclass
class Meter:
    """Frame rate and per-stage times, smoothed (written by the frame loop only).

    Nothing is reported before it was measured (None, not a 0 that reads like a
    measurement): the frame rate needs two frames, a per-face stage a face."""

    fps: float | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)
    _last: float | None = None

    def stage(self, name: str, seconds: float, count: int = 1) -> None:
        """`seconds` spent on `count` items (frames or faces, see STAGES); none: no sample."""
        if count <= 0:
            return
        ms = seconds * 1e3 / count
        self.stage_ms[name] = 0.9 * self.stage_ms.get(name, ms) + 0.1 * ms

    def tick(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            dt = max(now - self._last, 1e-6)
            self.fps = 1 / dt if self.fps is None else 0.9 * self.fps + 0.1 / dt
        self._last = now

    def stages(self) -> dict[str, float | None]:
        """Every stage in STAGES, in ms per frame or per face, None until measured."""
        return {k: round(self.stage_ms[k], 2) if k in self.stage_ms else None for k in STAGES}


class Health:
    def __init__(
        self,
        *,
        device: str,
        boot: str,
        mode: Callable[[], str],
        meter: Meter,
        parts: dict[str, Callable[[], Any]],
        counters: Callable[[], dict[str, int]],
        free_bytes: Callable[[], int | None],
        min_free_bytes: Callable[[], float],
        state_dir: str,
    ) -> None:
        self.device = device
        self.boot = boot
        self.mode = mode
        self.meter = meter
        self.parts = parts  # name -> what it reports (camera, mqtt, outbox, gallery, ...)
        self.counters = counters
        self.free_bytes = free_bytes
        self.min_free_bytes = min_free_bytes
        self.state_dir = state_dir
        self.started = time.time()
        self._warned_disk = False

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device": self.device,
            "version": __version__,
            "boot": self.boot,
            "time": round(time.time(), 3),
            "mode": self.mode(),
            "started": iso_time(self.started),
            "uptime_s": round(time.time() - self.started, 1),
            "fps": None if self.meter.fps is None else round(self.meter.fps, 2),
            "stage_ms": self.meter.stages(),
            "storage": self._storage(),
            "counters": self.counters(),
        }
        for name, part in self.parts.items():
            out[name] = part()
        return out

    def summary(self, st: dict[str, Any]) -> str:
        """One line for systemd's STATUS=."""
        fps = "no frame yet" if st["fps"] is None else f"{st['fps']} fps"
        return (
            f"{fps}, camera {st['camera'].get('state')}, "
            f"mqtt {st['mqtt']}, outbox {st['outbox']['depth']}"
        )

    def _storage(self) -> dict[str, Any]:
        """Free space where gallery and outbox live; `low` below outbox.min_free_mb."""
        free = self.free_bytes()
        low = free is not None and free < self.min_free_bytes()
        if low and not self._warned_disk:
            log.warning("state directory %s is nearly full: %s bytes free", self.state_dir, free)
        self._warned_disk = low
        return {"free_bytes": free, "low": low}
