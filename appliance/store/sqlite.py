"""The one way this appliance opens SQLite and writes to it.

Gallery and outbox both need the same guarantees: WAL (readers never block the frame
loop), `synchronous=FULL` (what was acknowledged survives a power cut) and changes in one
`BEGIN IMMEDIATE` transaction (a crash leaves all or nothing).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path


def connect(path: Path, *pragmas: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", *pragmas):
        db.execute(f"PRAGMA {pragma}")
    return db


@contextlib.contextmanager
def transaction(
    db: sqlite3.Connection, lock: threading.Lock | None = None
) -> Iterator[sqlite3.Connection]:
    with lock if lock is not None else contextlib.nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")  # can fail too (disk full): then roll back as well
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
