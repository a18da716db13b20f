"""A hybrid logical clock: versions that follow wall time but never go backwards.

A version is one 64-bit integer: milliseconds since the epoch shifted left 16 bits, plus
a counter in the low 16 bits. `tick` gives a version later than every version this door
has issued or seen, so a change made right after applying another door's change always
wins over it, even if this door's clock is behind (causality survives clock skew), and
two versions from one door never repeat. Why not a plain timestamp: two changes in one
millisecond, or a door whose clock is a little behind, would lose a change. Why not a
vector clock: its size grows with the number of doors, and last-writer-wins per record
needs only a total order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SHIFT = 16


def wall_ms(hlc: int) -> int:
    return hlc >> SHIFT


def from_seconds(t: float) -> int:
    return int(t * 1000) << SHIFT


class Clock:
    def __init__(self, now: Callable[[], float] = time.time, last: int = 0) -> None:
        self._now = now
        self.last = last
        self._lock = threading.Lock()

    def tick(self) -> int:
        """A new version: after wall time, after everything issued or observed."""
        with self._lock:
            self.last = max(from_seconds(self._now()), self.last + 1)
            return self.last

    def observe(self, remote: int) -> None:
        """Remember a version seen from another door (its future is our lower bound)."""
        with self._lock:
            self.last = max(self.last, remote)

    def skew_s(self, remote: int) -> float:
        """How far `remote` is ahead of this door's wall clock, in seconds."""
        return (wall_ms(remote) - wall_ms(from_seconds(self._now()))) / 1000.0
