"""MediaPipe BlazeFace full-range: the 192x192 detector with six keypoints per face.

The implementation stays in appliance.vision.detect, which the rest of the project
imports for its shared pieces (Detection, letterbox, iou, the keypoint names); this
module is its registry entry.
"""

from __future__ import annotations

from appliance.vision.detect import FaceDetector
from appliance.vision.runtime import TfliteModel


def build(model: TfliteModel, score_threshold: float) -> FaceDetector:
    return FaceDetector(model, score_threshold)
