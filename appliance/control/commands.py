"""Typed commands: what any transport (MQTT, the local socket, HTTP) may ask.

A transport authenticates the caller its own way, then turns the request into one of
these with `from_args`, so a web page, a signed MQTT message and the CLI all run the same
validated command. Errors are one type, `CommandError(code, message)`, mapped to a reply
once per transport.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

MAX_IMAGES = 10
MAX_IMAGE_B64 = 8 * 1024 * 1024
MAX_NAME = 200
MAX_IMAGE_BYTES = MAX_IMAGE_B64 * 3 // 4  # a photo as raw bytes (HTTP upload): the same limit


class CommandError(Exception):
    """A refused command; nothing was changed. `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Enrol:
    name: str
    images: tuple[bytes, ...]
    force: bool = False
    largest: bool = False
    meta: dict[str, Any] | None = None
    source: str = "mqtt"  # where the photos came from: mqtt | file | http


@dataclass(frozen=True)
class CaptureEnrol:
    """Enrol whoever stands at the door, from the camera; completes later."""

    name: str
    frames: int = 3
    force: bool = False
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class CaptureStatus:
    """The running camera enrolment's live feedback and progress (the web page polls it
    while the person stands at the door), or how the last one ended."""


@dataclass(frozen=True)
class Delete:
    who: str


@dataclass(frozen=True)
class Rename:
    who: str
    new_name: str


@dataclass(frozen=True)
class ListPeople:
    pass


@dataclass(frozen=True)
class SetLive:
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reload:
    pass


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class ExportGallery:
    pass


@dataclass(frozen=True)
class ImportGallery:
    data: dict[str, Any]


@dataclass(frozen=True)
class SetGroup:
    """Create or replace an access group: weekly windows and holidays."""

    name: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class DeleteGroup:
    name: str


@dataclass(frozen=True)
class SetAccess:
    """A person's groups and/or validity; only the keys given change (None clears)."""

    who: str
    changes: dict[str, Any]


@dataclass(frozen=True)
class SetDoorMode:
    mode: str  # normal | passage | lockdown
    group: str | None = None


@dataclass(frozen=True)
class Unlock:
    duration_s: float
    reason: str


@dataclass(frozen=True)
class ListRules:
    pass


@dataclass(frozen=True)
class DoorStatus:
    pass


@dataclass(frozen=True)
class EnrolPhotos:
    """Enrol from uploaded photos with a result per photo (the web page): each is gated
    on its own; with `keep_good` the good ones are stored even if others were refused,
    otherwise one refusal stores nothing."""

    name: str
    photos: tuple[tuple[str, bytes], ...]  # (label, bytes)
    force: bool = False
    keep_good: bool = False


@dataclass(frozen=True)
class Recognize:
    """Every face of an uploaded photo, named or unknown, with scores and thresholds."""

    image: bytes


@dataclass(frozen=True)
class ListEvents:
    person: str | None = None
    decision: str | None = None
    since: float | None = None
    until: float | None = None
    after_seq: int | None = None
    limit: int = 100


@dataclass(frozen=True)
class Attendance:
    since: float
    until: float
    person: str | None = None


@dataclass(frozen=True)
class Snapshot:
    event_id: str


@dataclass(frozen=True)
class Thumbnail:
    who: str
    index: int


@dataclass(frozen=True)
class Templates:
    """A person's templates with the quality each was enrolled with (no embeddings)."""

    who: str


@dataclass(frozen=True)
class LastSeen:
    pass


def photos(items: list[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    """Uploaded photos, checked like MQTT's: 1..MAX_IMAGES, each at most MAX_IMAGE_BYTES."""
    if not 1 <= len(items) <= MAX_IMAGES:
        raise CommandError("malformed", f"send 1..{MAX_IMAGES} photos, got {len(items)}")
    for label, data in items:
        if len(data) > MAX_IMAGE_BYTES:
            raise CommandError(
                "too_large", f"{label}: {len(data)} bytes, at most {MAX_IMAGE_BYTES} allowed"
            )
    return tuple(items)


@dataclass(frozen=True)
class ApplyRecords:
    """Replication: records from other doors, already decrypted and authenticated
    (appliance/replication/sync.py). No transport maps a name to it: only the replicator
    submits it, so a remote change takes the same single write path as a local one."""

    records: tuple[Any, ...]  # appliance.replication.records.Record
    origin: str = "replication"


Command = (
    Enrol
    | CaptureEnrol
    | CaptureStatus
    | Delete
    | Rename
    | ListPeople
    | SetLive
    | Reload
    | Status
    | ExportGallery
    | ImportGallery
    | SetGroup
    | DeleteGroup
    | SetAccess
    | SetDoorMode
    | Unlock
    | ListRules
    | DoorStatus
    | EnrolPhotos
    | Recognize
    | ListEvents
    | Attendance
    | Snapshot
    | Thumbnail
    | Templates
    | LastSeen
    | ApplyRecords
)

MAX_UNLOCK_S = 3600.0


def _text(args: dict[str, Any], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v.strip() or len(v) > MAX_NAME:
        raise CommandError(
            "malformed", f"'{key}' must be a non-empty string (at most {MAX_NAME} characters)"
        )
    return v


def _meta(args: dict[str, Any]) -> dict[str, Any] | None:
    meta = args.get("meta") or {}
    if not isinstance(meta, dict):
        raise CommandError("malformed", "'meta' must be an object")
    return meta or None


def _images(args: dict[str, Any]) -> tuple[bytes, ...]:
    images = args.get("images")
    if not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES:
        raise CommandError(
            "malformed", f"'images' must be a list of 1..{MAX_IMAGES} base64 JPEG/PNG strings"
        )
    raw = []
    for i, b in enumerate(images):
        if not isinstance(b, str) or len(b) > MAX_IMAGE_B64:
            raise CommandError(
                "too_large" if isinstance(b, str) else "malformed",
                f"image {i}: must be base64 text of at most {MAX_IMAGE_B64} characters",
            )
        try:
            raw.append(base64.b64decode(b, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise CommandError("malformed", f"image {i}: not base64: {exc}") from exc
    return tuple(raw)


def _enrol(args: dict[str, Any], source: str) -> Enrol | CaptureEnrol:
    name, force, meta = _text(args, "name"), bool(args.get("force", False)), _meta(args)
    if args.get("capture"):
        n = args.get("frames", 3)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            raise CommandError("malformed", "'frames' must be 1..10")
        return CaptureEnrol(name, n, force, meta)
    return Enrol(name, _images(args), force, bool(args.get("largest", False)), meta, source)


def _import(args: dict[str, Any]) -> ImportGallery:
    data = args.get("data")
    if not isinstance(data, dict):
        raise CommandError("malformed", "'data' must be a gallery export object")
    return ImportGallery(data)


def _group(args: dict[str, Any]) -> SetGroup:
    spec = {k: args[k] for k in ("windows", "holidays") if k in args}
    unknown = set(args) - {"name", "windows", "holidays"}
    if unknown:
        raise CommandError("malformed", f"unknown argument(s): {', '.join(sorted(unknown))}")
    return SetGroup(_text(args, "name"), spec)


def _access(args: dict[str, Any]) -> SetAccess:
    changes: dict[str, Any] = {}
    if "groups" in args:
        g = args["groups"]
        if not isinstance(g, list) or not all(isinstance(x, str) and x for x in g):
            raise CommandError("malformed", "'groups' must be a list of group names")
        changes["groups"] = g
    for key in ("valid_from", "valid_until"):
        if key in args:
            if args[key] is not None and not isinstance(args[key], str):
                raise CommandError("malformed", f"'{key}' must be an ISO date or null")
            changes[key] = args[key]
    if not changes:
        raise CommandError("malformed", "give 'groups', 'valid_from' and/or 'valid_until'")
    return SetAccess(_text(args, "name"), changes)


def _mode(args: dict[str, Any]) -> SetDoorMode:
    group = args.get("group")
    if group is not None and not isinstance(group, str):
        raise CommandError("malformed", "'group' must be a group name or null")
    return SetDoorMode(_text(args, "mode"), group or None)


def _unlock(args: dict[str, Any]) -> Unlock:
    d = args.get("duration_s", 5)
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= MAX_UNLOCK_S:
        raise CommandError(
            "malformed", f"'duration_s' must be a number of seconds, 0..{MAX_UNLOCK_S:g}"
        )
    reason = args.get("reason", "remote")
    if not isinstance(reason, str) or len(reason) > MAX_NAME:
        raise CommandError("malformed", f"'reason' must be text (at most {MAX_NAME} characters)")
    return Unlock(float(d), reason)


def from_args(name: str, args: dict[str, Any], source: str = "mqtt") -> Command:
    """The typed command for `name` (as the transports spell it: MQTT topic, socket
    request) and its JSON arguments, or CommandError. MQTT accepts the names in
    `topics.COMMANDS`; the local socket all of them."""
    if name == "enroll":
        return _enrol(args, source)
    if name == "delete":
        return Delete(_text(args, "name"))
    if name == "rename":
        return Rename(_text(args, "name"), _text(args, "new_name"))
    if name == "list":
        return ListPeople()
    if name == "set":
        return SetLive(dict(args))
    if name == "reload":
        return Reload()
    if name == "status":
        return Status()
    if name == "export":
        return ExportGallery()
    if name == "import":
        return _import(args)
    if name == "group_set":
        return _group(args)
    if name == "group_delete":
        return DeleteGroup(_text(args, "name"))
    if name == "access":
        return _access(args)
    if name == "door_mode":
        return _mode(args)
    if name == "unlock":
        return _unlock(args)
    if name == "rules":
        return ListRules()
    if name == "door":
        return DoorStatus()
    raise CommandError("unknown_command", f"unknown command {name!r}")
