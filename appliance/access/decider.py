"""Verdicts of the tracker -> decisions -> one `Decided` domain event for every sink.

The frame loop hands each finished vote here; the policy decides, the payload is built
once, and whoever needs the decision (outbox, retained MQTT topics, later the door)
subscribes to `Decided` instead of being called from here.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from appliance.access.events import Origin, event_payload
from appliance.access.policy import AccessPolicy
from appliance.control.events import Decided, DomainEvents
from appliance.identity.tracker import Verdict
from appliance.vision.pipeline import Face

log = logging.getLogger(__name__)


class Decider:
    def __init__(
        self,
        policy: AccessPolicy,
        origin: Origin,
        events: DomainEvents,
        stats: dict[str, int],
    ) -> None:
        self.policy = policy
        self.origin = origin
        self.events = events
        self.stats = stats

    def on_verdict(
        self, v: Verdict, face: Face | None = None, liveness: dict[str, Any] | None = None
    ) -> None:
        """`liveness`: the visit's liveness figures when the check is on (their `live`
        decides with the policy; undecided is not live), None when it is off."""
        now = time.time()
        day = time.strftime("%Y-%m-%d", time.localtime(now))
        live = None if liveness is None else liveness["live"] is True
        decision = self.policy.decide(v.person_id, now, day, live)
        if decision is None:
            self.stats["suppressed"] += 1
            log.debug("track %d: person %s within cooldown, no event", v.track.id, v.person_id)
            return
        event_id = str(uuid.uuid4())
        payload = event_payload(
            v, decision.decision, event_id, now, self.origin, decision.reason, liveness
        )
        self.stats["events"] += 1
        self.events.publish(Decided(payload, face.aligned if face is not None else None))
        log.info(
            "decision %s: %s%s (person %s, cosine %.3f, %d frames)",
            event_id,
            decision.decision,
            f" ({decision.reason})" if decision.reason else "",
            v.person_id or "-",
            v.score,
            v.frames,
        )
