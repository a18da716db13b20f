"""The face detectors, behind one interface: adding a detector is adding one module.

Each entry names the module that builds the detector, the manifest entry of its model,
and whether its detections carry the six alignment keypoints (BlazeFace's order:
appliance.vision.detect.RIGHT_EYE ... LEFT_EAR). A detector without them gives boxes
only (`Detection.keypoints is None`); its faces are aligned on points the landmark stage
(appliance/vision/landmarks.py, the MediaPipe face mesh, the one liveness uses too) finds
inside each box (`FacePipeline.with_points`).

`alignment` names what aligns a pipeline's faces: a detector's own keypoints (the
detector's name) or MESH. Templates and the open-set calibration carry that name, and a
gallery is never matched against probes aligned another way (appliance.identity).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from appliance.vision.runtime import ModelError

if TYPE_CHECKING:  # config validation asks this registry; it must not load OpenCV
    import numpy as np

    from appliance.vision.detect import Detection


class Detector(Protocol):
    """What the pipeline needs of a detector."""

    gives_landmarks: bool
    version: str
    score_threshold: float

    def detect(self, frame: np.ndarray) -> list[Detection]: ...


@dataclass(frozen=True)
class DetectorInfo:
    name: str  # the value of `detector.model`
    module: str  # appliance.vision.detectors.<module>, which defines `build`
    manifest_key: str  # its model's entry in models/manifest.json
    gives_landmarks: bool


DETECTORS: dict[str, DetectorInfo] = {
    "blazeface": DetectorInfo("blazeface", "blazeface", "detector", gives_landmarks=True),
    "ssd_mobilenet": DetectorInfo(
        "ssd_mobilenet", "ssd_mobilenet", "ssd_mobilenet", gives_landmarks=False
    ),
}
DEFAULT_DETECTOR = "blazeface"

AUTO, MESH, OWN = "auto", "mesh", "detector"  # `FacePipeline.load(align=...)` choices
ALIGN_CHOICES = (AUTO, MESH, OWN)


def info(name: str) -> DetectorInfo:
    try:
        return DETECTORS[name]
    except KeyError:
        raise ModelError(f"unknown detector {name!r}; have {sorted(DETECTORS)}") from None


def alignment(name: str, align: str = AUTO) -> str:
    """What aligns the faces of detector `name` under `align`: the detector's name when
    its own keypoints do, or MESH (the face mesh on its box). "auto" takes the
    detector's keypoints when it has them: the BlazeFace door never runs the mesh."""
    d = info(name)
    if align not in ALIGN_CHOICES:
        raise ModelError(f"unknown alignment {align!r}; have {list(ALIGN_CHOICES)}")
    if align == OWN and not d.gives_landmarks:
        raise ModelError(f"{name} finds boxes only: its faces need the mesh alignment")
    return d.name if align != MESH and d.gives_landmarks else MESH


def load(
    name: str,
    models_dir: Path,
    models: dict[str, Any],
    threads: int = 1,
    score_threshold: float = 0.5,
    float_models_dir: Path | None = None,
    model_file: Path | None = None,
) -> Detector:
    """Detector `name` on its manifest model (int8; the float original with
    `float_models_dir`; or an explicit `model_file`, e.g. a rebuild at another size)."""
    d = info(name)
    entry = models.get(d.manifest_key)
    if entry is None and model_file is None:
        raise ModelError(
            f"detector {name!r}: no {d.manifest_key!r} model in the manifest; "
            f"run tools/quantize.py --models {d.manifest_key}"
        )
    if model_file is not None:
        path = model_file
    elif float_models_dir is not None:
        path = float_models_dir / entry["float_file"]
    else:
        path = models_dir / entry["file"]
    from appliance.vision.runtime import TfliteModel

    module = importlib.import_module(f"{__name__}.{d.module}")
    det: Detector = module.build(TfliteModel(path, threads), score_threshold)
    det.version = f"{d.manifest_key}-{entry['sha256'][:12]}" if entry else f"{name}-{path.name}"
    return det
