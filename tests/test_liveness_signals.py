"""The liveness signals: planarity on a rigid plane versus a 3D head, blink on a
constructed eye-aspect sequence, and the incremental verdict's fail-closed rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.liveness.signals import blink_score, homography_residual, planarity_score
from appliance.liveness.verdict import LivenessRules, Observation, judge
from appliance.vision.imageio import read_image
from appliance.vision.landmarks import load_face_mesh


@pytest.fixture(scope="module")
def face3d(shared, pipeline) -> np.ndarray:
    """A real face's mesh (x, y, z), centred: the 3D shape of a real head."""
    img = read_image(shared / "scenes" / "examples" / "obama.jpg")
    (lm,) = load_face_mesh().landmarks(img, pipeline.detector.detect(img)[:1])
    p = lm.points.astype(np.float64)
    return p - p.mean(0)


def project(p: np.ndarray, yaw_deg: float, f: float = 1500.0) -> np.ndarray:
    a = np.radians(yaw_deg)
    r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    q = p @ r.T
    z = q[:, 2] + 3 * f / 4
    return q[:, :2] * (f / z)[:, None] + 320


def test_a_turning_head_is_not_a_plane_but_its_flattened_copy_is(face3d):
    """The same head turned by 20 degrees: with its depth the mesh leaves a homography
    residual above the live threshold (only just: 0.075 eye distances, which is why a
    person who barely moves is refused); flattened (a print of it) none at all."""
    eyes = np.linalg.norm(face3d[33, :2] - face3d[263, :2])
    flat = face3d * [1, 1, 0]
    head = [project(face3d, a) for a in (0, 10, 20)]
    paper = [project(flat, a) for a in (0, 10, 20)]
    rules = LivenessRules()
    assert planarity_score(head, [eyes] * 3) > rules.planarity_min
    assert planarity_score(paper, [eyes] * 3) < 1e-3


def test_the_real_mesh_of_a_print_moved_as_a_plane_stays_flat(shared, pipeline):
    """The real detector and mesh on a photo warped by perspective (a sheet tilted by a
    hand): the residual stays under the configured threshold."""
    img = read_image(shared / "scenes" / "examples" / "obama.jpg")
    mesh = load_face_mesh()
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    obs = []
    for k, tilt in enumerate((0.0, 0.04, 0.08, 0.12)):
        dst = src + np.float32([[tilt * w, 0], [-tilt * w, tilt * h], [-tilt * w, 0], [0, 0]])
        frame = cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h))
        (lm,) = mesh.landmarks(frame, pipeline.detector.detect(frame)[:1])
        obs.append(Observation.of(lm, k * 0.1))
    score = planarity_score([o.points for o in obs], [o.eye_distance for o in obs])
    assert score < LivenessRules(mode="planarity").planarity_min, score
    assert judge(obs, LivenessRules(mode="planarity")).live is False


def test_homography_residual_is_zero_for_a_homography():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, (50, 2))
    h = np.array([[1.1, 0.05, 3], [-0.02, 0.95, -4], [1e-4, 2e-4, 1]])
    b = cv2.perspectiveTransform(a[None], h)[0]
    assert homography_residual(a, b, 10.0) < 1e-6


def test_blink_needs_a_dip_and_a_reopening():
    assert blink_score([0.3, 0.3, 0.12, 0.29, 0.3]) > 0.5  # closed, then open again
    assert blink_score([0.3, 0.3, 0.29, 0.31, 0.3]) < 0.1  # open throughout
    assert blink_score([0.3, 0.3, 0.25, 0.15, 0.1]) < 0.2  # shut at the end: no blink
    assert blink_score([0.3, 0.1]) == 0.0  # too short to tell


def _obs(t: float, pts: np.ndarray, ear: float = 0.3) -> Observation:
    return Observation(t, pts.astype(np.float32), 60.0, ear)


def test_verdict_is_undecided_then_not_live_when_the_window_passes():
    """Flat evidence: undecided while the window is open, not live once a frame past
    `max_s` arrives or the visit ends; never live."""
    rules = LivenessRules(mode="planarity", max_s=1.0)
    pts = np.random.default_rng(1).uniform(0, 100, (100, 2))
    obs = [_obs(0.1 * k, pts) for k in range(5)]
    assert judge(obs, rules, ended=False).live is None
    assert judge(obs, rules, ended=True).live is False
    late = [*obs, _obs(1.5, pts)]
    v = judge(late, rules, ended=False)
    assert v.live is False and v.frames == 5
    assert judge([], rules, ended=True).live is False


def test_verdict_is_live_at_the_first_frame_that_shows_depth(face3d):
    rules = LivenessRules(mode="planarity")
    from appliance.liveness.signals import RIGID

    frames = [project(face3d, a)[RIGID] for a in (0, 2, 4, 12, 20)]
    eyes = float(np.linalg.norm(face3d[33, :2] - face3d[263, :2]))
    obs = [Observation(0.1 * k, f.astype(np.float32), eyes, 0.3) for k, f in enumerate(frames)]
    v = judge(obs, rules, ended=False)
    assert v.live is True
    assert v.signals["planarity"] >= rules.planarity_min
    fig = v.figures(rules)
    assert fig["signals"]["planarity"]["threshold"] == rules.planarity_min
    assert fig["live"] is True and fig["mode"] == "planarity"
