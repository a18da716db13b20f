"""Live feedback for a camera enrolment: what the person at the door should do next.

While a capture runs, each frame's largest face is judged against the same enrolment
gates a photo must pass (`gates.refusals`, one place for the gate logic), plus two
things only a camera has: light and movement. The answer is a stable code and a sentence
a person understands ("Come closer."), shown on the web page while they stand there; the
measured reason (the gate's text, with the config key) goes along for the owner.

Only a frame whose feedback is `good` is turned into a template, so a dark or moving
frame is never enrolled even when it scrapes past the photo gates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.config.schema import EnrolmentConfig
from appliance.identity.gates import EnrolmentRefused, pick_face, refusals
from appliance.vision.pipeline import Face

# Mean grey level (0..255) of the aligned face crop below which the person is asked for
# more light. Measured on the demo scene (tests/test_capture_feedback.py): a face lit for
# the camera is ~140; the same frame at 50 % light 69 (still passes every gate), at 30 %
# 41 (its sharpness already fails enrolment.min_blur, so "hold still" would mislead).
DARK_LEVEL = 50.0
# The face's centre moving more than this many eye distances between two frames the
# frame loop looked at: "hold still". The demo walk moves ~0.1 a frame.
MOVE_EYES = 0.5

ADVICE = {
    "no_face": "Step in front of the camera.",
    "several_faces": "Only one person in front of the camera, please.",
    "too_small": "Come closer.",
    "too_dark": "More light on your face, please.",
    "not_frontal": "Look straight at the camera.",
    "moving": "Hold still.",
    "blurred": "Hold still.",
    "low_score": "Show your whole face to the camera.",
    "good": "Good, hold still.",
}
# What to say first when a frame fails several things: the step a person takes first
# (come closer before turning; light before sharpness, since darkness also blurs).
PRIORITY = ("too_small", "too_dark", "not_frontal", "moving", "blurred", "low_score")


@dataclass(frozen=True)
class Feedback:
    code: str  # a key of ADVICE
    message: str  # the sentence for the person at the door
    detail: str = ""  # what was measured and what is needed, for the owner

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


def brightness(face: Face) -> float:
    """Mean grey level of the aligned face crop, 0..255."""
    return float(cv2.cvtColor(face.aligned, cv2.COLOR_RGB2GRAY).mean())


def moved(face: Face, previous_box: np.ndarray | None) -> float:
    """How far the face's centre moved since `previous_box`, in eye distances (0 without
    a previous box)."""
    if previous_box is None:
        return 0.0
    now = (face.box[:2] + face.box[2:4]) / 2
    before = (previous_box[:2] + previous_box[2:4]) / 2
    return float(np.linalg.norm(now - before)) / max(face.quality.eye_distance, 1.0)


def feedback(
    faces: list[Face], gates: EnrolmentConfig, previous_box: np.ndarray | None = None
) -> Feedback:
    """The feedback for one frame's faces (largest first, as the pipeline gives them);
    `previous_box` is the face's box in the frame looked at before, if any."""
    try:
        face = pick_face(faces)
    except EnrolmentRefused as exc:
        return Feedback(exc.code, ADVICE[exc.code], exc.reason)
    found = {r.code: r.reason for r in refusals(face, gates)}
    level = brightness(face)
    if level < DARK_LEVEL:
        found["too_dark"] = f"face brightness {level:.0f} of 255, needs at least {DARK_LEVEL:g}"
    shift = moved(face, previous_box)
    if shift > MOVE_EYES:
        found["moving"] = (
            f"the face moved {shift:.2f} eye distances since the last frame, "
            f"at most {MOVE_EYES:g} allowed"
        )
    for code in (*PRIORITY, *found):
        if code in found:
            return Feedback(code, ADVICE.get(code, ADVICE["low_score"]), found[code])
    return Feedback("good", ADVICE["good"])
