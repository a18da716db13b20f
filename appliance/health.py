"""The device's health as one JSON-able dict: the `state` topic, the `status` command,
and (later) the web page's system view all read this, so they never disagree."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance import __version__

log = logging.getLogger(__name__)


@dataclass
class Meter:
    """Frame rate and per-stage times, smoothed (written by the frame loop only)."""

    fps: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    _last: float | None = None

    def stage(self, name: str, seconds: float) -> None:
        ms = seconds * 1e3
        self.stage_ms[name] = 0.9 * self.stage_ms.get(name, ms) + 0.1 * ms

    def tick(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            dt = max(now - self._last, 1e-6)
            self.fps = 0.9 * self.fps + 0.1 / dt if self.fps else 1 / dt
        self._last = now


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
            "uptime_s": round(time.time() - self.started, 1),
            "fps": round(self.meter.fps, 2),
            "stage_ms": {k: round(v, 2) for k, v in self.meter.stage_ms.items()},
            "storage": self._storage(),
            "counters": self.counters(),
        }
        for name, part in self.parts.items():
            out[name] = part()
        return out

    def summary(self, st: dict[str, Any]) -> str:
        """One line for systemd's STATUS=."""
        return (
            f"{st['fps']} fps, camera {st['camera'].get('state')}, "
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
