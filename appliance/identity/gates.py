"""Enrolment quality gates: a template is only as good as the photo it came from.

A refused photo gets a reason a person can act on, not a code: the gate, what was
measured, what enrolment needs and the config key that sets it ("eyes 31.8 px apart,
enrolment needs at least 40 (enrolment.min_eye_distance)"); the recogniser puts the
photo's name in front. The codes (`too_small`, ...) stay stable for MQTT replies. Gates
run on what the pipeline already measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.config.schema import EnrolmentConfig
from appliance.vision.pipeline import Face


class EnrolmentRefused(ValueError):
    """The photo (or request) was refused; nothing was stored."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def about(self, photo: str) -> EnrolmentRefused:
        """The same refusal, naming the photo it is about ("photo bob_2.jpg", "image 2")."""
        return EnrolmentRefused(self.code, f"{photo}: {self.reason}")


def photo_label(image: Any, index: int) -> str:
    """How a refusal names a photo: its file name, or its place in the request ("image
    2") when it came as bytes (MQTT) or pixels."""
    if isinstance(image, (str, Path)):
        return f"photo {Path(image).name}"
    return f"image {index + 1}"


def pick_face(faces: list[Face], largest: bool = False, photo: bool = False) -> Face:
    """Exactly one face, or the largest when asked (faces come largest first). `photo`:
    the faces came from `FacePipeline.photo_faces`, which also looked with a border."""
    if not faces:
        where = ", not even with a border around the photo" if photo else ""
        raise EnrolmentRefused(
            "no_face",
            f"no face found{where} (detector.score_threshold sets how sure the detector must be)",
        )
    if len(faces) > 1 and not largest:
        raise EnrolmentRefused(
            "several_faces",
            f"{len(faces)} faces in the photo, enrolment needs exactly 1; use one "
            "person per photo, or ask for the largest face (--largest)",
        )
    return faces[0]


def _needs(
    gate: str, code: str, value: str, needed: float, key: str, hint: str = ""
) -> EnrolmentRefused:
    return EnrolmentRefused(
        code,
        f"{gate} {value}, enrolment needs at least {needed:g} (enrolment.{key})"
        + (f"; {hint}" if hint else ""),
    )


def refusals(face: Face, gates: EnrolmentConfig) -> list[EnrolmentRefused]:
    """Every gate `face` fails, in the order `check_gates` reports them (none: it passes).
    The one place the enrolment gates are written; the camera feedback reads them too."""
    q = face.quality
    out = []
    if q.score < gates.min_score:
        out.append(
            _needs(
                "unclear face: detector score",
                "low_score",
                f"{q.score:.2f}",
                gates.min_score,
                "min_score",
            )
        )
    if q.eye_distance < gates.min_eye_distance:
        out.append(
            _needs(
                "face too small: eyes",
                "too_small",
                f"{q.eye_distance:.1f} px apart",
                gates.min_eye_distance,
                "min_eye_distance",
                "use a closer or larger photo",
            )
        )
    if q.blur < gates.min_blur:
        out.append(
            _needs("too blurred: sharpness", "blurred", f"{q.blur:.1f}", gates.min_blur, "min_blur")
        )
    if q.frontal < gates.min_frontal:
        out.append(
            _needs(
                "face turned away: frontal",
                "not_frontal",
                f"{q.frontal:.2f} (yaw {q.yaw:+.2f}, roll {q.roll:+.0f} deg)",
                gates.min_frontal,
                "min_frontal",
                "look at the camera",
            )
        )
    return out


def check_gates(face: Face, gates: EnrolmentConfig) -> None:
    """Raise the first gate `face` fails."""
    failed = refusals(face, gates)
    if failed:
        raise failed[0]
