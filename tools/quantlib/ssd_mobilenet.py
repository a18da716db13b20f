"""SSD-MobileNetV1 face detector rebuilt from face-api's tfjs weights.

`@vladmandic/face-api` ships `model/ssd_mobilenetv1_model.bin` and its weights manifest:
raw tensors (uint8-quantised, `q * scale + min`) named as in the TF object-detection
graph they were exported from, with no graph. No converter reads that, so the network is
written out here twice from face-api's own forward pass (src/ssdMobilenetv1/*.ts):

- `forward_numpy`: a plain NumPy forward pass, the reference the rebuild is checked
  against (the same arithmetic as face-api's tfjs ops, written independently of TF);
- `tf_function`: the same network in TF ops at any square input size, which the TFLite
  converter turns into the float and int8 models.

MobileNetV1 (conv 3x3/2 then 13 depthwise-separable blocks, ReLU6, batch norm folded
into the pointwise biases, depthwise batch norm explicit) feeds six box predictors: block
11's output, block 13's output, and four extra stride-2 layers. Each predictor gives per
anchor 4 box encodings (ty, tx, th, tw) and 3 class logits, of which face-api uses the
second (the face class). The outputs kept are the raw encodings and the face logit; the
anchors and the box decode live in appliance/vision/detectors/ssd_mobilenet.py so that
the input size can change with anchors regenerated for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

BN_EPSILON = 0.0010000000474974513  # face-api mobileNetV1.ts
STRIDE2_BLOCKS = {2, 4, 6, 12}  # depthwise blocks with stride 2 (getStridesForLayerIdx)
ANCHORS_PER_CELL = (3, 6, 6, 6, 6, 6)


def load_weights(manifest: Path) -> dict[str, np.ndarray]:
    """All tensors of a tfjs weights manifest, dequantised to float32 as tfjs does."""
    groups = json.loads(manifest.read_text())
    out: dict[str, np.ndarray] = {}
    for group in groups:
        blob = b"".join((manifest.parent / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = tuple(w["shape"])
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                if q["dtype"] != "uint8":
                    raise ValueError(f"{w['name']}: unsupported quantisation {q['dtype']}")
                raw = np.frombuffer(blob, np.uint8, n, off).astype(np.float32)
                off += n
                val = raw * np.float32(q["scale"]) + np.float32(q["min"])
                if w["dtype"] == "int32":
                    val = np.round(val)
            else:
                dt = np.float32 if w["dtype"] == "float32" else np.int32
                val = np.frombuffer(blob, dt, n, off).astype(np.float32)
                off += 4 * n
            out[w["name"]] = val.reshape(shape).astype(np.float32)
        if off != len(blob):
            raise ValueError(f"{manifest.name}: {len(blob) - off} bytes left unread")
    return out


# --- the NumPy reference -------------------------------------------------------------


def _same_pad(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """TF's 'SAME' padding for an NHWC tensor (the extra pixel goes bottom/right)."""
    h, w = x.shape[1:3]

    def amount(n: int) -> tuple[int, int]:
        out = -(-n // stride)
        total = max((out - 1) * stride + k - n, 0)
        return total // 2, total - total // 2

    return np.pad(x, ((0, 0), amount(h), amount(w), (0, 0)))


def _conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Dense conv, SAME padding; w is (kh, kw, cin, cout)."""
    k = w.shape[0]
    xp = _same_pad(x, k, stride)
    n, h, wd, _ = x.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    out = np.zeros((n, oh, ow, w.shape[3]), np.float64)
    for i in range(k):
        for j in range(k):
            patch = xp[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]
            out += patch.astype(np.float64) @ w[i, j].astype(np.float64)
    return out.astype(np.float32)


def _depthwise(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Depthwise conv, SAME padding; w is (kh, kw, c, 1)."""
    k = w.shape[0]
    xp = _same_pad(x, k, stride)
    n, h, wd, c = x.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    out = np.zeros((n, oh, ow, c), np.float64)
    for i in range(k):
        for j in range(k):
            patch = xp[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]
            out += patch * w[i, j, :, 0].astype(np.float64)
    return out.astype(np.float32)


def _relu6(x: Any, xp: Any = np) -> Any:
    return xp.clip(x, 0, 6) if xp is np else xp.nn.relu6(x)


def forward_numpy(weights: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) input in [-1, 1] -> box encodings (N, A, 4) and face logits (N, A, 1)."""

    def pointwise(t: np.ndarray, prefix: str, stride: int) -> np.ndarray:
        y = _conv(t, weights[f"{prefix}/weights"], stride)
        return np.clip(y + weights[f"{prefix}/convolution_bn_offset"], 0, 6)

    out = pointwise(x, "MobilenetV1/Conv2d_0_pointwise", 2)
    conv11 = out
    for i in range(1, 14):
        p = f"MobilenetV1/Conv2d_{i}_depthwise"
        y = _depthwise(out, weights[f"{p}/depthwise_weights"], 2 if i in STRIDE2_BLOCKS else 1)
        g, b = weights[f"{p}/BatchNorm/gamma"], weights[f"{p}/BatchNorm/beta"]
        m, v = weights[f"{p}/BatchNorm/moving_mean"], weights[f"{p}/BatchNorm/moving_variance"]
        y = np.clip((y - m) / np.sqrt(v + BN_EPSILON) * g + b, 0, 6)
        out = pointwise(y, f"MobilenetV1/Conv2d_{i}_pointwise", 1)
        if i == 11:
            conv11 = out
    maps = [conv11, out]
    t = out
    for i in range(8):
        t = pointwise(t, f"Prediction/Conv2d_{i}_pointwise", 2 if i % 2 else 1)
        if i % 2:
            maps.append(t)
    boxes, logits = [], []
    for i, fm in enumerate(maps):
        p = f"Prediction/BoxPredictor_{i}"
        enc = _conv(fm, weights[f"{p}/BoxEncodingPredictor/weights"], 1)
        enc = enc + weights[f"{p}/BoxEncodingPredictor/biases"]
        cls = _conv(fm, weights[f"{p}/ClassPredictor/weights"], 1)
        cls = cls + weights[f"{p}/ClassPredictor/biases"]
        boxes.append(enc.reshape(len(x), -1, 4))
        logits.append(cls.reshape(len(x), -1, 3)[:, :, 1:2])
    return np.concatenate(boxes, 1), np.concatenate(logits, 1)


# --- the TF rebuild ------------------------------------------------------------------


def tf_function(weights: dict[str, np.ndarray], size: int) -> Any:
    """The same network as a concrete TF function of a (1, size, size, 3) float input.

    Batch norm of the depthwise blocks is folded into a per-channel scale and bias (the
    same function; one multiply-add fewer per pixel, and what TFLite would fold anyway).
    Outputs are named `box_encodings` (1, A, 4) and `face_logits` (1, A, 1).
    """
    import tensorflow as tf

    c = {k: tf.constant(v) for k, v in weights.items()}

    def pointwise(t: Any, prefix: str, stride: int) -> Any:
        y = tf.nn.conv2d(t, c[f"{prefix}/weights"], stride, "SAME")
        return tf.nn.relu6(y + c[f"{prefix}/convolution_bn_offset"])

    folded = {}
    for i in range(1, 14):
        p = f"MobilenetV1/Conv2d_{i}_depthwise"
        g, b = weights[f"{p}/BatchNorm/gamma"], weights[f"{p}/BatchNorm/beta"]
        m, v = weights[f"{p}/BatchNorm/moving_mean"], weights[f"{p}/BatchNorm/moving_variance"]
        scale = (g / np.sqrt(v + BN_EPSILON)).astype(np.float32)
        w = weights[f"{p}/depthwise_weights"] * scale[None, None, :, None]
        folded[i] = (tf.constant(w), tf.constant((b - m * scale).astype(np.float32)))

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")])
    def fn(x: Any) -> dict[str, Any]:
        out = pointwise(x, "MobilenetV1/Conv2d_0_pointwise", 2)
        conv11 = out
        for i in range(1, 14):
            w, b = folded[i]
            stride = 2 if i in STRIDE2_BLOCKS else 1
            y = tf.nn.relu6(tf.nn.depthwise_conv2d(out, w, [1, stride, stride, 1], "SAME") + b)
            out = pointwise(y, f"MobilenetV1/Conv2d_{i}_pointwise", 1)
            if i == 11:
                conv11 = out
        maps = [conv11, out]
        t = out
        for i in range(8):
            t = pointwise(t, f"Prediction/Conv2d_{i}_pointwise", 2 if i % 2 else 1)
            if i % 2:
                maps.append(t)
        boxes, logits = [], []
        for i, fm in enumerate(maps):
            p = f"Prediction/BoxPredictor_{i}"
            enc = tf.nn.conv2d(fm, c[f"{p}/BoxEncodingPredictor/weights"], 1, "SAME")
            enc = enc + c[f"{p}/BoxEncodingPredictor/biases"]
            # Only the face logit is kept: slice the class predictor's weights, not its
            # output, so the int8 model never computes the two unused classes.
            wc = c[f"{p}/ClassPredictor/weights"][:, :, :, 1::3]
            cls = tf.nn.conv2d(fm, wc, 1, "SAME") + c[f"{p}/ClassPredictor/biases"][1::3]
            boxes.append(tf.reshape(enc, [1, -1, 4]))
            logits.append(tf.reshape(cls, [1, -1, 1]))

        # Two concatenations of three: XNNPACK's concatenation takes at most five inputs,
        # and one of six ran outside the delegate (2 partitions instead of 1).
        def concat(parts: list[Any], name: str) -> Any:
            return tf.concat([tf.concat(parts[:3], 1), tf.concat(parts[3:], 1)], 1, name=name)

        return {
            "box_encodings": concat(boxes, "box_encodings"),
            "face_logits": concat(logits, "face_logits"),
        }

    return fn.get_concrete_function()


# --- the original, when Node.js is at hand -------------------------------------------


def face_api_reference(package: Path, image: np.ndarray) -> dict[str, Any] | None:
    """face-api's own forward pass (tfjs CPU backend, face_api_reference.mjs) on one
    TRAINED_SIZE x TRAINED_SIZE uint8 RGB image: decoded boxes (A, 4) as ymin, xmin,
    ymax, xmax and face scores (A,). None when `node` is not installed.

    face-api only runs at 512 (its anchors are stored for it), so this checks the rebuild
    at 512; other sizes differ from it only by the anchors, regenerated and tested apart.
    """
    import shutil
    import subprocess
    import tempfile

    node = shutil.which("node")
    if node is None:
        return None
    size = image.shape[0]
    script = Path(__file__).with_name("face_api_reference.mjs")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "input.u8"
        np.ascontiguousarray(image, np.uint8).tofile(src)
        out = Path(tmp) / "ref"
        run = subprocess.run(
            [node, str(script), str(package), str(src), str(size), str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(run.stdout.strip().splitlines()[-1])
        info["boxes"] = np.fromfile(f"{out}.boxes.f32", np.float32).reshape(-1, 4)
        info["scores"] = np.fromfile(f"{out}.scores.f32", np.float32)
    return info
