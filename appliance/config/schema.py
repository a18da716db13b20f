"""config.yaml -> typed, validated settings; every error names the key and its line.

Parsing is strict: an unknown key is an error (a typo must not silently fall back to a
default on a door lock). YAML nodes keep their line numbers, which the errors quote.
The sections are plain frozen dataclasses; a field's `metadata` may give a `range` or
`choices`, and the one recursive parser below checks them all, so a new setting is one
line in a dataclass.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from appliance.liveness import MODES


class ConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _opt(
    default: Any,
    *,
    range: tuple[float, float] | None = None,
    choices: tuple[str, ...] | None = None,
    file: bool = False,
    check: typing.Callable[[Any], None] | None = None,
) -> Any:
    meta: dict[str, Any] = {"file": True} if file else {}
    if check is not None:
        meta["check"] = check  # raises ValueError with a message for people
    if range is not None:
        meta["range"] = range
    if choices is not None:
        meta["choices"] = choices
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class CameraConfig:
    source: str = (
        "auto"  # auto | demo | <V4L2 index or /dev/videoN> | <URL> | <file> | gst:<pipeline>
    )
    width: int = _opt(640, range=(64, 4096))
    height: int = _opt(480, range=(64, 4096))
    realtime: bool = True  # play files at their own frame rate (False: as fast as possible)
    reopen_max_s: float = _opt(30.0, range=(0.1, 3600))
    stall_s: float = _opt(10.0, range=(0.5, 3600))


@dataclass(frozen=True)
class ModelsConfig:
    # fused: FaceNet and MobileFaceNet scores averaged. On LFW open-set identification it
    # named 94.6% of enrolled people at 0.85% strangers where FaceNet alone named 90.1%,
    # for one more (small) model invoke per face (README, Accuracy).
    embedder: str = _opt("fused", choices=("fused", "facenet", "mobilefacenet"))
    threads: int = _opt(2, range=(1, 64))
    flip: bool = False


# README "Detectors": in a hall BlazeFace on 3x3 tiles finds 86 % of faces >= 20 px (65 %).
TILES_BY_MODE = {"access": "none", "attendance": "3x3"}


def _tiles(value: str) -> None:
    cols, x, rows = value.partition("x")
    if value not in ("auto", "none") and not (x and cols.isdigit() and rows.isdigit()):
        raise ValueError(f"{value!r} is not auto, none or CxR (e.g. 3x3)")
    if x and not (1 <= int(cols) <= 8 and 1 <= int(rows) <= 8):
        raise ValueError(f"{value!r}: 1 to 8 tiles each way")


@dataclass(frozen=True)
class DetectorConfig:
    # blazeface | ssd_mobilenet (appliance.vision.detectors; README, Detectors).
    model: str = _opt("blazeface", choices=("blazeface", "ssd_mobilenet"))
    score_threshold: float = _opt(0.5, range=(0.05, 0.99))
    # auto (per mode, at start: none for access, 3x3 for attendance), none, or CxR.
    tiles: str = _opt("auto", check=_tiles)

    def grid(self, mode: str) -> tuple[int, int] | None:
        """The tiling (cols, rows) for `mode`, None for the whole frame only."""
        t = TILES_BY_MODE[mode] if self.tiles == "auto" else self.tiles
        return None if t == "none" else (int(t.split("x")[0]), int(t.split("x")[1]))


@dataclass(frozen=True)
class RecognitionConfig:
    # Operating point as a target stranger-accept rate for the gallery's size; the
    # thresholds come from the calibration stored in models/manifest.json.
    mode: str = _opt("access", choices=("access", "attendance"))
    stranger_accept: float | None = _opt(None, range=(1e-6, 0.5))
    threshold: float | None = _opt(None, range=(-1.0, 1.0))  # fixed override
    margin: float | None = _opt(None, range=(0.0, 1.0))


@dataclass(frozen=True)
class EnrolmentConfig:
    min_score: float = _opt(0.6, range=(0.0, 1.0))
    min_eye_distance: float = _opt(30.0, range=(0.0, 1000.0))
    min_blur: float = _opt(20.0, range=(0.0, 1e6))
    min_frontal: float = _opt(0.3, range=(0.0, 1.0))
    max_templates: int = _opt(20, range=(1, 20))
    keep_thumbnails: bool = False


@dataclass(frozen=True)
class StorageConfig:
    # Empty: $STATE_DIRECTORY (set by systemd's StateDirectory=) or ./state.
    state_dir: str = ""

    def path(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir)
        return Path(os.environ.get("STATE_DIRECTORY", "state").split(":")[0])


@dataclass(frozen=True)
class DecisionConfig:
    min_frames: int = _opt(3, range=(1, 50))
    unknown_frames: int = _opt(10, range=(1, 100))
    max_frames: int = _opt(20, range=(1, 200))
    track_iou: float = _opt(0.3, range=(0.05, 0.95))
    max_missed: int = _opt(8, range=(0, 300))
    cooldown_s: float = _opt(60.0, range=(0.0, 86400.0))
    # Faces below these are tracked but not embedded (they would only add noise).
    min_eye_distance: float = _opt(20.0, range=(0.0, 1000.0))
    min_frontal: float = _opt(0.3, range=(0.0, 1.0))
    # access mode: only people in one of these access groups are granted; empty = no
    # such filter (the access groups and their schedules still apply).
    allowed_groups: tuple[str, ...] = ()
    snapshot: bool = False


@dataclass(frozen=True)
class LivenessConfig:
    # Presentation-attack check per visit (README "Liveness", SECURITY.md). off by
    # default: on the measured data no threshold stops prints without refusing most
    # real visits of 1.5 s (tools/evaluate.py liveness).
    mode: str = _opt("off", choices=MODES)
    planarity_min: float = _opt(0.06, range=(0.0, 1.0))
    blink_min: float = _opt(0.35, range=(0.0, 1.0))
    min_frames: int = _opt(3, range=(2, 100))
    max_s: float = _opt(1.5, range=(0.2, 30.0))
    attendance_flag: bool = True


@dataclass(frozen=True)
class MqttConfig:
    host: str = "localhost"
    port: int = _opt(1883, range=(1, 65535))
    protocol: str = _opt("5", choices=("3.1.1", "5"))
    prefix: str = "appliance"
    device_id: str = ""  # empty: the host name
    username: str = ""
    password_file: str = _opt("", file=True)  # else $CREDENTIALS_DIRECTORY/mqtt-password
    tls: bool = False
    ca_file: str = _opt("", file=True)
    cert_file: str = _opt("", file=True)
    key_file: str = _opt("", file=True)
    tls_insecure: bool = False  # turns off the certificate hostname check
    keepalive: int = _opt(30, range=(5, 3600))
    reconnect_max_s: float = _opt(60.0, range=(1.0, 3600.0))
    state_interval_s: float = _opt(10.0, range=(0.5, 3600.0))


@dataclass(frozen=True)
class CommandsConfig:
    require_signature: bool = True
    key_file: str = _opt("", file=True)  # else $CREDENTIALS_DIRECTORY/command-key
    max_age_s: float = _opt(120.0, range=(5.0, 86400.0))
    capture_timeout_s: float = _opt(15.0, range=(1.0, 300.0))


@dataclass(frozen=True)
class OutboxConfig:
    max_events: int = _opt(10000, range=(10, 10_000_000))
    max_age_days: float = _opt(7.0, range=(0.01, 3650.0))
    # Below this much free space on the state directory's filesystem the outbox stops
    # growing: it drops its oldest events to make room (see appliance/store/outbox.py).
    min_free_mb: float = _opt(50.0, range=(0.0, 1_000_000.0))
    # Room kept free inside the outbox file, so events can still be stored (and the
    # oldest shed for new ones) on a disk that something else has filled.
    reserve_mb: float = _opt(1.0, range=(0.0, 1000.0))


@dataclass(frozen=True)
class HomeAssistantConfig:
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    device_name: str = ""  # empty: "Door <device id>"
    # A text + button in Home Assistant to enrol whoever stands at the door. Off by
    # default: it lets any Home Assistant user add a face.
    allow_enrol: bool = False
    # A lock entity that opens the door from Home Assistant. Off by default: Home
    # Assistant publishes plain, unsigned commands (README: the broker ACL it needs).
    allow_unlock: bool = False


def _known_zone(name: str) -> None:
    if name:
        from appliance.access.schedule import ScheduleError, zone

        try:
            zone(name)
        except ScheduleError as exc:
            raise ValueError(str(exc).removeprefix("timezone: ")) from None


@dataclass(frozen=True)
class AccessConfig:
    # The zone of the schedules' wall-clock times ("Europe/Berlin"); empty: the system's.
    timezone: str = _opt("", check=_known_zone)


@dataclass(frozen=True)
class DoorConfig:
    # The relay, door contact and exit button (appliance/door). Pins are BCM GPIO numbers.
    enabled: bool = False
    # fail_secure: energising the relay unlocks (a strike); fail_safe: it locks (a maglock).
    lock: str = _opt("fail_secure", choices=("fail_secure", "fail_safe"))
    relay_pin: int = _opt(17, range=(0, 27))
    relay_active_high: bool = True
    contact_pin: int | None = _opt(None, range=(0, 27))
    contact_open_high: bool = True  # pull-up, contact to GND: a closed door reads low
    exit_pin: int | None = _opt(None, range=(0, 27))
    unlock_s: float = _opt(5.0, range=(0.5, 300.0))
    held_open_s: float = _opt(30.0, range=(1.0, 3600.0))
    max_remote_unlock_s: float = _opt(3600.0, range=(1.0, 86400.0))
    debounce_s: float = _opt(0.05, range=(0.0, 2.0))

    def __post_init__(self) -> None:
        # One pin, one job: a contact on the relay's pin would read back our own output.
        seen: dict[int, str] = {}
        for key in ("relay_pin", "contact_pin", "exit_pin"):
            pin = getattr(self, key)
            if pin is None:
                continue
            if pin in seen:
                raise _Problem(f"'door.{key}': GPIO{pin} is already 'door.{seen[pin]}'")
            seen[pin] = key


def _host_port(value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not <address>:<port> (e.g. 0.0.0.0:8080)")


@dataclass(frozen=True)
class WebConfig:
    # The owner's pages and REST API (appliance/transport/http). Off by default: it holds
    # biometric data and opens the door, so it is switched on once an owner exists.
    enabled: bool = False
    listen: str = _opt("0.0.0.0:8080", check=_host_port)
    # TLS: both files, or neither (plain HTTP; cookies then lack `Secure`).
    tls_cert_file: str = _opt("", file=True)
    tls_key_file: str = _opt("", file=True)
    session_hours: float = _opt(12.0, range=(0.1, 24 * 90))
    # A user name is locked for `lockout_s` after this many wrong passwords in a row.
    login_max_failures: int = _opt(5, range=(1, 100))
    lockout_s: float = _opt(300.0, range=(1.0, 86400.0))
    live_fps: float = _opt(2.0, range=(0.2, 15.0))
    # The address Home Assistant links to; empty: http(s)://<host name>:<port>/.
    url: str = ""

    def __post_init__(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise _Problem("'web.tls_cert_file' and 'web.tls_key_file' go together")


@dataclass(frozen=True)
class EventsConfig:
    # The local event history the pages show (appliance/store/event_log.py).
    retention_days: float = _opt(90.0, range=(0.01, 3650.0))
    max_events: int = _opt(200_000, range=(100, 10_000_000))
    # Keep the aligned face picture of each decision. Off by default: faces are personal.
    snapshots: bool = False
    snapshot_retention_days: float = _opt(7.0, range=(0.01, 3650.0))


@dataclass(frozen=True)
class ReplicationConfig:
    # Several doors sharing people and rules through the broker (README "Several doors").
    enabled: bool = False
    site: str = "site"  # the doors that share a gallery; part of the topics and the AAD
    key_file: str = _opt("", file=True)  # else $CREDENTIALS_DIRECTORY/replication-key
    digest_interval_s: float = _opt(60.0, range=(1.0, 86400.0))
    tombstone_days: float = _opt(90.0, range=(0.001, 36500.0))
    max_clock_skew_s: float = _opt(600.0, range=(1.0, 86400.0))


@dataclass(frozen=True)
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    enrolment: EnrolmentConfig = field(default_factory=EnrolmentConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    door: DoorConfig = field(default_factory=DoorConfig)
    web: WebConfig = field(default_factory=WebConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)


_SECTION_TYPES: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _SECTION_TYPES:
        _SECTION_TYPES[cls] = typing.get_type_hints(cls)
    return _SECTION_TYPES[cls]


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", str(typ))


def _scalar(node: yaml.Node, typ: type, where: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise _Problem(f"{where}: expected a {_type_name(typ)}, got a {node.id}")
    value = yaml.safe_load(yaml.serialize(node))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise _Problem(f"{where}: {value} is too large") from None
    if typ is str and value is not None and not isinstance(value, (str, bool)):
        value = str(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise _Problem(f"{where}: expected a {_type_name(typ)}, got {value!r}")
    return value


class _Problem(Exception):
    pass


def _value(
    node: yaml.Node, typ: Any, meta: Any, where: str, ctx: tuple[str, str], problems: list[str]
) -> Any:
    origin = typing.get_origin(typ)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in typing.get_args(typ) if a is not type(None))
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return None
        return _value(node, inner, meta, where, ctx, problems)
    if dataclasses.is_dataclass(typ):
        if not isinstance(node, yaml.MappingNode):
            raise _Problem(f"{where}: must be a mapping")
        return _section(node, typ, ctx[0], ctx[1] + ".", problems)
    if origin is tuple:
        if not isinstance(node, yaml.SequenceNode):
            raise _Problem(f"{where}: expected a list, got a {node.id}")
        item = typing.get_args(typ)[0]
        return tuple(
            _value(n, item, meta, f"{where}[{i}]", ctx, problems) for i, n in enumerate(node.value)
        )
    value = _scalar(node, typ, where)
    rng = meta.get("range")
    if rng and not rng[0] <= value <= rng[1]:
        raise _Problem(f"{where}: {value} is outside {rng[0]}..{rng[1]}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise _Problem(f"{where}: {value!r} is not one of {', '.join(choices)}")
    # A secret or certificate file that is named but missing would otherwise show up
    # only as refused commands or a broker that will not talk: fail at start instead.
    if meta.get("file") and value and not os.access(value, os.R_OK):
        raise _Problem(f"{where}: cannot read the file {value!r}")
    if meta.get("check"):
        try:
            meta["check"](value)
        except ValueError as exc:
            raise _Problem(f"{where}: {exc}") from None
    return value


def _section(node: yaml.MappingNode, cls: type, name: str, prefix: str, problems: list[str]) -> Any:
    hints = _hints(cls)
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for knode, vnode in node.value:
        key = str(knode.value)
        line = knode.start_mark.line + 1
        here = f"{name}: line {line}: '{prefix}{key}'"
        if key not in known:
            problems.append(f"{here}: unknown key (known: {', '.join(known)})")
            continue
        if key in values:
            problems.append(f"{here}: given twice (a later one would silently win)")
            continue
        try:
            values[key] = _value(
                vnode, hints[key], known[key].metadata, here, (name, prefix + key), problems
            )
        except _Problem as exc:
            problems.append(str(exc))
    try:
        return cls(**values)
    except _Problem as exc:  # a rule across keys (__post_init__): quote the section's line
        problems.append(f"{name}: line {node.start_mark.line + 1}: {exc}")
        return cls()


def parse(text: str, name: str = "config.yaml") -> Config:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError([f"{name}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if root is None:
        return Config()
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([f"{name}: line {root.start_mark.line + 1}: top level must be a mapping"])
    problems: list[str] = []
    cfg = _section(root, Config, name, "", problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse(text, str(path))
