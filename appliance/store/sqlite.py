"""The one way this appliance opens SQLite and writes to it.

Gallery and outbox both need the same guarantees: WAL (readers never block the frame
loop), `synchronous=FULL` (what was acknowledged survives a power cut) and changes in one
`BEGIN IMMEDIATE` transaction (a crash leaves all or nothing).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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


def is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


def write(
    db: sqlite3.Connection,
    lock: threading.Lock,
    fn: Callable[[sqlite3.Connection], T],
    on_full: Callable[[sqlite3.Connection], None] | None = None,
) -> T:
    """One transaction; on a full disk, checkpoint (so the write-ahead log restarts at
    its beginning, reusing its space), run `on_full` (make room) and try once more."""
    try:
        with transaction(db, lock) as tx:
            return fn(tx)
    except sqlite3.Error as exc:
        if not is_full(exc):
            raise
    with lock:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    with transaction(db, lock) as tx:
        if on_full is not None:
            on_full(tx)
        return fn(tx)
