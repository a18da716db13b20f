"""Per-channel range equalisation around PReLUs, measured on calibration faces.

Why: int8 activations have one scale per tensor, but MobileFaceNet's channels differ by
up to two orders of magnitude in range (PReLU slopes run from -9.4 to 8.9, so a channel's
negative side can be nine times its input). The few widest channels set the scale and
the rest keep a handful of int8 levels; the error they carry is amplified by the global
depthwise layer at the end (int8 vs float cosine 0.80 before this).

PReLU is positively homogeneous per channel, PReLU(k*x) = k*PReLU(x) for k > 0, so a
channel can be scaled up in the convolution before the PReLU and down in the one after
it without changing the float function. For each PReLU this picks two gains per channel:
`into` brings each channel of the PReLU input up to that tensor's widest channel, and
`out` does the same for the two halves of the PReLU output (x > 0 and alpha*x for x < 0),
which `tflite_graph.tf_prelu_exact` computes as separate tensors. No tensor's overall
range grows, so no scale gets coarser; only the narrow channels gain levels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorflow as tf
from quantlib.tflite_graph import ChannelScales, PreluSite, Retracer, TfliteGraph

# A channel at less than this fraction of the widest is treated as this narrow, so a
# channel that is (almost) dead on the calibration faces is not scaled up without bound.
FLOOR = 1e-3


def equalising_gain(*ranges: np.ndarray) -> np.ndarray:
    """Per-channel gain that lifts each channel until, in one of the tensors whose
    per-channel `ranges` are given, it reaches that tensor's widest channel; >= 1."""
    rel = [np.maximum(r / max(float(r.max()), 1e-12), FLOOR) for r in ranges]
    return (1.0 / np.max(rel, axis=0)).astype(np.float32)


def site_scales(site: PreluSite, pos: np.ndarray, neg: np.ndarray) -> ChannelScales:
    """Gains for one PReLU from its input's per-channel max (`pos`) and max of -x (`neg`)."""
    into = equalising_gain(np.maximum(pos, neg))
    out = equalising_gain(pos, np.abs(site.alpha) * neg)
    return ChannelScales(into=into, out=out)


def input_extremes(
    graph: TfliteGraph, sites: list[PreluSite], batches: Iterable[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-channel max of x and of -x at each site's PReLU input, over all batches."""
    retracer = Retracer(graph)
    taps = [s.x for s in sites]
    n_out = len(graph.outputs)
    (inp,) = graph.inputs
    spec = tf.TensorSpec([None, *graph.shape(inp)[1:]], tf.float32)

    @tf.function(input_signature=[spec], autograph=False)
    def tapped(x: tf.Tensor) -> list[tf.Tensor]:
        return retracer([x], taps)[n_out:]

    pos = [np.zeros(graph.shape(t)[-1], np.float32) for t in taps]
    neg = [np.zeros(graph.shape(t)[-1], np.float32) for t in taps]
    for batch in batches:
        for i, v in enumerate(tapped(tf.constant(batch, tf.float32))):
            v = v.numpy().reshape(-1, v.shape[-1])
            pos[i] = np.maximum(pos[i], v.max(0))
            neg[i] = np.maximum(neg[i], (-v).max(0))
    return list(zip(pos, neg, strict=True))


def prelu_scales(path: str, batches: Iterable[np.ndarray]) -> dict[int, ChannelScales]:
    """ChannelScales for every PReLU of the float TFLite at `path` that has a convolution
    on both sides, measured on `batches` of model input."""
    graph = TfliteGraph(path)
    sites = [s for s in Retracer(graph).sites() if None not in (s.producer, s.consumer)]
    extremes = input_extremes(graph, sites, batches)
    return {s.add: site_scales(s, pos, neg) for s, (pos, neg) in zip(sites, extremes, strict=True)}


def batched(inputs: Iterable[np.ndarray], size: int = 32) -> Iterable[np.ndarray]:
    """Batches of `size` from an iterable of single-image batches."""
    buf: list[np.ndarray] = []
    for x in inputs:
        buf.append(x)
        if len(buf) == size:
            yield np.concatenate(buf)
            buf = []
    if buf:
        yield np.concatenate(buf)
