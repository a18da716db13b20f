"""The library API: one call takes an image and returns its faces.

detect -> align -> measure quality -> embed (one batch for all faces in the frame).
Stages are plain objects over numpy arrays; nothing here does I/O beyond loading models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance.vision import detectors
from appliance.vision.detect import Detection
from appliance.vision.detectors import AUTO, DEFAULT_DETECTOR, MESH, Detector
from appliance.vision.detectors.tiled import TiledDetector
from appliance.vision.embed import Embedder, EmbedderSpec, FusedEmbedder, fused_version
from appliance.vision.landmarks import FaceMesh, load_face_mesh
from appliance.vision.quality import Quality, measure
from appliance.vision.runtime import ModelError, TfliteModel


def find_models_dir() -> Path:
    """Where the int8 models and their manifest live.

    `$APPLIANCE_MODELS` when set (an installation that keeps them elsewhere); else the
    nearest `models/manifest.json` above this package: the checkout an editable install
    points at, however deep the package's own folders are nested.
    """
    env = os.environ.get("APPLIANCE_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "models" / "manifest.json").is_file():
            return folder / "models"
    raise ModelError(
        f"no models/manifest.json above {here.parent}; set APPLIANCE_MODELS to the models folder"
    )


MODELS_DIR = find_models_dir()
DEFAULT_EMBEDDER = "facenet"


@dataclass
class Face:
    detection: Detection
    quality: Quality
    embedding: np.ndarray | None
    aligned: np.ndarray  # the crop the embedder saw; never logged or stored unless asked

    @property
    def box(self) -> np.ndarray:
        return self.detection.box

    def as_dict(self) -> dict[str, Any]:
        kps = self.detection.keypoints
        return {
            "box": [round(float(v), 1) for v in self.detection.box],
            "keypoints": []
            if kps is None
            else [[round(float(x), 1), round(float(y), 1)] for x, y in kps],
            "quality": self.quality.as_dict(),
        }


def with_border(image: np.ndarray, pad: int | None = None) -> np.ndarray:
    """The image centred on black, `pad` pixels each side (default: a third of its longer
    side, 50 px for a 150x150 LFW crop).

    A face that fills the frame (an ID photo, a tight crop) is larger than any face
    BlazeFace was trained to find; with a border it is a face at a normal size. The one
    padding of the project: the photo routes' retry and the LFW evaluations use it.
    """
    if pad is None:
        pad = max(image.shape[:2]) // 3
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)


def load_manifest(models_dir: Path = MODELS_DIR) -> dict[str, Any]:
    path = models_dir / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"no model manifest at {path}: run tools/quantize.py") from exc


def embedder_version(name: str, models_dir: Path = MODELS_DIR) -> str:
    """The version templates of embedder `name` carry, without loading any model."""
    models = load_manifest(models_dir)["models"]
    entry = models[name]
    if entry["kind"] == "fusion":
        return fused_version(name, [embedder_version(m, models_dir) for m in entry["members"]])
    return f"{name}-{entry['sha256'][:12]}"


class FacePipeline:
    def __init__(
        self, detector: Detector, embedder: Embedder | FusedEmbedder, aligned_by: str = ""
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self._landmarks: FaceMesh | None = None
        self._models_dir = MODELS_DIR
        self._threads = 1
        # What gives the alignment points (detectors.alignment): the detector's own
        # keypoints (its name) or MESH, the landmark stage on the detector's box.
        self.aligned_by = aligned_by or detectors.alignment(DEFAULT_DETECTOR)
        if self.aligned_by != MESH and not detector.gives_landmarks:
            raise ModelError(f"{self.aligned_by!r} alignment needs keypoints the detector lacks")

    @property
    def landmarks(self) -> FaceMesh:
        """The landmark stage (face mesh), loaded on first use: only liveness and mesh
        alignment need it, so a device with neither (the BlazeFace door) never pays for
        it. One instance serves both."""
        if self._landmarks is None:
            self._landmarks = load_face_mesh(self._models_dir, self._threads)
        return self._landmarks

    @classmethod
    def load(
        cls,
        models_dir: Path = MODELS_DIR,
        embedder: str = DEFAULT_EMBEDDER,
        threads: int = 1,
        flip: bool = False,
        score_threshold: float = 0.5,
        float_models_dir: Path | None = None,
        detector: str = DEFAULT_DETECTOR,
        tiles: tuple[int, int] | None = None,
        align: str = AUTO,
    ) -> FacePipeline:
        """Build from the manifest; `float_models_dir` swaps in the float originals.

        `detector` is `detector.model`. `tiles` (cols, rows) also runs it on that grid
        of tiles, for small faces in wide scenes (README, Detectors). `align`: "auto"
        (the detector's own keypoints when it has them, else the face mesh on its box),
        "mesh" (the mesh for any detector: how tools/evaluate.py compares the two), or
        "detector" (its keypoints, refused for a box-only detector).
        """
        aligned_by = detectors.alignment(detector, align)
        manifest = load_manifest(models_dir)
        models = manifest["models"]
        if embedder not in models or models[embedder]["kind"] not in ("embedder", "fusion"):
            names = [k for k, v in models.items() if v["kind"] in ("embedder", "fusion")]
            raise ModelError(f"unknown embedder {embedder!r}; have {names}")

        def path(name: str) -> Path:
            entry = models[name]
            if float_models_dir is not None:
                return float_models_dir / entry["float_file"]
            return models_dir / entry["file"]

        det = detectors.load(
            detector, models_dir, models, threads, score_threshold, float_models_dir
        )
        if tiles is not None:
            det = TiledDetector(det, *tiles)
        emb: Embedder | FusedEmbedder
        if models[embedder]["kind"] == "fusion":
            # `threads` cores for the embedding: with two or more, the members run side by
            # side and share them. On 2 cores here (README, Speed), one thread each side by
            # side took the same 8.3-8.4 ms per face as two threads each one after the
            # other, for 13.1 instead of 16.3 ms of CPU.
            names = models[embedder]["members"]
            each = max(1, threads // len(names))
            members = [
                Embedder(TfliteModel(path(m), each), EmbedderSpec.from_manifest(m, models[m]))
                for m in names
            ]
            emb = FusedEmbedder(embedder, members, flip=flip, parallel=threads >= 2)
        else:
            spec = EmbedderSpec.from_manifest(embedder, models[embedder])
            emb = Embedder(TfliteModel(path(embedder), threads), spec, flip=flip)
        pipe = cls(det, emb, aligned_by)
        pipe._models_dir, pipe._threads = models_dir, threads
        return pipe

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The detector's faces, each with its six alignment points: the detector's own,
        or (mesh alignment) the face mesh's from the box, two mesh batches for all faces.
        A box the mesh says holds no face (a flat wall) is dropped: there is nothing to
        align. The BlazeFace door never runs the mesh here."""
        return self.with_points(image, self.detector.detect(image))

    def with_points(self, image: np.ndarray, dets: list[Detection]) -> list[Detection]:
        """`dets` with alignment points (see `detect`); unchanged objects when the
        detector's own keypoints align, so callers may key on their identity."""
        if self.aligned_by != MESH:
            if any(d.keypoints is None for d in dets):
                raise ModelError(
                    "detections with boxes only, and this pipeline aligns on the detector's "
                    "keypoints: no alignment points"
                )
            return dets
        if not dets:
            return []
        # Two passes, as MediaPipe's tracking does: the first from the detector's box
        # (cut upright), the second from the bounding box of the first's points, turned
        # by its eyes. On dlib's labelled faces the second halves the eye error on SSD's
        # boxes (median 0.043 -> 0.019 of the face's width; README, Detectors).
        first = self.landmarks.landmarks(image, [Detection(d.box, None, d.score) for d in dets])
        seen = [(d, lm) for d, lm in zip(dets, first, strict=True) if lm is not None]
        again = [Detection(lm.bounds(), lm.keypoints(), d.score) for d, lm in seen]
        marks = self.landmarks.landmarks(image, again)
        return [
            Detection(d.box, lm.keypoints(), d.score)
            for (d, _), lm in zip(seen, marks, strict=True)
            if lm is not None
        ]

    def faces(
        self, image: np.ndarray, embed: bool = True, detections: list[Detection] | None = None
    ) -> list[Face]:
        """All faces in an RGB uint8 image, largest first. `detections` from `detect`
        (or `with_points`) are used as they are."""
        if detections is None:
            dets = self.detect(image)
        elif any(d.keypoints is None for d in detections):
            dets = self.with_points(image, detections)
        else:
            dets = detections
        dets = sorted(dets, key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        crops = [self.embedder.align(image, d) for d in dets]
        faces = [Face(d, measure(d, c), None, c) for d, c in zip(dets, crops, strict=True)]
        if embed:
            self._embed(faces)
        return faces

    def _embed(self, faces: list[Face]) -> None:
        """Embed the faces' aligned crops, one batch."""
        if faces:
            vecs = self.embedder.embed(np.stack([f.aligned for f in faces]))
            for f, v in zip(faces, vecs, strict=True):
                f.embedding = v

    def photo_faces(self, image: np.ndarray, embed: bool = True) -> list[Face]:
        """All faces in a photo (enrolment, identify, detect, verify), largest first.

        A photo that is mostly face (an ID photo, a tight crop such as LFW's 150x150) is
        looked at once more with a border (`with_border`): BlazeFace was not trained on
        faces filling the frame, and finds none there or finds it unsure (on 300 LFW
        crops, median detector score 0.59 without a border, 0.81 with one; see
        `tools/evaluate.py enrol-crops`). "Mostly face": no face found, or the largest
        face's box spans `MOSTLY_FACE` of the photo's width or height (the LFW crops'
        span 0.65 or more, the scene photos' 0.55 or less). The look whose largest face
        the detector is surer of is kept; boxes and keypoints are in the photo's own
        pixels either way. Not used on camera frames: a frame without a face is common
        there, and a second look would double its cost.
        """
        faces = self.faces(image, embed=False)
        if not faces or _span(faces[0], image) >= MOSTLY_FACE:
            padded = with_border(image)
            pad = (padded.shape[0] - image.shape[0]) // 2
            bordered = self.faces(padded, embed=False)
            if bordered and (not faces or bordered[0].quality.score > faces[0].quality.score):
                faces = bordered
                for f in faces:
                    d = f.detection
                    f.detection = Detection(d.box - pad, d.keypoints - pad, d.score)
        if embed:
            self._embed(faces)
        return faces


MOSTLY_FACE = 0.6


def _span(face: Face, image: np.ndarray) -> float:
    """How much of the photo's width or height the face's box spans (the larger)."""
    x1, y1, x2, y2 = face.box
    return float(max((x2 - x1) / image.shape[1], (y2 - y1) / image.shape[0]))
