"""Domain events: what changed, published once by the code that changed it.

Home Assistant discovery, the retained MQTT topics, the outbox (and later the event
log, the door and replication) subscribe here, so no route that enrols or deletes a
person has to remember them. Handlers run synchronously in the publishing thread (the
frame loop, or the CLI's own process with no subscribers); one that fails is logged and
the others still run.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.config.schema import Config
from appliance.store.gallery import Person

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonEnrolled:
    person: Person
    new: bool  # False: templates added to someone already enrolled
    actor: str


@dataclass(frozen=True)
class PersonRenamed:
    person: Person
    old_name: str
    actor: str


@dataclass(frozen=True)
class PersonDeleted:
    person: Person
    actor: str


@dataclass(frozen=True)
class SettingsChanged:
    cfg: Config


@dataclass(frozen=True)
class EnrolmentFinished:
    """A camera enrolment ended, by any route; Home Assistant shows the last one."""

    name: str
    ok: bool
    code: str  # "enrolled" or the refusal's code
    message: str
    person_id: str | None
    actor: str
    at: float


@dataclass(frozen=True)
class RulesChanged:
    """Access groups, someone's rights or the door mode changed, by any route."""

    what: str  # group_set | group_delete | access_set | door_mode | file
    actor: str


@dataclass(frozen=True)
class DoorEvent:
    """The door unlocked, locked, opened, closed, or raised an alarm (door thread)."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class Decided:
    """An access or attendance decision; `payload` is the event as published."""

    payload: dict[str, Any]
    face: np.ndarray | None  # the aligned crop, for snapshots only; never logged


Handler = Callable[[Any], None]


class DomainEvents:
    def __init__(self) -> None:
        self._subs: dict[type, list[Handler]] = defaultdict(list)

    def subscribe(self, kind: type, handler: Handler) -> None:
        self._subs[kind].append(handler)

    def publish(self, event: object) -> None:
        for handler in self._subs.get(type(event), ()):
            try:
                handler(event)
            except Exception:
                log.exception("handler of %s failed", type(event).__name__)
