"""Live feedback for a camera enrolment, on real frames of the demo scene through the
real int8 models: each thing a person can get wrong gets its own sentence, and only a
frame judged good becomes a template."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from appliance.camera import demo
from appliance.config.schema import Config, EnrolmentConfig, StorageConfig
from appliance.control.commands import CaptureEnrol, CommandError
from appliance.control.events import DomainEvents
from appliance.identity.capture import CaptureSessions
from appliance.identity.feedback import ADVICE, DARK_LEVEL, brightness, feedback
from appliance.identity.recogniser import Recogniser, open_gallery

GATES = EnrolmentConfig()


@pytest.fixture(scope="module")
def scene():
    """The demo's frames by index: 44 the astronaut close up, 104 the stranger (turned
    away), 50 the empty backdrop."""
    frames = {f.index: f.image for f in demo.frames(loop=False)}
    return frames


@pytest.fixture(scope="module")
def near(scene):
    return scene[44]


def judge(pipeline, image, previous_box=None):
    return feedback(pipeline.faces(image, embed=False), GATES, previous_box)


def test_a_frontal_sharp_lit_face_near_enough_is_good(pipeline, near):
    fb = judge(pipeline, near)
    assert fb.code == "good" and fb.message == ADVICE["good"]


def test_no_face_asks_to_step_in(pipeline, scene):
    fb = judge(pipeline, scene[50])
    assert fb.code == "no_face" and fb.message == "Step in front of the camera."


def test_several_faces(pipeline, group):
    fb = judge(pipeline, group)
    assert fb.code == "several_faces" and "faces in the photo" in fb.detail


def test_the_same_frame_scaled_down_asks_to_come_closer(pipeline, near):
    # eyes about 24 px apart, under the default 30
    small = cv2.resize(near, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    fb = judge(pipeline, small)
    assert fb.code == "too_small" and fb.message == "Come closer."
    assert "enrolment.min_eye_distance" in fb.detail


def test_darkened_asks_for_light_before_sharpness(pipeline, near):
    dark = (near.astype(np.float32) * 0.3).astype(np.uint8)
    faces = pipeline.faces(dark, embed=False)
    assert brightness(faces[0]) < DARK_LEVEL
    assert faces[0].quality.blur < GATES.min_blur  # darkness blurs too; light comes first
    fb = feedback(faces, GATES)
    assert fb.code == "too_dark" and fb.message == "More light on your face, please."
    dim = (near.astype(np.float32) * 0.5).astype(np.uint8)  # dimmer, still fine
    assert judge(pipeline, dim).code == "good"


def test_a_turned_face_is_asked_to_look_at_the_camera(pipeline, scene):
    fb = judge(pipeline, scene[104])
    assert fb.code == "not_frontal" and fb.message == "Look straight at the camera."


def test_a_blurred_frame_asks_to_hold_still(pipeline, near):
    fb = judge(pipeline, cv2.GaussianBlur(near, (0, 0), 2.5))
    assert fb.code == "blurred" and fb.message == "Hold still."


def test_a_face_that_moved_since_the_last_frame_asks_to_hold_still(pipeline, near):
    faces = pipeline.faces(near, embed=False)
    eyes = faces[0].quality.eye_distance
    assert feedback(faces, GATES, faces[0].box.copy()).code == "good"
    shifted = faces[0].box + np.array([eyes, 0, eyes, 0, *([0] * (len(faces[0].box) - 4))])
    fb = feedback(faces, GATES, shifted)
    assert fb.code == "moving" and fb.message == "Hold still."


def test_session_keeps_the_latest_feedback_and_stores_only_good_frames(tmp_path, pipeline, scene):
    cfg = dataclasses.replace(Config(), storage=StorageConfig(str(tmp_path)))
    rec = Recogniser(cfg, pipeline, open_gallery(cfg), DomainEvents())
    sessions = CaptureSessions(rec, DomainEvents(), timeout_s=30.0)
    try:
        assert sessions.status() == {"active": False, "result": None}
        fut = sessions.start(CaptureEnrol("Cam", frames=2), "test")
        for image, code in ((scene[50], "no_face"), (scene[104], "not_frontal")):
            sessions.step(pipeline.faces(image, embed=False))
            st = sessions.status()
            assert st["feedback"]["code"] == code and st["collected"] == 0
        sessions.step(pipeline.faces(scene[44], embed=False))
        st = sessions.status()
        assert st["feedback"]["code"] == "good" and st["collected"] == 1
        assert st["feedback"]["message"] == "Good, hold still. 1 of 2 frames collected."
        sessions.step(pipeline.faces(scene[44], embed=False))
        assert fut.result(0)["person"]["templates"] == 2
        st = sessions.status()
        assert st["active"] is False and st["result"]["ok"] is True
        assert st["result"]["person_id"] == fut.result(0)["person"]["id"]
        sessions.timeout_s = 0.0
        fut = sessions.start(CaptureEnrol("Late"), "test")
        sessions.step([])
        with pytest.raises(CommandError):
            fut.result(0)
        assert sessions.status()["result"]["code"] == "capture_timeout"
    finally:
        rec.close()
