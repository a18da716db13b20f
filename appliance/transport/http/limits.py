"""Login rate limit per client address, in memory (a restart forgets it; the per-user
lockout in the users store does not). Ten tries a minute per address: a person who
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

    def hit(self, key: str) -> float:
        """Count a try; 0 if allowed, else how many seconds until the next one is."""
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > MAX_ADDRESSES:
                self._seen.clear()
            q = self._seen[key]
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.tries:
                return q[0] + self.window_s - now
            q.append(now)
            return 0.0
