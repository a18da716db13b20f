"""A decision -> the event every sink receives (outbox, MQTT state, later the event log
and the door). One pure function, so the payload's shape is defined in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.identity.tracker import Verdict


@dataclass(frozen=True)
class Origin:
    """What every event says about where it came from."""

    mode: str  # access | attendance
    camera: str
    device: str
    models: dict[str, str]


def event_payload(
    v: Verdict,
    decision: str,
    event_id: str,
    decided: float,
    origin: Origin,
    reason: str | None = None,
    liveness: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`liveness`: the figures of the visit's liveness check (`LiveVerdict.figures`);
    with it the event also carries `live` (its verdict) at the top level. With liveness
    off neither key is present, so the payload is what it was before the check."""
    payload: dict[str, Any] = {
        "event_id": event_id,
        "type": origin.mode,
        "decision": decision,
        "reason": reason,  # why a `denied`: not_in_group, outside_schedule, expired, ...
        "person_id": v.person_id,
        "name": v.name,
        "candidate": v.last.candidate,
        "score": round(v.score, 4),
        "margin": round(v.margin, 4),
        "threshold": round(v.threshold, 4),
        "margin_required": round(v.last.thresholds.margin, 4),
        "frames": v.frames,
        "box": [round(float(x), 1) for x in v.track.box],
        "first_seen": round(v.track.first_seen, 3),
        "decided": round(decided, 3),
        "camera": origin.camera,
        "device": origin.device,
        "models": dict(origin.models),
        "replayed": False,
    }
    if liveness is not None:
        payload["live"] = liveness["live"]
        payload["liveness"] = liveness
    return payload
