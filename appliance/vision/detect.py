"""Face detection with MediaPipe's BlazeFace full-range model.

The model sees a 192x192 letterboxed image and predicts, for each of 2,304 anchors on a
48x48 grid, a score logit and 16 numbers: box centre offset, box size, and 6 keypoints,
all in input pixels relative to the anchor. Decoding and weighted NMS follow MediaPipe's
TensorsToDetections and NonMaxSuppression (weighted) calculators, so the float model
gives the boxes MediaPipe gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.vision.runtime import TfliteModel, pixel_lut

# Keypoint order of BlazeFace (subject's right eye is on the image's left).
RIGHT_EYE, LEFT_EYE, NOSE, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)

BOXES_OUTPUT = "reshaped_regressor_face_4"
SCORES_OUTPUT = "reshaped_classifier_face_4"
NUM_KEYPOINTS = 6
LOGIT_CLIP = 100.0  # MediaPipe clips raw scores before the sigmoid
PIXEL_MEAN = PIXEL_STD = 127.5  # BlazeFace takes pixels scaled to [-1, 1]


def normalise(img: np.ndarray) -> np.ndarray:
    """Uint8 pixels to the float input BlazeFace was trained on.

    Written as x/std - mean/std (= x/127.5 - 1 exactly): the committed int8 detector was
    calibrated with this float rounding, and CI regenerates it byte for byte.
    """
    return img.astype(np.float32) / PIXEL_STD - PIXEL_MEAN / PIXEL_STD


@dataclass(frozen=True)
class Detection:
    """A face in frame pixels: box (x1, y1, x2, y2), keypoints (6, 2) and score in [0, 1].

    `keypoints` is None from a box-only detector (SSD-MobileNet) until a landmark stage
    fills it; alignment and quality need it (appliance.vision.detectors).
    """

    box: np.ndarray
    keypoints: np.ndarray | None
    score: float

    @property
    def eye_distance(self) -> float:
        if self.keypoints is None:
            raise ValueError("a box-only detection has no eyes: run a landmark stage first")
        return float(np.linalg.norm(self.keypoints[LEFT_EYE] - self.keypoints[RIGHT_EYE]))


def ssd_anchors(grid: int) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1] for one square feature map, one anchor per cell.

    Full-range BlazeFace uses a single 48x48 layer (stride 4 on 192 px) with fixed-size
    anchors, so the anchor size never enters the decode.
    """
    c = (np.arange(grid, dtype=np.float32) + 0.5) / grid
    ys, xs = np.meshgrid(c, c, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was scaled and padded into the square model input."""

    scale: float  # model pixels per frame pixel
    pad_x: float
    pad_y: float
    # Frame pixels the content moved by: each pyrDown keeps pixel 2i of its input, not
    # the centre of pixels 2i and 2i+1, so k halvings shift the image by (2**k - 1) / 2.
    shift: float = 0.0

    def to_frame(self, pts: np.ndarray, size: int) -> np.ndarray:
        """Map normalised model coordinates (..., 2) back to frame pixels."""
        return (pts * size - (self.pad_x, self.pad_y)) / self.scale - self.shift


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio, centre on a black square; returns image and mapping.

    Only integer-arithmetic OpenCV kernels, so a Pi computes the same pixels as x86_64:
    halvings by `pyrDown` (a 5-tap Gaussian, against aliasing) while the frame is over
    twice the target, then bilinear, as MediaPipe's own CPU preprocessing does.
    `INTER_AREA` was used before and rounded a third of the frames differently on
    aarch64 (tools/arm64/README.md), which moved keypoints and embeddings.
    """
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    src, halvings = frame, 0
    while src.shape[1] >= 2 * nw and src.shape[0] >= 2 * nh:
        src, halvings = cv2.pyrDown(src), halvings + 1
    resized = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_LINEAR)
    px, py = (size - nw) // 2, (size - nh) // 2
    out = np.zeros((size, size, 3), dtype=frame.dtype)
    out[py : py + nh, px : px + nw] = resized
    return out, Letterbox(scale=scale, pad_x=px, pad_y=py, shift=(2**halvings - 1) / 2)


def decode(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw model outputs to (boxes (N,4) x1y1x2y2, keypoints (N,6,2), scores (N,)).

    Coordinates are normalised to the model input. Only anchors above `threshold` are
    decoded, so the cost is proportional to candidates, not to the 2,304 anchors.
    """
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -LOGIT_CLIP, LOGIT_CLIP)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.flatnonzero(scores >= threshold)
    if keep.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0)
    r = raw_boxes.reshape(-1, 16)[keep] / input_size
    a = anchors[keep]
    centre = r[:, 0:2] + a
    half = r[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    kps = r[:, 4:16].reshape(-1, NUM_KEYPOINTS, 2) + a[:, None, :]
    return boxes.astype(np.float32), kps.astype(np.float32), scores[keep]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1y1x2y2 box against many."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted NMS: each cluster becomes the score-weighted mean of its members.

    Plain NMS keeps one anchor's jittery box; averaging the overlapping anchors gives
    steadier boxes and keypoints, which alignment depends on. The cluster keeps the
    score of its best member.
    """
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.arange(len(scores))
    out = []
    while remaining.size:
        top = remaining[0]
        overlap = iou(boxes[top], boxes[remaining]) > iou_threshold
        members = remaining[overlap]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kps = (keypoints[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, kps, float(scores[top])))
        remaining = remaining[~overlap]
    return out


class LetterboxedModel:
    """What every single-shot detector here does before and after its model: the frame
    letterboxed to the square input and normalised (a LUT when the input is int8), then
    the boxes and scores outputs. Subclasses set `model`, `input_size`, `_lut` and
    `boxes_output`/`scores_output`, and decode in their own `postprocess`."""

    model: TfliteModel
    input_size: int
    _lut: np.ndarray | None
    boxes_output: str = BOXES_OUTPUT
    scores_output: str = SCORES_OUTPUT

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        img, lb = letterbox(frame, self.input_size)
        x = cv2.LUT(img, self._lut) if self._lut is not None else normalise(img)
        return x[None], lb

    def raw(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.model.run(x)
        return out[self.boxes_output][0], out[self.scores_output][0]


class FaceDetector(LetterboxedModel):
    """Frame (H, W, 3 uint8 RGB) -> detections in frame pixels (BlazeFace full-range)."""

    gives_landmarks = True
    INPUT_SIZE = 192
    GRID = 48
    version = "detector"  # set from the manifest's sha256 by FacePipeline.load

    def __init__(
        self,
        model: TfliteModel,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
    ) -> None:
        if model.input_shape[1:] != (self.INPUT_SIZE, self.INPUT_SIZE, 3):
            raise ValueError(f"detector input must be 192x192x3, got {model.input_shape}")
        n = self.GRID * self.GRID
        model.require_output(BOXES_OUTPUT, (n, 16))
        model.require_output(SCORES_OUTPUT, (n, 1))
        self.model = model
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.anchors = ssd_anchors(self.GRID)
        self.input_size = self.INPUT_SIZE
        self._lut = pixel_lut(model.input_quant, model.input_dtype, PIXEL_MEAN, PIXEL_STD)

    def postprocess(
        self,
        raw_boxes: np.ndarray,
        raw_scores: np.ndarray,
        lb: Letterbox,
        frame_shape: tuple[int, ...],
    ) -> list[Detection]:
        boxes, kps, scores = decode(
            raw_boxes, raw_scores, self.anchors, self.INPUT_SIZE, self.score_threshold
        )
        h, w = frame_shape[:2]
        dets = []
        for box, kp, score in weighted_nms(boxes, kps, scores, self.iou_threshold):
            fb = lb.to_frame(box.reshape(2, 2), self.INPUT_SIZE).reshape(4)
            fb = np.clip(fb, 0, [w, h, w, h]).astype(np.float32)
            if fb[2] - fb[0] < 1 or fb[3] - fb[1] < 1:
                continue  # a box that lies entirely in the letterbox padding
            dets.append(Detection(fb, lb.to_frame(kp, self.INPUT_SIZE).astype(np.float32), score))
        return dets

    def detect(self, frame: np.ndarray) -> list[Detection]:
        x, lb = self.prepare(frame)
        raw_boxes, raw_scores = self.raw(x)
        return self.postprocess(raw_boxes, raw_scores, lb, frame.shape)
