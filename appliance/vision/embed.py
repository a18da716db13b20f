"""Face embedding: aligned crops -> L2-normalised vectors.

Each embedder is described by an `EmbedderSpec` read from `models/manifest.json`, so the
normalisation, crop geometry and output name live next to the model they belong to and
the code never guesses them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from appliance.vision.align import align, template
from appliance.vision.detect import Detection
from appliance.vision.runtime import TfliteModel, pixel_lut
from appliance.vision.similarity import l2_normalize


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    version: str  # name plus model hash; templates of another version are never compared
    size: int
    output: str
    dim: int
    mean: float = 127.5
    std: float = 128.0
    standardize: bool = False  # per-image (x - mean) / std instead of the fixed mean/std
    zoom: float = 1.0
    shift_y: float = 0.0

    @classmethod
    def from_manifest(cls, name: str, entry: dict[str, Any]) -> EmbedderSpec:
        inp, out, crop = entry["input"], entry["output"], entry["alignment"]
        norm = inp["normalisation"]
        return cls(
            name=name,
            version=f"{name}-{entry['sha256'][:12]}",
            size=int(inp["size"]),
            output=str(out["name"]),
            dim=int(out["dim"]),
            mean=float(norm.get("mean", 0.0)),
            std=float(norm.get("std", 1.0)),
            standardize=norm.get("kind") == "per_image_standardisation",
            zoom=float(crop["zoom"]),
            shift_y=float(crop["shift_y"]),
        )


def normalise(crops: np.ndarray, spec: EmbedderSpec) -> np.ndarray:
    """(N, S, S, 3) uint8 crops -> the float input the embedder was trained on."""
    x = crops.astype(np.float32)
    if spec.standardize:
        axes = (1, 2, 3)
        mean = x.mean(axis=axes, keepdims=True)
        floor = np.float32(1.0 / np.sqrt(x[0].size))  # guards a flat (constant) crop
        std = np.maximum(x.std(axis=axes, keepdims=True), floor)
        return ((x - mean) / std).astype(np.float32)
    return ((x - spec.mean) / spec.std).astype(np.float32)


class Embedder:
    """Aligns faces and embeds them in one batch per frame."""

    def __init__(self, model: TfliteModel, spec: EmbedderSpec, flip: bool = False) -> None:
        if model.input_shape[1:] != (spec.size, spec.size, 3):
            raise ValueError(f"{spec.name}: input {model.input_shape} != {spec.size}x{spec.size}")
        model.require_output(spec.output, (spec.dim,))
        self.model = model
        self.spec = spec
        self.flip = flip  # also embed the mirrored face and add: steadier, twice the cost
        self.template = template(spec.size, spec.zoom, spec.shift_y)
        self._lut = (
            None
            if spec.standardize
            else pixel_lut(model.input_quant, model.input_dtype, spec.mean, spec.std)
        )

    def align(self, frame: np.ndarray, det: Detection) -> np.ndarray:
        return align(frame, det.keypoints, self.template, self.spec.size)

    def _prepare(self, crops: np.ndarray) -> np.ndarray:
        if self._lut is not None:
            return cv2.LUT(crops.reshape(-1, self.spec.size * 3), self._lut).reshape(crops.shape)
        x = normalise(crops, self.spec)
        q = self.model.input_quant
        if not q.is_int8:
            return x
        info = np.iinfo(self.model.input_dtype)
        return np.clip(np.round(x / q.scale + q.zero_point), info.min, info.max).astype(
            self.model.input_dtype
        )

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB aligned crops -> (N, dim) float32, unit length."""
        if crops.shape[0] == 0:
            return np.zeros((0, self.spec.dim), np.float32)
        batch = crops
        if self.flip:
            batch = np.concatenate([crops, crops[:, :, ::-1]], axis=0)
        out = self.model.run(self._prepare(np.ascontiguousarray(batch)))[self.spec.output]
        if self.flip:
            n = crops.shape[0]
            out = l2_normalize(out[:n]) + l2_normalize(out[n:])
        return l2_normalize(out)


class FusedEmbedder:
    """Several embedders' unit vectors side by side, each scaled by 1/sqrt(n).

    The cosine of two fused vectors is then exactly the mean of the members' cosines, so
    the matcher, gallery, thresholds and export format work unchanged on score fusion.
    On LFW open-set identification fusing FaceNet with MobileFaceNet accepted more
    enrolled people at the same stranger rate than either alone (README, Accuracy).

    Faces are aligned once, at the first member's size; the others get that crop
    resized bilinearly (integer arithmetic, so aarch64 computes the same pixels).

    `parallel`: the members run side by side, the first on the calling thread and each
    other on a worker of its own (an invoke releases the GIL), so the fused embedding
    costs the slower member's time rather than the sum. Each member has its own
    interpreter, so nothing is shared; the result is bit-identical either way.
    """

    def __init__(
        self, name: str, members: list[Embedder], flip: bool = False, parallel: bool = False
    ) -> None:
        if len(members) < 2 or any(m.flip for m in members):
            raise ValueError("fusion needs two or more members, each without its own flip")
        self.members = members
        self._pool = (
            ThreadPoolExecutor(len(members) - 1, thread_name_prefix="embed-member")
            if parallel
            else None
        )
        first = members[0].spec
        self.spec = EmbedderSpec(
            name=name,
            version=fused_version(name, [m.spec.version for m in members]),
            size=first.size,
            output="+".join(m.spec.output for m in members),
            dim=sum(m.spec.dim for m in members),
            zoom=first.zoom,
            shift_y=first.shift_y,
        )
        self.flip = flip
        self.template = members[0].template
        self._weight = np.float32(1.0 / np.sqrt(len(members)))

    def align(self, frame: np.ndarray, det: Detection) -> np.ndarray:
        return self.members[0].align(frame, det)

    def member_crops(self, crops: np.ndarray) -> list[np.ndarray]:
        """The crops each member takes: as aligned, or resized to its input size."""
        return [
            crops
            if m.spec.size == self.spec.size
            else np.stack(
                [
                    cv2.resize(x, (m.spec.size, m.spec.size), interpolation=cv2.INTER_LINEAR)
                    for x in crops
                ]
            )
            for m in self.members
        ]

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def _fuse(self, crops: np.ndarray) -> np.ndarray:
        inputs = self.member_crops(crops)
        if self._pool is None:
            parts = [m.embed(c) for m, c in zip(self.members, inputs, strict=True)]
        else:
            others = [
                self._pool.submit(m.embed, c)
                for m, c in zip(self.members[1:], inputs[1:], strict=True)
            ]
            parts = [self.members[0].embed(inputs[0])] + [f.result() for f in others]
        return np.concatenate(parts, axis=1) * self._weight

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops at the first member's size -> (N, dim), unit length."""
        if crops.shape[0] == 0:
            return np.zeros((0, self.spec.dim), np.float32)
        out = self._fuse(crops)
        if self.flip:  # as Embedder: the mirrored face's unit vector added, then normalised
            out = l2_normalize(out + self._fuse(np.ascontiguousarray(crops[:, :, ::-1])))
        return out


def fused_version(name: str, member_versions: list[str]) -> str:
    """`fused-<hash>-<hash>`: a change to any member makes old templates stale."""
    return "-".join([name, *(v.rsplit("-", 1)[-1] for v in member_versions)])
