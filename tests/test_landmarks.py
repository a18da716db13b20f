"""The landmark stage (face mesh) on real faces: points where the face is, eyes on the
eyes, and the same mesh from any detector's box."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.vision.detect import LEFT_EYE, RIGHT_EYE, Detection
from appliance.vision.imageio import read_image
from appliance.vision.landmarks import NUM_POINTS, FaceMesh, load_face_mesh, roi_transform
from appliance.vision.pipeline import MODELS_DIR
from appliance.vision.runtime import ModelError, TfliteModel


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return load_face_mesh()


def test_mesh_is_int8_in_one_xnnpack_partition(mesh):
    assert mesh.model.input_quant.is_int8
    assert mesh.model.delegate_partitions() == (1, True)


def test_eyes_on_the_eyes_of_real_faces(shared, pipeline, mesh):
    """On real photos the mesh's eye centres are where BlazeFace puts the eyes (within a
    fifth of the eye distance), right eye on the image's left, all points near the box."""
    for name in ("obama.jpg", "biden.jpg", "lin-manuel-miranda.png", "alex-lacamoire.png"):
        img = read_image(shared / "scenes" / "examples" / name)
        dets = pipeline.detector.detect(img)
        assert dets, name
        (lm,) = mesh.landmarks(img, dets[:1])
        assert lm is not None and lm.score > 0.9, name
        assert lm.points.shape == (NUM_POINTS, 3)
        d = dets[0]
        eyes = lm.eye_centres()
        err = np.linalg.norm(eyes - d.keypoints[[RIGHT_EYE, LEFT_EYE]], axis=1)
        assert (err < 0.2 * d.eye_distance).all(), (name, err, d.eye_distance)
        assert eyes[0, 0] < eyes[1, 0]
        x1, y1, x2, y2 = d.box
        w = x2 - x1
        inside = (
            (lm.points[:, 0] > x1 - 0.3 * w)
            & (lm.points[:, 0] < x2 + 0.3 * w)
            & (lm.points[:, 1] > y1 - 0.3 * w)
            & (lm.points[:, 1] < y2 + 0.3 * w)
        )
        assert inside.all(), name
        assert 0.15 < lm.eye_aspect_ratio() < 0.45, name


def test_box_only_detection_gives_alignment_points(shared, pipeline, mesh):
    """A detector without keypoints (zeros) still gets eyes from the mesh: the stage the
    box-only detector reuses for alignment."""
    img = read_image(shared / "scenes" / "examples" / "biden.jpg")
    d = pipeline.detector.detect(img)[0]
    box_only = Detection(d.box, np.zeros((0, 2), np.float32), d.score)
    (lm,) = mesh.landmarks(img, [box_only])
    assert lm is not None
    kp = lm.keypoints()
    assert kp.shape == (6, 2)
    err = np.linalg.norm(kp[:2] - d.keypoints[[RIGHT_EYE, LEFT_EYE]], axis=1)
    assert (err < 0.2 * d.eye_distance).all(), err


def test_no_face_gives_none(mesh):
    """A box over a flat wall is no face: the mesh's presence score says so."""
    wall = np.full((480, 640, 3), 180, np.uint8)
    d = Detection(np.array([200, 150, 320, 270], np.float32), np.zeros((6, 2), np.float32), 0.9)
    assert mesh.landmarks(wall, [d]) == [None]


def test_roi_is_turned_to_level_eyes():
    """A face rolled by 30 degrees is cut upright: the eyes land level in the crop."""
    a = np.radians(30)
    kp = np.zeros((6, 2), np.float32)
    kp[RIGHT_EYE] = (100, 100)
    kp[LEFT_EYE] = (100 + 60 * np.cos(a), 100 + 60 * np.sin(a))
    d = Detection(np.array([80, 60, 200, 200], np.float32), kp, 0.9)
    m = roi_transform(d)
    eyes = kp[[RIGHT_EYE, LEFT_EYE]] @ m[:, :2].T + m[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-3


def test_wrong_model_is_refused():
    with pytest.raises(ModelError, match="192x192"):
        FaceMesh(TfliteModel(MODELS_DIR / "mobilefacenet_int8.tflite"))
