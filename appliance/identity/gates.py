"""Enrolment quality gates: a template is only as good as the photo it came from.

A refused photo gets a reason a person can act on ("face too small: eyes 22 px apart,
need 40"), not a code. Gates run on what the pipeline already measured.
"""

from __future__ import annotations

from appliance.config.schema import EnrolmentConfig
from appliance.vision.pipeline import Face


class EnrolmentRefused(ValueError):
    """The photo (or request) was refused; nothing was stored."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def pick_face(faces: list[Face], largest: bool = False) -> Face:
    """Exactly one face, or the largest when asked (faces come largest first)."""
    if not faces:
        raise EnrolmentRefused("no_face", "no face found in the photo")
    if len(faces) > 1 and not largest:
        raise EnrolmentRefused(
            "several_faces",
            f"{len(faces)} faces in the photo; use one "
            "person per photo, or ask for the largest face",
        )
    return faces[0]


def check_gates(face: Face, gates: EnrolmentConfig) -> None:
    q = face.quality
    if q.score < gates.min_score:
        raise EnrolmentRefused(
            "low_score", f"unclear face: detector score {q.score:.2f}, need {gates.min_score:.2f}"
        )
    if q.eye_distance < gates.min_eye_distance:
        raise EnrolmentRefused(
            "too_small",
            f"face too small: eyes {q.eye_distance:.0f} px "
            f"apart, need {gates.min_eye_distance:.0f}; "
            "use a closer or larger photo",
        )
    if q.blur < gates.min_blur:
        raise EnrolmentRefused(
            "blurred", f"photo too blurred: sharpness {q.blur:.0f}, need {gates.min_blur:.0f}"
        )
    if q.frontal < gates.min_frontal:
        raise EnrolmentRefused(
            "not_frontal",
            f"face turned away: frontal {q.frontal:.2f} "
            f"(yaw {q.yaw:+.2f}, roll {q.roll:+.0f} deg), "
            f"need {gates.min_frontal:.2f}; look at the camera",
        )
