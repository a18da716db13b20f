"""Replication records: one per person, access group and door mode, last writer wins.

A record is `(kind, key, hlc, origin, body)`:

- `person/<id>`: body `{name, meta, rights, templates}`; the id is the stable random id
  the enrolling door gave. Templates carry their embedder version.
- `group/<name, case-folded>`: body `{name, spec}`.
- `mode/door`: body `{mode, group}`.
- any of them with body `None`: a tombstone. It carries nothing but the id and version:
  no name, no template (a person's deletion leaves no personal data behind).

Conflict rule (`rank`): a person's tombstone wins over any live version of them;
otherwise, of two records for the same entity, the one with the larger
`(hlc, origin, content hash)` wins, everywhere. The hash is there only to make a tie of
the first two (which a door never issues) deterministic too. Applying is idempotent: a
record not newer than what a door has changes nothing, so duplicates, late and
reordered deliveries, and replays of old versions are harmless.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("person", "group", "mode")
FORMAT = 1
MAX_TEMPLATES = 64
MAX_NAME = 200
MAX_ORIGIN = 64


class RecordRefused(ValueError):
    """A message that is not a valid record of this site; it changes nothing."""


Version = tuple[int, str, str]  # (hlc, origin, content hash)


def content_hash(body: dict[str, Any] | None) -> str:
    """sha256 of the body's canonical JSON; '' for a tombstone."""
    if body is None:
        return ""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def rank(kind: str, v: Version | list[Any]) -> tuple[int, int, str, str]:
    """The order of the conflict rule. A person's tombstone outranks every live version
    of that person (delete wins: a rename or an enrolment made concurrently, at a door
    that had not heard of the delete, does not bring them back; ids are never reused, so
    enrolling them again makes a new person). Otherwise the larger (hlc, origin, hash)."""
    return (int(kind == "person" and not v[2]), v[0], v[1], v[2])


def newer(a: Version, b: Version | None, kind: str = "") -> bool:
    """True when `a` wins over `b` (None: nothing known yet) for an entity of `kind`."""
    return b is None or rank(kind, a) > rank(kind, b)


@dataclass(frozen=True)
class Record:
    kind: str
    key: str
    hlc: int
    origin: str
    body: dict[str, Any] | None  # None: a tombstone

    @property
    def entity(self) -> str:
        return f"{self.kind}/{self.key}"

    @property
    def hash(self) -> str:
        return content_hash(self.body)

    @property
    def version(self) -> Version:
        return (self.hlc, self.origin, self.hash)

    @property
    def tombstone(self) -> bool:
        return self.body is None

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "f": FORMAT,
                "kind": self.kind,
                "key": self.key,
                "hlc": self.hlc,
                "origin": self.origin,
                "body": self.body,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Record:
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordRefused(f"not JSON: {exc}") from exc
        if not isinstance(obj, dict) or obj.get("f") != FORMAT:
            raise RecordRefused("not a replication record of format 1")
        kind, key, hlc, origin = obj.get("kind"), obj.get("key"), obj.get("hlc"), obj.get("origin")
        if kind not in KINDS:
            raise RecordRefused(f"unknown kind {kind!r}")
        if not isinstance(key, str) or not key or len(key) > MAX_NAME:
            raise RecordRefused("bad key")
        if not isinstance(hlc, int) or isinstance(hlc, bool) or not 0 < hlc < 2**63:
            raise RecordRefused("bad version")
        if not isinstance(origin, str) or not origin or len(origin) > MAX_ORIGIN:
            raise RecordRefused("bad origin")
        rec = cls(kind, key, hlc, origin, obj.get("body"))
        validate(rec)
        return rec


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise RecordRefused(what)


def _name(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip()) and len(v) <= MAX_NAME


def validate(r: Record) -> None:
    """Refuse a body that could not have come from a door (RecordRefused)."""
    b = r.body
    if b is None:
        return
    _check(isinstance(b, dict), "body must be an object or null")
    if r.kind == "person":
        _check(len(r.key) == 32 and all(c in "0123456789abcdef" for c in r.key), "bad person id")
        _check(_name(b.get("name")), "bad name")
        _check(isinstance(b.get("meta"), dict), "bad meta")
        rights = b.get("rights")
        _check(isinstance(rights, dict), "bad rights")
        groups = rights.get("groups")
        _check(isinstance(groups, list) and all(_name(g) for g in groups), "bad groups")
        for k in ("valid_from", "valid_until"):
            _check(rights.get(k) is None or isinstance(rights.get(k), str), f"bad {k}")
        ts = b.get("templates")
        _check(isinstance(ts, list) and len(ts) <= MAX_TEMPLATES, "bad templates")
        for t in ts:
            _check(isinstance(t, dict) and isinstance(t.get("embedder"), str), "bad template")
            _check(isinstance(t.get("source"), str) and isinstance(t.get("quality"), dict), "bad")
            vec = decode_vector(t.get("embedding"))
            _check(0 < vec.size <= 4096 and bool(np.isfinite(vec).all()), "bad embedding")
    elif r.kind == "group":
        _check(r.key == str(b.get("name", "")).casefold(), "group key must be its name")
        _check(_name(b.get("name")) and isinstance(b.get("spec"), dict), "bad group")
    else:
        _check(r.key == "door", "the mode record's key is 'door'")
        _check(isinstance(b.get("mode"), str), "bad mode")
        _check(b.get("group") is None or _name(b.get("group")), "bad mode group")


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(v, np.float32).tobytes()).decode()


def decode_vector(text: Any) -> np.ndarray:
    if not isinstance(text, str):
        raise RecordRefused("embedding must be base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RecordRefused(f"embedding not base64: {exc}") from exc
    if len(raw) % 4:
        raise RecordRefused("embedding is not float32")
    return np.frombuffer(raw, np.float32)
