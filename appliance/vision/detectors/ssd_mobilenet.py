"""SSD-MobileNetV1 face detector (WIDER FACE weights from face-api, rebuilt to int8).

The model sees a letterboxed square and gives, for every anchor of six feature maps,
4 box encodings (ty, tx, th, tw) and a face logit (tools/quantlib/ssd_mobilenet.py).
The anchors are the TF object-detection API's multiple-grid anchors of the original
training config (512x512), regenerated here for the model's input size: the committed
int8 model can be rebuilt at another size and decode with anchors made for it. They are
regenerated in pixels, not as fractions of the input: the network learned offsets
relative to anchors of a given pixel size at a given stride, so at 320 px an anchor keeps
its 512-px size in pixels and its centre on its map's stride. (Keeping the fractions
instead shrinks every box by 320/512: measured, the boxes then miss IoU 0.5.) The decode and the
hard NMS follow face-api's (src/ssdMobilenetv1/outputLayer.ts, nonMaxSuppression.ts).

It gives boxes only, no keypoints: its detections carry `keypoints=None`, and the face
mesh supplies their alignment points (`FacePipeline.with_points`).
"""

from __future__ import annotations

import math

import numpy as np

from appliance.vision.detect import Detection, Letterbox, LetterboxedModel, iou
from appliance.vision.runtime import TfliteModel, pixel_lut

BOXES_OUTPUT = "box_encodings"
SCORES_OUTPUT = "face_logits"
PIXEL_MEAN = PIXEL_STD = 127.5  # face-api: x / 127.5 - 1

# The anchor generator of the original training config (ssd_mobilenet_v1 in the TF
# object-detection API): scales spaced evenly from MIN_SCALE to MAX_SCALE over the six
# maps, these aspect ratios plus one box at the geometric mean of a map's scale and the
# next one's, and only three boxes on the finest map. Checked against the 5,118 anchors
# face-api stores for 512x512 (tests/test_detectors_ssd.py).
TRAINED_SIZE = 512
FIRST_STRIDE = 16  # block 11's output; each later map halves it
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
LOWEST_LAYER = ((0.1, 1.0), (MIN_SCALE, 2.0), (MIN_SCALE, 0.5))
# Box-encoding scale factors (y, x, h, w) of the TF OD API's faster-RCNN box coder.
Y_SCALE = X_SCALE = 10.0
H_SCALE = W_SCALE = 5.0


def feature_maps(size: int) -> list[int]:
    """Side of each of the six square feature maps for a `size` input (TF 'SAME' strides:
    block 11 at stride 16, block 13 at 32, then four more halvings)."""
    side = math.ceil(size / 16)
    maps = [side]
    for _ in range(5):
        side = math.ceil(side / 2)
        maps.append(side)
    return maps


def box_specs(num_layers: int = 6) -> list[list[tuple[float, float]]]:
    """(scale, aspect ratio) of the boxes at each cell, per layer, in the model's order."""
    scales = [
        MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (num_layers - 1) for i in range(num_layers)
    ] + [1.0]
    specs = []
    for layer in range(num_layers):
        if layer == 0:
            specs.append(list(LOWEST_LAYER))
            continue
        s, nxt = scales[layer], scales[layer + 1]
        boxes = [(s, ASPECT_RATIOS[0]), (math.sqrt(s * nxt), 1.0)]
        boxes += [(s, a) for a in ASPECT_RATIOS[1:]]
        specs.append(boxes)
    return specs


def anchors(size: int) -> np.ndarray:
    """All anchors (A, 4) as (ymin, xmin, ymax, xmax) normalised to the input square,
    row-major over each map's cells, the cell's boxes innermost (the model's output order).

    At TRAINED_SIZE these are face-api's stored anchors; at other sizes each keeps its
    size in pixels and sits at the centre of its cell's stride (see the module doc).
    """
    out = []
    zoom = TRAINED_SIZE / size
    for layer, (side, specs) in enumerate(zip(feature_maps(size), box_specs(), strict=True)):
        stride = min(FIRST_STRIDE * 2**layer, TRAINED_SIZE)
        c = (np.arange(side, dtype=np.float64) + 0.5) * stride / size
        cy, cx = np.meshgrid(c, c, indexing="ij")
        hw = np.array([[s / math.sqrt(a), s * math.sqrt(a)] for s, a in specs]) * zoom
        centre = np.stack([cy.ravel(), cx.ravel()], 1)[:, None, :]
        half = hw[None, :, :] / 2
        out.append(np.concatenate([centre - half, centre + half], 2).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def num_anchors(size: int) -> int:
    return sum(s * s * len(b) for s, b in zip(feature_maps(size), box_specs(), strict=True))


def decode(
    encodings: np.ndarray, logits: np.ndarray, anchor_boxes: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs to (boxes (N, 4) x1y1x2y2 normalised to the input, scores (N,)).

    Only anchors whose sigmoid score reaches `threshold` are decoded. The decode is the
    TF OD API's: centre moves by t/10 of the anchor's size, size scales by exp(t/5).
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= threshold)
    if keep.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0)
    t = encodings.reshape(-1, 4)[keep].astype(np.float64)
    a = anchor_boxes[keep].astype(np.float64)
    ah, aw = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    acy, acx = a[:, 0] + ah / 2, a[:, 1] + aw / 2
    cy, cx = t[:, 0] / Y_SCALE * ah + acy, t[:, 1] / X_SCALE * aw + acx
    h, w = np.exp(t[:, 2] / H_SCALE) * ah, np.exp(t[:, 3] / W_SCALE) * aw
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    return boxes.astype(np.float32), scores[keep]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_out: int) -> list[int]:
    """Hard NMS as tf.image.nonMaxSuppression: indices kept, best score first.

    Not MediaPipe's weighted NMS: this model was trained and published with hard NMS,
    and its boxes have no keypoints for averaging to steady.
    """
    order = list(np.argsort(-scores, kind="stable"))
    kept: list[int] = []
    while order and len(kept) < max_out:
        top = order.pop(0)
        kept.append(int(top))
        if order:
            rest = np.array(order)
            order = [int(i) for i in rest[iou(boxes[top], boxes[rest]) <= iou_threshold]]
    return kept


class SsdMobilenetDetector(LetterboxedModel):
    """Frame (H, W, 3 uint8 RGB) -> box-only detections in frame pixels."""

    boxes_output = BOXES_OUTPUT
    scores_output = SCORES_OUTPUT

    gives_landmarks = False
    version = "ssd_mobilenet"  # set from the manifest's sha256 by the registry

    def __init__(
        self,
        model: TfliteModel,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.5,
        max_faces: int = 100,
    ) -> None:
        _, h, w, c = model.input_shape
        if h != w or c != 3:
            raise ValueError(f"SSD input must be square RGB, got {model.input_shape}")
        self.input_size = int(h)
        count = num_anchors(self.input_size)
        model.require_output(BOXES_OUTPUT, (count, 4))
        model.require_output(SCORES_OUTPUT, (count, 1))
        self.model = model
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_faces = max_faces
        self.anchors = anchors(self.input_size)
        self._lut = pixel_lut(model.input_quant, model.input_dtype, PIXEL_MEAN, PIXEL_STD)

    def postprocess(
        self,
        encodings: np.ndarray,
        logits: np.ndarray,
        lb: Letterbox,
        frame_shape: tuple[int, ...],
    ) -> list[Detection]:
        boxes, scores = decode(encodings, logits, self.anchors, self.score_threshold)
        h, w = frame_shape[:2]
        dets = []
        for i in nms(boxes, scores, self.iou_threshold, self.max_faces):
            fb = lb.to_frame(boxes[i].reshape(2, 2), self.input_size).reshape(4)
            fb = np.clip(fb, 0, [w, h, w, h]).astype(np.float32)
            if fb[2] - fb[0] < 1 or fb[3] - fb[1] < 1:
                continue  # a box that lies entirely in the letterbox padding
            dets.append(Detection(fb, None, float(scores[i])))
        return dets

    def detect(self, frame: np.ndarray) -> list[Detection]:
        x, lb = self.prepare(frame)
        encodings, logits = self.raw(x)
        return self.postprocess(encodings, logits, lb, frame.shape)


def build(model: TfliteModel, score_threshold: float) -> SsdMobilenetDetector:
    return SsdMobilenetDetector(model, score_threshold)
