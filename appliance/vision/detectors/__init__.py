"""The face detectors, behind one interface: adding a detector is adding one module.

Each entry names the module that builds the detector, the manifest entry of its model,
and whether its detections carry the six alignment keypoints (BlazeFace's order:
appliance.vision.detect.RIGHT_EYE ... LEFT_EAR). A detector without them gives boxes
only (`Detection.keypoints is None`), and its faces can be recognised only through a
landmark stage that finds the points inside each box.

`LANDMARK_STAGE` is that stage's one hook: None until the landmark stage
(appliance/vision/landmarks.py, the MediaPipe face mesh) is wired in, so a box-only
detector is refused for recognition with an error naming `detector.model`. Wiring it is
setting LANDMARK_STAGE to its loader; nothing else here or in the pipeline changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
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


class LandmarkStage(Protocol):
    """Alignment points for a box: (6, 2) frame pixels in BlazeFace's keypoint order."""

    version: str

    def points(self, image: np.ndarray, box: np.ndarray) -> np.ndarray: ...


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

# THE HOOK (issue 21): the landmark stage's loader, (models_dir, manifest models, threads)
# -> LandmarkStage. None until appliance/vision/landmarks.py lands.
LANDMARK_STAGE: Callable[[Path, dict[str, Any], int], LandmarkStage] | None = None


def info(name: str) -> DetectorInfo:
    try:
        return DETECTORS[name]
    except KeyError:
        raise ModelError(f"unknown detector {name!r}; have {sorted(DETECTORS)}") from None


def recognition_problem(name: str) -> str | None:
    """Why faces from detector `name` cannot be aligned for recognition, or None."""
    d = info(name)
    if d.gives_landmarks or LANDMARK_STAGE is not None:
        return None
    return (
        f"{name} finds boxes only, and no landmark stage is installed to give its faces "
        "alignment points, so they cannot be recognised; use blazeface "
        "(tools/evaluate.py detection --detector NAME measures any detector)"
    )


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
