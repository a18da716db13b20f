"""Owner accounts for the web pages and API: passwords, API tokens, sessions, lockout.

Why its own SQLite file (users.sqlite3 beside the gallery) and not the gallery: these
are the transport's credentials, not the door's data; a gallery export or import never
carries them, and the CLI (`appliance user ...`) may write them while the daemon runs
(WAL: the daemon reads each request's session from disk, so a password change or a
revoked token takes effect at once, with no reload).

Passwords are stored as `hashlib.scrypt` hashes (memory-hard: 16 MiB per try, so a
stolen file is slow to attack on a GPU). Session ids and API tokens are random 256-bit
values of which only the SHA-256 is stored: a copy of the file opens no session. There is
no default password: the first owner is made by `appliance user add` or by the one-time
setup code the daemon logs while no account exists (`setup_code`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.store.sqlite import connect, transaction

log = logging.getLogger(__name__)

USERS_FILE = "users.sqlite3"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # scrypt of a megabyte is a cheap way to burn a Pi's CPU
MAX_USER = 64
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_PREFIX = "apl_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL);
"""


class UserError(ValueError):
    """A refused account change or login; `code` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    expires: float


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    dk = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32, maxmem=64 << 20
    )
    b = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b(salt).decode()}${b(dk).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt":
            return False
        dk = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
            maxmem=64 << 20,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk, base64.b64decode(want))


# Checked against when the user name is unknown, so a wrong name costs the same time as a
# wrong password (no user-name oracle by timing).
_DUMMY = hash_password("not a password of anyone", b"0123456789abcdef")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_password_rules(password: Any) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(
            "weak_password", f"a password has {MIN_PASSWORD}..{MAX_PASSWORD} characters"
        )
    return password


def check_user_name(name: Any) -> str:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= MAX_USER
        or not all(ch.isalnum() or ch in "._-@" for ch in name)
    ):
        raise UserError(
            "bad_user", f"a user name is 1..{MAX_USER} letters, digits or . _ - @ (no spaces)"
        )
    return name


class Users:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # secure_delete: an ended session or revoked token leaves no bytes in free pages.
        self.db = connect(self.path, "secure_delete=ON", "foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.path.chmod(0o600)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _audit(self, db: sqlite3.Connection, actor: str, action: str, **detail: Any) -> None:
        db.execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?,?,?,?)",
            (time.time(), actor, action, json.dumps(detail)),
        )

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    # --- accounts ----------------------------------------------------------------------

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM users")[0][0])

    def names(self) -> list[str]:
        return [r[0] for r in self._read("SELECT name FROM users ORDER BY name")]

    def add(self, name: str, password: str, actor: str, only_if_none: bool = False) -> None:
        """A new owner. `only_if_none`: refused once any account exists (the setup code)."""
        check_user_name(name)
        h = hash_password(check_password_rules(password))
        with transaction(self.db, self.lock) as db:
            if only_if_none and db.execute("SELECT COUNT(*) FROM users").fetchone()[0]:
                raise UserError("exists", "an owner account exists already")
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError("exists", f"user {name!r} exists already")
            db.execute(
                "INSERT INTO users (name, hash, created) VALUES (?,?,?)", (name, h, time.time())
            )
            self._audit(db, actor, "user_add", user=name)
        log.info("user %s added by %s", name, actor)

    def set_password(self, name: str, password: str, actor: str) -> None:
        """A new password; every session of the user ends and the lockout is lifted."""
        h = hash_password(check_password_rules(password))
        with transaction(self.db, self.lock) as db:
            cur = db.execute(
                "UPDATE users SET hash = ?, failures = 0, locked_until = 0 WHERE name = ?",
                (h, name),
            )
            if cur.rowcount == 0:
                raise UserError("unknown_user", f"no user {name!r}")
            db.execute("DELETE FROM sessions WHERE user = ?", (name,))
            self._audit(db, actor, "user_passwd", user=name)
        log.info("password of user %s changed by %s", name, actor)

    def delete(self, name: str, actor: str) -> None:
        with transaction(self.db, self.lock) as db:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise UserError("unknown_user", f"no user {name!r}")
            self._audit(db, actor, "user_delete", user=name)

    def login(self, name: str, password: str, max_failures: int, lockout_s: float) -> str:
        """The user's name when the password is right; UserError otherwise. A name is
        locked for `lockout_s` after `max_failures` wrong passwords in a row; while locked
        even the right password is refused (the lock cannot be probed around)."""
        now = time.time()
        row = self._read("SELECT hash, failures, locked_until FROM users WHERE name = ?", (name,))
        stored, failures, locked_until = row[0] if row else (_DUMMY, 0, 0.0)
        ok = verify_password(password[:MAX_PASSWORD], stored)
        if not row:
            raise UserError("bad_login", "wrong user name or password")
        if locked_until > now:
            raise UserError(
                "locked", f"too many wrong passwords; try again in {locked_until - now:.0f} s"
            )
        with transaction(self.db, self.lock) as db:
            if ok:
                db.execute("UPDATE users SET failures = 0 WHERE name = ?", (name,))
                self._audit(db, f"web:{name}", "login")
                return name
            failures += 1
            lock = now + lockout_s if failures >= max_failures else 0.0
            db.execute(
                "UPDATE users SET failures = ?, locked_until = ? WHERE name = ?",
                (0 if lock else failures, lock, name),
            )
            self._audit(db, f"web:{name}", "login_failed", locked=bool(lock))
        if lock:
            log.warning(
                "user %s locked for %.0f s after %d wrong passwords", name, lockout_s, failures
            )
        raise UserError("bad_login", "wrong user name or password")

    # --- sessions ----------------------------------------------------------------------

    def new_session(self, user: str, hours: float) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        s = Session(user, secrets.token_urlsafe(32), time.time() + hours * 3600)
        with transaction(self.db, self.lock) as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            db.execute(
                "INSERT INTO sessions (digest, user, csrf, created, expires) VALUES (?,?,?,?,?)",
                (_digest(sid), user, s.csrf, time.time(), s.expires),
            )
        return sid, s

    def session(self, sid: str) -> Session | None:
        rows = self._read(
            "SELECT user, csrf, expires FROM sessions WHERE digest = ? AND expires > ?",
            (_digest(sid), time.time()),
        )
        return Session(*rows[0]) if rows else None

    def end_session(self, sid: str) -> None:
        with transaction(self.db, self.lock) as db:
            db.execute("DELETE FROM sessions WHERE digest = ?", (_digest(sid),))

    # --- API tokens --------------------------------------------------------------------

    def new_token(self, user: str, label: str, actor: str) -> dict[str, Any]:
        """A token for scripts; its secret is returned this once and never stored."""
        if not isinstance(label, str) or not 1 <= len(label) <= 100:
            raise UserError("malformed", "'label' must be text of 1..100 characters")
        tid = secrets.token_hex(4)
        secret = f"{TOKEN_PREFIX}{tid}_{secrets.token_urlsafe(32)}"
        with transaction(self.db, self.lock) as db:
            if not db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone():
                raise UserError("unknown_user", f"no user {user!r}")
            db.execute(
                "INSERT INTO tokens (id, digest, user, label, created) VALUES (?,?,?,?,?)",
                (tid, _digest(secret), user, label, time.time()),
            )
            self._audit(db, actor, "token_create", id=tid, user=user, label=label)
        log.info("API token %s created for %s by %s", tid, user, actor)
        return {"id": tid, "token": secret, "user": user, "label": label}

    def token_user(self, secret: str) -> str | None:
        rows = self._read("SELECT id, user FROM tokens WHERE digest = ?", (_digest(secret),))
        if not rows:
            return None
        with transaction(self.db, self.lock) as db:
            db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (time.time(), rows[0][0]))
        return str(rows[0][1])

    def tokens(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT id, user, label, created, last_used FROM tokens ORDER BY created")
        keys = ("id", "user", "label", "created", "last_used")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def revoke_token(self, tid: str, actor: str) -> None:
        with transaction(self.db, self.lock) as db:
            if db.execute("DELETE FROM tokens WHERE id = ?", (tid,)).rowcount == 0:
                raise UserError("unknown_token", f"no token {tid!r}")
            self._audit(db, actor, "token_revoke", id=tid)
        log.info("API token %s revoked by %s", tid, actor)

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [
            {"at": at, "actor": actor, "action": action, "detail": json.loads(d)}
            for at, actor, action, d in rows
        ]
