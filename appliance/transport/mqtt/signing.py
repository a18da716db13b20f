"""Signed commands: anyone who can publish on the broker must not be able to enrol a
face, delete someone or open the door.

Wire format (the payload of `<prefix>/<device>/cmd/<name>`):

    {"body": "<JSON text>", "sig": "<hex HMAC-SHA256(key, body text)>"}

The body is carried as a string so the signature covers its exact bytes (no JSON
canonicalisation to disagree about). The body holds `cmd` and `device`, which must equal
the topic's command and this device (a signed `list` cannot be replayed as a `delete`,
nor on another door), `ts` (unix seconds; older or newer than the window is refused),
a random `nonce` (each accepted once: a replay is refused), `request_id`, and `args`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_PAYLOAD = 24 * 1024 * 1024  # a few base64 photos; anything larger is refused unread


class CommandRejected(ValueError):
    def __init__(self, code: str, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.request_id = request_id


def read_secret(path: str, credential: str) -> bytes | None:
    """A secret from a file path, else from systemd's $CREDENTIALS_DIRECTORY/<credential>."""
    candidates = [Path(path)] if path else []
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        candidates.append(Path(cred_dir) / credential)
    for p in candidates:
        if p.is_file():
            return p.read_bytes().strip()
    return None


def sign(
    key: bytes,
    cmd: str,
    device: str,
    args: dict[str, Any] | None = None,
    request_id: str | None = None,
    ts: float | None = None,
) -> bytes:
    body = json.dumps(
        {
            "cmd": cmd,
            "device": device,
            "ts": time.time() if ts is None else ts,
            "nonce": secrets.token_hex(16),
            "request_id": request_id or uuid.uuid4().hex,
            "args": args or {},
        }
    )
    sig = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"body": body, "sig": sig}).encode()


def _request_id(obj: Any) -> str | None:
    rid = obj.get("request_id") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str) and len(rid) <= 128 else None


def verify(
    payload: bytes,
    cmd: str,
    device: str,
    key: bytes | None,
    required: bool,
    window_s: float,
    nonce_seen: Callable[[str, float], bool],
) -> dict[str, Any]:
    """The command's body if it is authentic, fresh and new; else CommandRejected."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandRejected("too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        outer = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting too
        raise CommandRejected("malformed", f"payload is not JSON: {exc}") from exc
    if not isinstance(outer, dict):
        raise CommandRejected("malformed", "payload must be a JSON object")
    signed = "sig" in outer or "body" in outer
    if signed:
        body_text, sig = outer.get("body"), outer.get("sig")
        if not isinstance(body_text, str) or not isinstance(sig, str):
            raise CommandRejected("malformed", "'body' must be a string and 'sig' a hex string")
        try:
            body = json.loads(body_text)
        except (ValueError, RecursionError) as exc:
            raise CommandRejected("malformed", f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise CommandRejected("malformed", "body must be a JSON object")
        rid = _request_id(body)
        if key is None:
            raise CommandRejected("no_key", "this device has no command key configured", rid)
        good = hmac.new(key, body_text.encode(), hashlib.sha256).hexdigest()
        if not (sig.isascii() and hmac.compare_digest(good, sig.lower())):
            raise CommandRejected("bad_signature", "signature does not match", rid)
    else:
        body = outer
        rid = _request_id(body)
        if required:
            raise CommandRejected("unsigned", "commands must be signed (see `appliance sign`)", rid)
    if body.get("cmd", None if signed else cmd) != cmd:
        raise CommandRejected(
            "wrong_command", f"signed for {body.get('cmd')!r}, sent to {cmd!r}", rid
        )
    if body.get("device", None if signed else device) != device:
        raise CommandRejected("wrong_device", "signed for another device", rid)
    if signed or required:
        ts, nonce = body.get("ts"), body.get("nonce")
        # NaN would pass the window check and 10**400 overflows: only sane numbers.
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not -1e12 < ts < 1e12:
            raise CommandRejected("malformed", "'ts' (unix seconds) is required", rid)
        if abs(time.time() - ts) > window_s:
            raise CommandRejected(
                "expired",
                f"timestamp is {time.time() - ts:+.0f} s off; "
                f"the window is {window_s:.0f} s (check clocks)",
                rid,
            )
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
            raise CommandRejected("malformed", "'nonce' (8-128 chars) is required", rid)
        if nonce_seen(nonce, window_s):
            raise CommandRejected("replayed", "this command was already received", rid)
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise CommandRejected("malformed", "'args' must be an object", rid)
    return {"request_id": rid, "args": args}
