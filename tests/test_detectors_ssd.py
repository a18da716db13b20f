"""SSD-MobileNet decode on constructed inputs with known answers, and the rebuilt network
against the NumPy reference forward pass of face-api's weights."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from appliance.vision.detect import iou, letterbox, normalise
from appliance.vision.detectors import ssd_mobilenet as ssd
from appliance.vision.imageio import read_image
from appliance.vision.pipeline import MODELS_DIR, load_manifest
from appliance.vision.runtime import TfliteModel
from tools.quantlib.ssd_mobilenet import forward_numpy, load_weights

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(
    os.environ.get("APPLIANCE_QUANTIZE_CACHE", Path.home() / ".cache" / "appliance-quantize")
)
PACKAGE = CACHE / "extracted" / "@vladmandic" / "face-api" / "package"
WEIGHTS = PACKAGE / "model" / "ssd_mobilenetv1_model-weights_manifest.json"


def test_feature_maps_follow_same_padding_strides():
    assert ssd.feature_maps(512) == [32, 16, 8, 4, 2, 1]
    assert ssd.feature_maps(320) == [20, 10, 5, 3, 2, 1]
    assert ssd.num_anchors(512) == 32 * 32 * 3 + (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1) * 6
    assert ssd.anchors(320).shape == (ssd.num_anchors(320), 4)


def test_anchors_at_512_are_the_tf_od_api_grid():
    a = ssd.anchors(512)
    # First cell of the 32x32 map: centre 0.5/32, a 0.1 square, then 0.2 at ratios 2, 1/2.
    c = 0.5 / 32
    h, w = 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)
    assert np.allclose(a[0], [c - 0.05, c - 0.05, c + 0.05, c + 0.05], atol=1e-6)
    assert np.allclose(a[1], [c - h / 2, c - w / 2, c + h / 2, c + w / 2], atol=1e-6)
    # The single 1x1 cell: scale 0.95, then sqrt(0.95 * 1.0) at ratio 1.
    last = a[-6:]
    assert np.allclose(last[0], [0.025, 0.025, 0.975, 0.975], atol=1e-6)
    half = math.sqrt(0.95) / 2
    assert np.allclose(last[1], [0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half], atol=1e-6)


def test_anchors_keep_their_pixel_size_at_other_input_sizes():
    a512, a320 = ssd.anchors(512), ssd.anchors(320)
    # The finest map's first box: 0.1 of 512 = 51.2 px, at 320 still 51.2 px.
    assert np.isclose((a512[0, 2] - a512[0, 0]) * 512, 51.2, atol=1e-3)
    assert np.isclose((a320[0, 2] - a320[0, 0]) * 320, 51.2, atol=1e-3)
    # ... centred on its 16-px stride: cell 1 of the 20x20 map is at 24 px.
    cy = (a320[3, 0] + a320[3, 2]) / 2
    cx = (a320[3, 1] + a320[3, 3]) / 2
    assert np.isclose(cy * 320, 8.0, atol=1e-3) and np.isclose(cx * 320, 24.0, atol=1e-3)


def test_decode_zero_encoding_is_the_anchor_and_offsets_scale_by_its_size():
    anchors = np.array([[0.2, 0.1, 0.4, 0.5], [0.0, 0.0, 1.0, 1.0]], np.float32)  # y1x1y2x2
    enc = np.zeros((2, 4), np.float32)
    enc[1] = [10.0, -10.0, 5 * math.log(0.5), 5 * math.log(0.25)]  # +1 h, -1 w, h/2, w/4
    logits = np.array([[3.0], [0.0]], np.float32)
    boxes, scores = ssd.decode(enc, logits, anchors, 0.5)
    assert boxes.shape == (2, 4)
    assert np.allclose(boxes[0], [0.1, 0.2, 0.5, 0.4], atol=1e-6)  # x1y1x2y2 of anchor 0
    # centre (0.5, 0.5) -> y 1.5, x -0.5; size 1 -> h 0.5, w 0.25
    assert np.allclose(boxes[1], [-0.625, 1.25, -0.375, 1.75], atol=1e-6)
    assert np.allclose(scores, [1 / (1 + math.exp(-3)), 0.5])


def test_decode_drops_anchors_below_threshold():
    anchors = ssd.anchors(320)
    logits = np.full((len(anchors), 1), -8.0, np.float32)
    logits[123] = 2.0
    boxes, _ = ssd.decode(np.zeros((len(anchors), 4)), logits, anchors, 0.5)
    assert len(boxes) == 1
    a = anchors[123]
    assert np.allclose(boxes[0], [a[1], a[0], a[3], a[2]], atol=1e-6)


def test_hard_nms_keeps_the_best_of_each_cluster_in_score_order():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.5], [21, 20, 31, 30]],
        np.float32,
    )
    scores = np.array([0.8, 0.9, 0.7, 0.6, 0.95])
    assert ssd.nms(boxes, scores, 0.5, 100) == [4, 1]
    assert ssd.nms(boxes, scores, 0.5, 1) == [4]
    # IoU of boxes 0 and 1 is 9/11 = 0.82: a looser threshold keeps both.
    assert ssd.nms(boxes, scores, 0.9, 100) == [4, 1, 0, 2]


@pytest.fixture(scope="module")
def weights():
    if not WEIGHTS.is_file():
        pytest.skip(
            f"face-api weights not fetched at {WEIGHTS}: "
            "run tools/quantize.py --models ssd_mobilenet"
        )
    return load_weights(WEIGHTS)


def test_regenerated_anchors_are_face_apis_stored_ones(weights):
    stored = weights["Output/extra_dim"][0]
    assert np.abs(stored - ssd.anchors(512)).max() < 1e-4


def test_committed_int8_model_finds_what_the_reference_float_net_finds(weights, shared):
    """The NumPy forward pass of the original weights is the reference; the committed
    int8 model must find the same faces on real photos, with boxes that overlap."""
    entry = load_manifest()["models"]["ssd_mobilenet"]
    det = ssd.SsdMobilenetDetector(TfliteModel(MODELS_DIR / entry["file"]))
    for name in ("2008_002470.jpg", "2008_007676.jpg", "2007_007763.jpg"):
        img = read_image(shared / "detection" / name)
        _, lb = det.prepare(img)
        enc, logit = forward_numpy(weights, normalise(letterbox(img, det.input_size)[0])[None])
        ref = det.postprocess(enc[0], logit[0], lb, img.shape)
        got = det.detect(img)
        assert len(ref) >= 2
        assert abs(len(got) - len(ref)) <= 1, name
        matched = [iou(r.box, np.stack([g.box for g in got])).max() for r in ref]
        assert np.median(matched) > 0.85, (name, matched)


def test_float_rebuild_equals_the_numpy_reference(weights, shared):
    """The TF rebuild (float TFLite, from tools/quantize.py) against the NumPy forward
    pass of the same weights: the raw outputs agree to float rounding."""
    entry = load_manifest()["models"]["ssd_mobilenet"]
    path = ROOT / "build" / "float-models" / entry["float_file"]
    if not path.is_file():
        pytest.skip(f"no float rebuild at {path}: run tools/quantize.py --models ssd_mobilenet")
    model = TfliteModel(path)
    img = read_image(shared / "detection" / "2008_002470.jpg")
    x = normalise(letterbox(img, model.input_shape[1])[0])[None]
    out = model.run(x)
    enc, logit = forward_numpy(weights, x)
    assert np.abs(out[ssd.BOXES_OUTPUT] - enc).max() < 1e-3
    assert np.abs(out[ssd.SCORES_OUTPUT] - logit).max() < 1e-3


def test_reference_forward_pass_and_decode_equal_face_apis_own_code(weights, shared):
    """face-api's SsdMobilenetv1 (tfjs CPU backend, run by Node.js) on a real photo: our
    NumPy forward pass, regenerated anchors and decode give every anchor's box and score."""
    import shutil

    from tools.quantlib.ssd_mobilenet import face_api_reference

    if shutil.which("node") is None:
        pytest.skip("node is not installed: face-api's own code cannot run")
    img = letterbox(read_image(shared / "detection" / "2008_002470.jpg"), 512)[0]
    ref = face_api_reference(PACKAGE, img)
    enc, logit = forward_numpy(weights, normalise(img)[None])
    boxes, scores = ssd.decode(enc[0], logit[0], ssd.anchors(512), 0.0)
    assert ref["anchors"] == len(boxes) == 5118
    assert np.abs(scores - ref["scores"]).max() < 1e-4
    assert np.abs(boxes[:, [1, 0, 3, 2]] - ref["boxes"]).max() < 1e-3
    assert (ref["scores"] > 0.5).sum() >= 5  # the photo's faces are in the comparison
