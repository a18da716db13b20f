"""The host's int8 peak, measured through the same TFLite runtime and XNNPACK the device
uses, for the Pi projection's share of peak.

The nominal peak (projection.host_int8_peak: MACs per cycle from the CPU flags times the
reported clock) can be wrong either way: a VM reports its base clock, not the turbo one;
AMX tiles or a second 512-bit pipe are not in the flags table; AMD Zen 4 runs a 512-bit
VPDPBUSD as two 256-bit halves. A model can then seem to reach more than 100 % of a peak
that is too low. So the peak here is measured: one-op int8 models, a 1x1 convolution (a
plain GEMM, the best case of XNNPACK's int8 kernels) and a 3x3 one (the bulk of
FaceNet's MACs), written directly as TFLite flatbuffers with the schema that ships in
ai-edge-litert (no TensorFlow), timed at 1 thread in CPU time like the models are. The
best of them is the peak the models' shares are taken against: a lower bound of the true
peak, and the one that matters, since it is what this runtime's kernels reach.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tools.benchmarks.common import stats

# (name, H, W, Cin, Cout, kernel): sized like FaceNet's large middle layers, weights and
# activations within a core's L2, so they measure the kernels, not the memory.
SHAPES = (
    ("conv1x1_14x14x512_512", 14, 14, 512, 512, 1),
    ("conv3x3_28x28x128_128", 28, 28, 128, 128, 3),
    ("conv3x3_17x17x384_384", 17, 17, 384, 384, 3),
)
IN_SCALE, OUT_SCALE = 0.02, 0.5


def conv_weights(cin: int, cout: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random int8 weights [Cout, k, k, Cin] with per-channel scales, and int32 biases."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, size=(cout, k, k, cin), dtype=np.int8)
    b = rng.integers(-1000, 1000, size=cout, dtype=np.int32)
    return w, b


def w_scales(cout: int) -> np.ndarray:
    return np.linspace(0.001, 0.003, cout, dtype=np.float32)


def int8_conv_model(h: int, w: int, cin: int, cout: int, k: int) -> bytes:
    """A TFLite model of one int8 CONV_2D (SAME padding, stride 1, per-channel weights),
    built with the flatbuffer schema's object API."""
    from ai_edge_litert import schema_py_generated as s
    from flatbuffers import Builder

    weights, bias = conv_weights(cin, cout, k)
    ws = w_scales(cout)

    def quant(scale: list[float], dim: int = 0) -> Any:
        q = s.QuantizationParametersT()
        q.scale = scale
        q.zeroPoint = [0] * len(scale)
        q.quantizedDimension = dim
        return q

    def tensor(name: str, shape: list[int], ttype: int, buf: int, q: Any) -> Any:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer, t.quantization = name, shape, ttype, buf, q
        return t

    def buffer(data: bytes | None) -> Any:
        b = s.BufferT()
        b.data = None if data is None else np.frombuffer(data, np.uint8)
        return b

    tensors = [
        tensor("input", [1, h, w, cin], s.TensorType.INT8, 0, quant([IN_SCALE])),
        tensor("weights", [cout, k, k, cin], s.TensorType.INT8, 1, quant(ws.tolist())),
        tensor(
            "bias", [cout], s.TensorType.INT32, 2, quant((ws * IN_SCALE).astype(float).tolist())
        ),
        tensor("output", [1, h, w, cout], s.TensorType.INT8, 0, quant([OUT_SCALE])),
    ]
    opts = s.Conv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH = s.Padding.SAME, 1, 1
    opts.dilationWFactor = opts.dilationHFactor = 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.Conv2DOptions, opts
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CONV_2D
    code.version = 3  # int8 with per-channel weights
    sub = s.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, [0], [3], [op]
    sub.name = "main"
    model = s.ModelT()
    model.version, model.description = 3, "int8 peak probe (tools/benchmarks/peak.py)"
    model.operatorCodes, model.subgraphs = [code], [sub]
    # Buffer 0 is the empty sentinel the format requires; activations point at it.
    model.buffers = [buffer(None), buffer(weights.tobytes()), buffer(bias.tobytes())]
    b = Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def reference_conv(x: np.ndarray, k: int, cout: int) -> np.ndarray:
    """What the int8 model must compute, in numpy: the same weights, SAME padding,
    requantised to the output scale (for the test that the probe is the op it claims)."""
    w, b = conv_weights(x.shape[-1], cout, k)
    p = k // 2
    xp = np.pad(x[0].astype(np.int64), ((p, p), (p, p), (0, 0)))
    h, wd = x.shape[1], x.shape[2]
    acc = np.zeros((h, wd, cout), np.int64)
    for dy in range(k):
        for dx in range(k):
            acc += xp[dy : dy + h, dx : dx + wd] @ w[:, dy, dx, :].T.astype(np.int64)
    real = (acc + b) * (w_scales(cout) * IN_SCALE).astype(np.float64) / OUT_SCALE
    return np.clip(np.round(real), -128, 127).astype(np.int8)[None]


def measure_peak(repeats: int = 30) -> dict[str, Any]:
    """Achieved int8 GMAC/s per core of each probe at 1 thread (median CPU time); the best
    is `gmacs_per_core`, the peak the projection uses."""
    from appliance.vision.runtime import TfliteModel, runtime_version

    rng = np.random.default_rng(1)
    probes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="peak-") as tmp:
        for name, h, w, cin, cout, k in SHAPES:
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(int8_conv_model(h, w, cin, cout, k))
            model = TfliteModel(path, num_threads=1)
            partitions, whole = model.delegate_partitions()
            x = rng.integers(-128, 128, size=(1, h, w, cin), dtype=np.int8)
            st = stats(lambda m=model, x=x: m.run(x), repeats)
            macs = h * w * cout * k * k * cin
            probes[name] = {
                "macs": macs,
                "cpu_ms": st["cpu_ms"],
                "median_ms": st["median_ms"],
                "gmacs": round(macs / (st["cpu_ms"] * 1e6), 1) if st["cpu_ms"] > 0 else None,
                "xnnpack_whole_graph": bool(whole and partitions == 1),
            }
    best = max((p for p in probes.values() if p["gmacs"]), key=lambda p: p["gmacs"])
    return {
        "gmacs_per_core": best["gmacs"],
        "basis": "measured: best of one-op int8 CONV_2D probes through "
        f"{runtime_version()} + XNNPACK at 1 thread, median CPU time of {repeats} runs "
        "(a lower bound of the true peak: what this runtime's int8 kernels reach)",
        "probes": probes,
    }
