"""Login rate limit per client address, in memory (a restart forgets it; the per-user
lockout in the users store does not). Ten failed tries a minute per address: a person who
mistypes never notices it, a script guessing passwords gets 14,400 tries a day at most,
and the user-name lockout stops it long before."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

TRIES = 10
WINDOW_S = 60.0
MAX_ADDRESSES = 10_000  # bounded memory under a flood from many addresses


class RateLimit:
    def __init__(self, tries: int = TRIES, window_s: float = WINDOW_S) -> None:
        self.tries = tries
        self.window_s = window_s
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """0 if `key` may try now, else how many seconds until it may."""
        now = time.monotonic()
        with self._lock:
            q = self._seen.get(key)
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if q is not None and len(q) >= self.tries:
                return q[0] + self.window_s - now
            return 0.0

    def hit(self, key: str) -> None:
        """Count a failed try of `key`."""
        with self._lock:
            if len(self._seen) > MAX_ADDRESSES:
                self._seen.clear()
            self._seen[key].append(time.monotonic())
