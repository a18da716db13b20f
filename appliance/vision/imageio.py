"""Image decoding, written once, with limits checked before any full decode.

Images arrive from files, the CLI and (later) MQTT commands, i.e. from people who may
be careless or hostile. The byte size and the pixel count from the file header are
checked first, so a 20,000 x 20,000 "decompression bomb" is refused without allocating
1.2 GB; only JPEG and PNG are accepted, since that is what cameras and phones send.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

MAX_BYTES = 16 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 48 MP phone photo is 8000x6000 = 48M; 40M leaves a margin


class ImageError(ValueError):
    """The bytes are not an image this appliance accepts; the message says why."""


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("truncated PNG header")
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk JPEG segments to the first start-of-frame marker."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageError("corrupt JPEG: bad segment marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            raise ImageError("corrupt JPEG: bad segment length")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    raise ImageError("truncated JPEG: no frame header")


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("png", *_png_size(data))
    if data.startswith(b"\xff\xd8"):
        return ("jpeg", *_jpeg_size(data))
    raise ImageError("not a JPEG or PNG image")


def decode_image(
    data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """JPEG/PNG bytes -> H x W x 3 uint8 RGB, or ImageError with a reason a person reads."""
    if len(data) == 0:
        raise ImageError("empty image (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"image is {len(data)} bytes, more than the {max_bytes} allowed")
    fmt, w, h = image_size(data)
    if w == 0 or h == 0:
        raise ImageError(f"{fmt} header says the image is {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(f"image is {w}x{h} = {w * h} pixels, more than the {max_pixels} allowed")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"corrupt or truncated {fmt} image")
    if img.shape[:2] != (h, w):
        raise ImageError(f"{fmt} decoded to {img.shape[1]}x{img.shape[0]}, header said {w}x{h}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(
    path: str | Path, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror}") from exc
    if size > max_bytes:
        raise ImageError(f"{path}: {size} bytes, more than the {max_bytes} allowed")
    try:
        return decode_image(path.read_bytes(), max_bytes, max_pixels)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """An RGB uint8 image as JPEG bytes (thumbnails, snapshots): encoding written once."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError("could not encode the image as JPEG")
    return buf.tobytes()
