"""Anchor decoding, NMS and letterboxing on constructed inputs with known answers."""

import numpy as np
import pytest

from appliance.vision.detect import decode, iou, letterbox, ssd_anchors, weighted_nms


def test_anchors_cover_grid_centres():
    a = ssd_anchors(48)
    assert a.shape == (2304, 2)
    assert np.allclose(a[0], [0.5 / 48, 0.5 / 48])
    assert np.allclose(a[47], [47.5 / 48, 0.5 / 48])  # x runs fastest, as in MediaPipe
    assert np.allclose(a[48], [0.5 / 48, 1.5 / 48])


def test_decode_places_box_and_keypoints_relative_to_anchor():
    anchors = ssd_anchors(48)
    raw = np.zeros((2304, 16), np.float32)
    scores = np.full((2304, 1), -10.0, np.float32)
    k = 48 * 10 + 20  # row 10, column 20
    raw[k, 0:4] = [4.0, -2.0, 38.4, 19.2]  # dx, dy (px of 192), w, h
    raw[k, 4:6] = [-9.6, 0.0]  # first keypoint 9.6 px left of the anchor
    scores[k] = 3.0
    boxes, kps, s = decode(raw, scores, anchors, 192, 0.5)
    assert boxes.shape == (1, 4)
    cx, cy = anchors[k] + np.array([4.0, -2.0]) / 192
    assert np.allclose(boxes[0], [cx - 0.1, cy - 0.05, cx + 0.1, cy + 0.05], atol=1e-6)
    assert np.allclose(kps[0, 0], anchors[k] + [-0.05, 0.0], atol=1e-6)
    assert np.isclose(s[0], 1 / (1 + np.exp(-3.0)))


def test_decode_clips_logits_and_drops_low_scores():
    anchors = ssd_anchors(48)
    raw = np.zeros((2304, 16), np.float32)
    scores = np.full((2304, 1), -1e6, np.float32)
    scores[0] = 1e6
    _, _, s = decode(raw, scores, anchors, 192, 0.5)
    assert s.tolist() == [1.0 / (1.0 + np.exp(-100.0))]


def test_weighted_nms_averages_a_cluster_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    kps[1] += 1.0
    scores = np.array([0.9, 0.3, 0.8])
    out = weighted_nms(boxes, kps, scores, 0.3)
    assert len(out) == 2
    box, kp, score = out[0]
    assert score == 0.9
    assert np.allclose(box, [0.25, 0.25, 10.25, 10.25])  # (0.9*0 + 0.3*1) / 1.2
    assert np.allclose(kp, 0.25)
    assert np.allclose(out[1][0], [50, 50, 60, 60])


def test_iou():
    a = np.array([0, 0, 10, 10], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    assert np.allclose(iou(a, b), [50 / 150, 0.0, 1.0])


def test_letterbox_keeps_aspect_and_maps_back():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:140, 200:260] = 255
    img, lb = letterbox(frame, 192)
    assert img.shape == (192, 192, 3)
    assert lb.pad_x == 0 and lb.pad_y == 24  # 640x480 -> 192x144, centred
    assert img[:24].max() == 0 and img[-24:].max() == 0
    # The model-space centre of the white patch maps back to its frame centre.
    ys, xs = np.nonzero(img[:, :, 0] > 128)
    centre = np.array([[xs.mean() + 0.5, ys.mean() + 0.5]]) / 192
    assert np.allclose(lb.to_frame(centre, 192), [[230, 120]], atol=2)


@pytest.mark.parametrize(("h", "w"), [(480, 640), (1080, 1920), (250, 250)])
def test_letterbox_maps_back_within_half_a_pixel_at_any_scale(h: int, w: int) -> None:
    """Large frames are halved by pyrDown first, which shifts the image; the mapping
    back to frame pixels must undo that, or keypoints on a 1080p frame land 3.5 px off."""
    frame = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, r = h * 0.37, w * 0.61, max(8, w // 40)
    frame[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 255
    img, lb = letterbox(frame, 192)
    weight = img[:, :, 0].astype(np.float64)
    ys, xs = np.mgrid[0:192, 0:192]
    centre = np.array([[(xs * weight).sum(), (ys * weight).sum()]]) / weight.sum() + 0.5
    mask = frame[:, :, 0] > 0
    truth = np.array([xx[mask].mean(), yy[mask].mean()]) + 0.5
    assert np.abs(lb.to_frame(centre / 192, 192)[0] - truth).max() < 0.5
