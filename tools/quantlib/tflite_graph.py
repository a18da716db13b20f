"""Re-trace a float TFLite graph as a TensorFlow function.

Why: the source models are old float TFLite files (fp16 weights behind DEQUANTIZE ops,
standalone RELU ops, PReLU spelt as RELU/ABS/SUB/MUL/ADD). Quantising those files as they
are gives int8 graphs that XNNPACK splits into many partitions. Re-tracing them op by op
into a `tf.function` lets the stock TFLiteConverter fold the fp16 constants, fuse every
activation into the op before it, turn the PReLU pattern into one PRELU op, and give the
batch dimension back (MobileFaceNet ships with a fixed batch of 2).

Only the ops these models use are supported; anything else raises, so a new model never
converts silently wrong.

For int8, `as_function` can also take per-channel scales for each PReLU (equalise.py
measures them): the channels are rescaled through the convolutions on either side, which
leaves the float function unchanged but lets one per-tensor int8 scale fit every channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPES = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT64: np.int64,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8,
}


@dataclass(frozen=True)
class ChannelScales:
    """Per-channel gains around one PReLU; both positive, so PReLU commutes with them.

    `into` multiplies the producer's output channels (its weights and bias) and so the
    PReLU's input; `out` multiplies the PReLU's output, and the consumer's weights divide
    it out again.
    """

    into: np.ndarray
    out: np.ndarray


@dataclass
class Op:
    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: Any


class TfliteGraph:
    """A parsed float TFLite subgraph with its constants as numpy arrays."""

    def __init__(self, path: str) -> None:
        model = flatbuffer_utils.read_model(path)
        self.graph = model.subgraphs[0]
        self.buffers = model.buffers
        self.ops: list[Op] = []
        for i, op in enumerate(self.graph.operators):
            code = model.operatorCodes[op.opcodeIndex]
            # Old files keep the opcode in deprecatedBuiltinCode; newer ones in builtinCode.
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            self.ops.append(
                Op(i, _OP_NAMES[builtin], list(op.inputs), list(op.outputs), op.builtinOptions)
            )
        # fp16 weights reach their op through a DEQUANTIZE; remember where each came from.
        self.dequantized = {
            op.outputs[0]: op.inputs[0] for op in self.ops if op.name == "DEQUANTIZE"
        }
        self.inputs = list(self.graph.inputs)
        self.outputs = list(self.graph.outputs)
        self.consumers: dict[int, list[Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                self.consumers.setdefault(t, []).append(op)

    def name(self, t: int) -> str:
        return self.graph.tensors[t].name.decode()

    def shape(self, t: int) -> list[int]:
        return [int(d) for d in self.graph.tensors[t].shape]

    def constant(self, t: int) -> np.ndarray | None:
        t = self.dequantized.get(t, t)
        tensor = self.graph.tensors[t]
        data = self.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            return None
        arr = np.frombuffer(bytes(bytearray(data)), dtype=_TYPES[tensor.type])
        return arr.reshape(self.shape(t)) if tensor.shape is not None else arr


def _tf_name(name: str) -> str:
    """A TF op name from a TFLite tensor name (TF allows fewer characters)."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name) or "t"


def _activation(x: tf.Tensor, code: int) -> tf.Tensor:
    if code == schema.ActivationFunctionType.NONE:
        return x
    if code == schema.ActivationFunctionType.RELU:
        return tf.nn.relu(x)
    if code == schema.ActivationFunctionType.RELU6:
        return tf.nn.relu6(x)
    raise NotImplementedError(f"fused activation {code}")


def _padding(code: int) -> str:
    return "SAME" if code == schema.Padding.SAME else "VALID"


def tf_prelu(x: tf.Tensor, alpha: np.ndarray) -> tf.Tensor:
    """PReLU from ops XNNPACK runs in int8: MUL (with fused RELU) and ADD.

    TFLite's PRELU op, NEG, MINIMUM and a standalone int8 RELU are all refused by
    XNNPACK in int8, which then splits the graph at every PReLU (34 partitions for
    MobileFaceNet). With c = |1 - a| and s = sign(1 - a):
        prelu(x) = a*x + s * relu(c*x)
    (for x >= 0: a*x + (1-a)*x = x; for x < 0: a*x). The RELU fuses into the MUL by c.
    MobileFaceNet's slopes run from -9.4 to 8.9, so the sign matters.
    """
    c = np.abs(1.0 - alpha).astype(np.float32)
    sgn = np.sign(1.0 - alpha).astype(np.float32)
    sgn[sgn == 0] = 1.0
    return x * tf.constant(alpha) + tf.nn.relu(x * tf.constant(c)) * tf.constant(sgn)


def tf_prelu_exact(x: tf.Tensor, alpha: np.ndarray, gain: np.ndarray) -> tf.Tensor:
    """gain * PReLU(x) for int8, as relu(gain*x) + sign(-alpha) * relu(-|alpha|*gain*x).

    Why not `tf_prelu`: its a*x and relu(c*x) cancel for x > 0 (9.4x - 8.4x = x), so both
    carry the error of a range ten times the result's; and TFLite's int8 MUL quantises its
    per-channel constant with one scale, so slopes near 0 round badly. Here one of the two
    terms is always zero, and the per-channel factors are 1x1 depthwise weights, which int8
    quantises per channel (exactly, one weight per channel). The sign MUL multiplies by
    +-1, which int8 holds exactly. Ops: DEPTHWISE_CONV_2D+RELU twice, MUL, ADD; all run in
    XNNPACK's int8 kernels.
    """
    sign = -np.sign(alpha).astype(np.float32)
    sign[sign == 0] = 1.0
    pos = tf.nn.relu(_channel_scale(x, gain))
    neg = tf.nn.relu(_channel_scale(x, -np.abs(alpha) * gain))
    return pos + neg * tf.constant(sign)


def _channel_scale(x: tf.Tensor, k: np.ndarray) -> tf.Tensor:
    """x * k per channel, as a 1x1 depthwise convolution (int8 weights per channel)."""
    w = tf.constant(k.astype(np.float32).reshape(1, 1, -1, 1))
    return tf.nn.depthwise_conv2d(x, w, strides=[1, 1, 1, 1], padding="VALID")


@dataclass(frozen=True)
class PreluSite:
    """A PReLU and, when channel scales can move through them, the ops either side.

    `producer` is a convolution without fused activation whose output only the PReLU
    reads; `consumer` the only op reading the PReLU's output, a convolution taking it as
    its input. Either is None when that does not hold.
    """

    add: int  # index of the ADD op that ends the PReLU pattern
    x: int  # the PReLU's input tensor
    alpha: np.ndarray
    producer: Op | None
    consumer: Op | None


_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


class Retracer:
    """Executes a TfliteGraph with TF ops; call inside a tf.function.

    With `scales` (ADD op index of a PReLU -> ChannelScales), those PReLUs are rescaled as
    ChannelScales says and written with `tf_prelu_exact`; the function's outputs stay the
    same up to float rounding.
    """

    def __init__(self, graph: TfliteGraph, scales: dict[int, ChannelScales] | None = None) -> None:
        self.g = graph
        self.skip: set[int] = set()
        self.prelu: dict[int, tuple[int, np.ndarray]] = {}  # ADD op index -> (x, alpha)
        self._find_prelu()
        self.scales = scales or {}
        self.overrides: dict[int, np.ndarray] = {}  # constant tensor -> rescaled value
        self._rescale()

    def _find_prelu(self) -> None:
        """Spot relu(x) + c*(x - |x|), which is PReLU with alpha = 2c."""
        g = self.g
        producer = {t: op for op in g.ops for t in op.outputs}
        for op in g.ops:
            if op.name != "ADD":
                continue
            a, b = (producer.get(t) for t in op.inputs)
            if a is None or b is None:
                continue
            relu, mul = (a, b) if a.name == "RELU" else (b, a)
            if relu.name != "RELU" or mul.name != "MUL":
                continue
            x = relu.inputs[0]
            const = [g.constant(t) for t in mul.inputs]
            sub = [producer.get(t) for t in mul.inputs]
            c = next((v for v in const if v is not None), None)
            s = next((p for p in sub if p is not None and p.name == "SUB"), None)
            if c is None or s is None or s.inputs[0] != x:
                continue
            ab = producer.get(s.inputs[1])
            if ab is None or ab.name != "ABS" or ab.inputs[0] != x:
                continue
            self.prelu[op.index] = (x, 2.0 * c.astype(np.float32))
            self.skip.update({relu.index, mul.index, s.index, ab.index})

    def sites(self) -> list[PreluSite]:
        """Every PReLU with its producer and consumer where scales can move through them."""
        producers = {t: op for op in self.g.ops for t in op.outputs}
        return [
            PreluSite(
                add,
                x,
                alpha,
                self._producer(x, producers.get(x)),
                self._consumer(self.g.ops[add].outputs[0]),
            )
            for add, (x, alpha) in self.prelu.items()
        ]

    def _producer(self, x: int, p: Op | None) -> Op | None:
        """`p`, if it is a convolution with no fused activation and only the PReLU reads x."""
        if p is None or p.name not in _CONVS or p.options.fusedActivationFunction:
            return None
        if any(c.name not in ("RELU", "ABS", "SUB") for c in self.g.consumers[x]):
            return None
        return p

    def _consumer(self, y: int) -> Op | None:
        """The one convolution reading `y` as its input, if only that reads it."""
        readers = self.g.consumers.get(y, [])
        if len(readers) != 1 or y in self.g.outputs:
            return None
        c = readers[0]
        if c.name not in _CONVS or c.inputs[0] != y:
            return None
        if c.name == "DEPTHWISE_CONV_2D" and c.options.depthMultiplier not in (0, 1):
            return None
        return c

    def _rescale(self) -> None:
        """Fold each PReLU's ChannelScales into the weights on either side."""
        sites = {s.add: s for s in self.sites()}
        for add, sc in self.scales.items():
            site = sites[add]
            if site.producer is None or site.consumer is None:
                raise ValueError(f"PReLU at op {add} cannot be rescaled")
            p, c = site.producer, site.consumer
            into = sc.into.astype(np.float32)
            w = self.const(p.inputs[1])
            # CONV_2D weights are OHWI, DEPTHWISE_CONV_2D 1HWC: output channel first / last.
            self.overrides[p.inputs[1]] = (
                w * into[:, None, None, None] if p.name == "CONV_2D" else w * into
            )
            if len(p.inputs) > 2 and p.inputs[2] >= 0:
                self.overrides[p.inputs[2]] = self.const(p.inputs[2]) * into
            # The consumer's input channel is the last axis for both kinds.
            self.overrides[c.inputs[1]] = self.const(c.inputs[1]) / sc.out.astype(np.float32)

    def const(self, t: int) -> np.ndarray:
        if t in self.overrides:
            return self.overrides[t]
        v = self.g.constant(t)
        if v is None:
            raise ValueError(f"tensor {self.g.name(t)} is not a constant")
        return v.astype(np.float32) if v.dtype == np.float16 else v

    def __call__(self, inputs: list[tf.Tensor], taps: Sequence[int] = ()) -> list[tf.Tensor]:
        """The graph's outputs, then the tensors named in `taps` (for range measurements)."""
        g = self.g
        env: dict[int, Any] = dict(zip(g.inputs, inputs, strict=True))

        def val(t: int) -> Any:
            if t in env:
                return env[t]
            return tf.constant(self.const(t))

        for op in g.ops:
            if op.index in self.skip:
                continue
            o = op.options
            ins = op.inputs
            if op.index in self.prelu:
                x, alpha = self.prelu[op.index]
                sc = self.scales.get(op.index)
                out = (
                    tf_prelu(env[x], alpha)
                    if sc is None
                    else tf_prelu_exact(env[x], alpha, sc.out / sc.into)
                )
            elif op.name == "DEQUANTIZE":
                continue  # folded: consumers read the constant through `g.dequantized`
            elif op.name == "CONV_2D":
                w = self.const(ins[1]).transpose(1, 2, 3, 0)  # OHWI -> HWIO
                y = tf.nn.conv2d(
                    val(ins[0]),
                    w,
                    strides=[1, o.strideH, o.strideW, 1],
                    padding=_padding(o.padding),
                    dilations=[1, o.dilationHFactor, o.dilationWFactor, 1],
                )
                if len(ins) > 2 and ins[2] >= 0:
                    y = tf.nn.bias_add(y, self.const(ins[2]))
                out = _activation(y, o.fusedActivationFunction)
            elif op.name == "DEPTHWISE_CONV_2D":
                w = self.const(ins[1])  # 1,H,W,C*M
                cin = g.shape(ins[0])[-1]
                m = w.shape[-1] // cin
                w = w.reshape(w.shape[1], w.shape[2], cin, m)
                y = tf.nn.depthwise_conv2d(
                    val(ins[0]),
                    w,
                    strides=[1, o.strideH, o.strideW, 1],
                    padding=_padding(o.padding),
                    dilations=[o.dilationHFactor, o.dilationWFactor],
                )
                if len(ins) > 2 and ins[2] >= 0:
                    y = tf.nn.bias_add(y, self.const(ins[2]))
                out = _activation(y, o.fusedActivationFunction)
            elif op.name in ("ADD", "SUB", "MUL"):
                fn = {"ADD": tf.add, "SUB": tf.subtract, "MUL": tf.multiply}[op.name]
                out = _activation(fn(val(ins[0]), val(ins[1])), o.fusedActivationFunction)
            elif op.name == "RELU":
                out = tf.nn.relu(val(ins[0]))
            elif op.name == "PRELU":  # the native op (the face mesh): XNNPACK refuses it
                alpha = self.const(ins[1]).reshape(-1).astype(np.float32)
                out = tf_prelu_exact(val(ins[0]), alpha, np.ones_like(alpha))
            elif op.name == "ABS":
                out = tf.abs(val(ins[0]))
            elif op.name == "PAD":
                out = tf.pad(val(ins[0]), self.const(ins[1]))
            elif op.name == "MAX_POOL_2D":
                out = tf.nn.max_pool2d(
                    val(ins[0]),
                    ksize=[o.filterHeight, o.filterWidth],
                    strides=[o.strideH, o.strideW],
                    padding=_padding(o.padding),
                )
                out = _activation(out, o.fusedActivationFunction)
            elif op.name == "RESIZE_BILINEAR":
                size = self.const(ins[1])
                out = tf.raw_ops.ResizeBilinear(
                    images=val(ins[0]),
                    size=size,
                    align_corners=bool(o.alignCorners),
                    half_pixel_centers=bool(o.halfPixelCenters),
                )
            elif op.name == "RESHAPE":
                shape = g.shape(op.outputs[0])
                out = tf.reshape(val(ins[0]), [-1, *shape[1:]])  # batch stays free
            else:
                raise NotImplementedError(f"op {op.name} ({g.name(op.outputs[0])})")
            env[op.outputs[0]] = tf.identity(out, name=_tf_name(g.name(op.outputs[0])))
        return [env[t] for t in [*g.outputs, *taps]]


def as_function(
    path: str, scales: dict[int, ChannelScales] | None = None
) -> tuple[tf.types.experimental.ConcreteFunction, list[str]]:
    """A concrete function with a free batch dimension; returns it and the output names."""
    graph = TfliteGraph(path)
    retracer = Retracer(graph, scales)
    (inp,) = graph.inputs
    spec = tf.TensorSpec([None, *graph.shape(inp)[1:]], tf.float32, name="input")
    names = [graph.name(t) for t in graph.outputs]

    @tf.function(input_signature=[spec], autograph=False)
    def fn(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(names, retracer([x]), strict=True))

    return fn.get_concrete_function(), names
