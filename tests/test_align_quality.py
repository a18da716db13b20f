"""Alignment, normalisation and quality on constructed inputs."""

import numpy as np

from appliance.vision.align import ARCFACE_112, align, similarity, template
from appliance.vision.detect import Detection
from appliance.vision.quality import pose
from appliance.vision.runtime import Quant, pixel_lut
from appliance.vision.similarity import cosine, cosine_matrix, l2_normalize


def test_similarity_recovers_a_known_transform():
    src = ARCFACE_112.copy()
    ang = np.radians(20)
    r = 1.7 * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ r.T + [30, -12]
    m = similarity(src, dst)
    assert np.allclose(m[:, :2], r, atol=1e-4)
    assert np.allclose(m[:, 2], [30, -12], atol=1e-3)


def test_align_puts_keypoints_on_the_template():
    frame = np.zeros((300, 300, 3), np.uint8)
    kps = np.zeros((6, 2), np.float32)
    kps[:4] = ARCFACE_112 * 1.5 + [80, 60]  # a face 1.5x the template, shifted
    for x, y in kps[:4]:
        frame[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    crop = align(frame, kps, template(112), 112)
    for x, y in ARCFACE_112:
        assert crop[round(float(y)), round(float(x))].max() > 100


def test_template_zoom_and_size():
    t = template(160, zoom=1.0)
    assert np.allclose(t, ARCFACE_112 * 160 / 112)
    z = template(112, zoom=0.5)
    assert np.linalg.norm(z[1] - z[0]) < np.linalg.norm(ARCFACE_112[1] - ARCFACE_112[0])


def test_pose_frontal_and_turned():
    kps = np.zeros((6, 2), np.float32)
    kps[:4] = ARCFACE_112
    yaw, pitch, roll = pose(kps)
    assert abs(yaw) < 0.05 and abs(roll) < 1 and 0.4 < pitch < 0.6
    kps[2, 0] += 15  # nose far to one side: a turned head
    assert abs(pose(kps)[0]) > 0.5
    det = Detection(np.zeros(4, np.float32), kps, 0.9)
    assert det.eye_distance > 30


def test_pixel_lut_matches_normalise_then_quantise():
    q = Quant(0.0078, -3)  # real scales are float32 values, not exact ties like 2/255
    lut = pixel_lut(q, np.dtype(np.int8), 127.5, 127.5)
    p = np.arange(256)
    expected = np.clip(np.round((p / 127.5 - 1) / q.scale + q.zero_point), -128, 127)
    assert np.array_equal(lut, expected.astype(np.int8))
    assert pixel_lut(Quant(0.0, 0), np.dtype(np.float32), 127.5, 127.5) is None


def test_cosine_written_once_and_consistent():
    a = np.array([3.0, 4.0])
    b = np.array([4.0, 3.0])
    assert np.isclose(cosine(a, b), 24 / 25)
    m = cosine_matrix(l2_normalize(np.stack([a, b])), l2_normalize(np.stack([a])))
    assert np.allclose(m[:, 0], [1.0, 24 / 25])
