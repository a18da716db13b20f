"""Any detector on overlapping tiles of the frame, for faces too small at full view.

BlazeFace sees the whole frame as a 192x192 letterbox, so a 20-px face in a 1280x720
frame is 3 px to it. Run on tiles, each tile is letterboxed on its own and the face is
`cols` times larger to the model. The full frame is looked at too (a face larger than a
tile), and with `only_when_empty` the tiles are looked at only when that first look found
nothing (the cost of a frame with a face stays one invoke). Overlapping detections are
merged by hard NMS, the surer one kept. Measured in README "Detectors".
"""

from __future__ import annotations

import numpy as np

from appliance.vision.detect import Detection, iou
from appliance.vision.detectors import Detector


def tiles(h: int, w: int, cols: int, rows: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of a cols x rows grid of tiles, each `overlap` of a tile wider
    and taller than its share so a face on a seam lies whole inside one tile."""
    tw, th = w / cols, h / rows
    ow, oh = tw * overlap / 2, th * overlap / 2
    out = []
    for r in range(rows):
        for c in range(cols):
            x0, y0 = max(0, round(c * tw - ow)), max(0, round(r * th - oh))
            x1, y1 = min(w, round((c + 1) * tw + ow)), min(h, round((r + 1) * th + oh))
            out.append((x0, y0, x1, y1))
    return out


def merge(dets: list[Detection], iou_threshold: float) -> list[Detection]:
    """Hard NMS over detections from several looks: the surer of overlapping ones."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if not kept or iou(d.box, np.stack([k.box for k in kept])).max() <= iou_threshold:
            kept.append(d)
    return kept


class TiledDetector:
    """Wraps a detector: the full frame, then a grid of tiles (always, or when empty)."""

    def __init__(
        self,
        inner: Detector,
        cols: int = 2,
        rows: int = 2,
        overlap: float = 0.25,
        only_when_empty: bool = False,
        iou_threshold: float = 0.3,
    ) -> None:
        if cols < 1 or rows < 1 or not 0 <= overlap < 1:
            raise ValueError(f"bad tiling {cols}x{rows} overlap {overlap}")
        self.inner = inner
        self.cols, self.rows, self.overlap = cols, rows, overlap
        self.only_when_empty = only_when_empty
        self.iou_threshold = iou_threshold
        self.gives_landmarks = inner.gives_landmarks
        self.score_threshold = inner.score_threshold
        self.version = inner.version

    def detect(self, frame: np.ndarray) -> list[Detection]:
        found = self.inner.detect(frame)
        if found and self.only_when_empty:
            return found
        h, w = frame.shape[:2]
        for x0, y0, x1, y1 in tiles(h, w, self.cols, self.rows, self.overlap):
            off = np.array([x0, y0], np.float32)
            for d in self.inner.detect(frame[y0:y1, x0:x1]):
                kps = None if d.keypoints is None else d.keypoints + off
                found.append(Detection(d.box + np.tile(off, 2), kps, d.score))
        return merge(found, self.iou_threshold)
