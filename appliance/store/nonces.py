"""Nonces of accepted commands, so a signed command is accepted once.

They live in the outbox's file and share its connection and lock (`Outbox.db`,
`Outbox.lock`): a restart does not reopen the replay window, and the outbox's reserved
free pages cover these small writes on a nearly full disk too. Pruned to twice the
signature's age window.
"""

from __future__ import annotations

import sqlite3
import threading
import time

from appliance.store.sqlite import write


class Nonces:
    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db = db
        self.lock = lock
        with lock:
            db.execute(
                "CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, seen REAL NOT NULL)"
            )

    def seen(self, nonce: str, window_s: float) -> bool:
        """Record `nonce`; True if it was already used within the window."""
        now = time.time()

        def record(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM nonces WHERE seen < ?", (now - 2 * window_s,))
            try:
                db.execute("INSERT INTO nonces (nonce, seen) VALUES (?, ?)", (nonce, now))
            except sqlite3.IntegrityError:
                return True
            return False

        return write(self.db, self.lock, record)
