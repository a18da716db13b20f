"""Image decoding, written once, with limits checked before any full decode.

Images arrive from files, the CLI and MQTT commands (later HTTP), i.e. from people who
may be careless or hostile. The byte size and the pixel count from the file header are
checked first, so a 20,000 x 20,000 "decompression bomb" is refused without allocating
1.2 GB. The formats are the ones phones, messengers, scanners and face data sets save
(JPEG, PNG, WebP, BMP, TIFF, PGM/PPM, the first frame of a GIF); each has its header
read here, and OpenCV (opencv-python-headless 4.12 decodes all of them) decodes the
pixels only after the header passed. Grey, 16-bit and transparent images come out as
8-bit 3-channel RGB, which is what the pipeline takes. HEIC/AVIF are refused with how
to convert them: OpenCV cannot decode HEIC.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

MAX_BYTES = 16 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 48 MP phone photo is 8000x6000 = 48M; 40M leaves a margin

ACCEPTED = "JPEG, PNG, WebP, BMP, TIFF, PGM/PPM or GIF"
# File names `enroll --from-dir` takes as photos (the content decides the format).
EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".webp",
    ".bmp",
    ".dib",
    ".tif",
    ".tiff",
    ".pgm",
    ".ppm",
    ".pnm",
    ".pbm",
    ".gif",
)
PNM_HEADER_MAX = 4096  # magic, width, height and comments; a longer header is not a photo


class ImageError(ValueError):
    """The bytes are not an image this appliance accepts; the message says why.

    `reason` is the why alone and `source` what it was about (a path, "photo a.jpg",
    "image 2"), so a caller that knows a better name can say it without nesting prefixes.
    """

    def __init__(self, reason: str, source: str | None = None) -> None:
        super().__init__(f"{source}: {reason}" if source else reason)
        self.reason = reason
        self.source = source


def _u16(data: bytes, at: int, order: str = "<") -> int:
    return int(struct.unpack_from(order + "H", data, at)[0])


def _u32(data: bytes, at: int, order: str = "<") -> int:
    return int(struct.unpack_from(order + "I", data, at)[0])


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


def _webp_size(data: bytes) -> tuple[int, int]:
    """RIFF/WEBP: the first chunk is VP8 (lossy), VP8L (lossless) or VP8X (extended)."""
    if len(data) < 30:
        raise ImageError("truncated WebP header")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageError("corrupt WebP: bad VP8 start code")
        return _u16(data, 26) & 0x3FFF, _u16(data, 28) & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ImageError("corrupt WebP: bad VP8L signature")
        bits = _u32(data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    raise ImageError(f"corrupt WebP: unknown first chunk {chunk!r}")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise ImageError("truncated BMP header")
    if _u32(data, 14) == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return _u16(data, 18), _u16(data, 20)
    w, h = struct.unpack_from("<ii", data, 18)
    return abs(w), abs(h)  # a negative height is a top-down bitmap


def _tiff_size(data: bytes) -> tuple[int, int]:
    """ImageWidth (256) and ImageLength (257) of the first IFD, the page OpenCV decodes."""
    order = "<" if data[:2] == b"II" else ">"
    if _u16(data, 2, order) == 43:
        raise ImageError(f"BigTIFF is not accepted; send {ACCEPTED}")
    first = _u32(data, 4, order)
    if first + 2 > len(data):
        raise ImageError("truncated TIFF: no image directory")
    count = _u16(data, first, order)
    if first + 2 + 12 * count > len(data):
        raise ImageError("truncated TIFF: image directory cut short")
    dims: dict[int, int] = {}
    for k in range(count):
        at = first + 2 + 12 * k
        tag, kind = _u16(data, at, order), _u16(data, at + 2, order)
        if tag in (256, 257):
            dims[tag] = _u16(data, at + 8, order) if kind == 3 else _u32(data, at + 8, order)
    if 256 not in dims or 257 not in dims:
        raise ImageError("corrupt TIFF: no image width or height")
    return dims[256], dims[257]


def _pnm_size(data: bytes) -> tuple[int, int]:
    """P1-P6 (PBM/PGM/PPM): ASCII magic, width and height, with # comments allowed."""
    head = re.sub(rb"#[^\n\r]*", b" ", data[2:PNM_HEADER_MAX])
    tokens = head.split(maxsplit=2)
    if len(tokens) < 3 or not tokens[0].isdigit() or not tokens[1].isdigit():
        raise ImageError("truncated or corrupt PGM/PPM header")
    return int(tokens[0]), int(tokens[1])


def _gif_size(data: bytes) -> tuple[int, int]:
    """The logical screen, which is the size of the first frame OpenCV decodes."""
    if len(data) < 10:
        raise ImageError("truncated GIF header")
    return _u16(data, 6), _u16(data, 8)


_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_FORMATS: tuple[tuple[str, Callable[[bytes], bool], Callable[[bytes], tuple[int, int]]], ...] = (
    ("PNG", lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"), _png_size),
    ("JPEG", lambda d: d.startswith(b"\xff\xd8"), _jpeg_size),
    ("WebP", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp_size),
    ("BMP", lambda d: d.startswith(b"BM"), _bmp_size),
    ("TIFF", lambda d: d[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff_size),
    ("PGM/PPM", lambda d: len(d) > 2 and d[0:1] == b"P" and d[1:2] in b"123456", _pnm_size),
    ("GIF", lambda d: d[:6] in (b"GIF87a", b"GIF89a"), _gif_size),
)


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; ImageError for any other format."""
    for fmt, matches, size in _FORMATS:
        if matches(data):
            try:
                return (fmt, *size(data))
            except struct.error as exc:
                raise ImageError(f"truncated {fmt} header") from exc
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            raise ImageError(
                "HEIC/HEIF photos are not read here: convert it to JPEG first "
                f"(e.g. `heif-convert photo.heic photo.jpg`); accepted: {ACCEPTED}"
            )
        if brand in (b"avif", b"avis"):
            raise ImageError(
                f"AVIF photos are not read here: convert it to JPEG; accepted: {ACCEPTED}"
            )
    raise ImageError(f"not an image this appliance reads; accepted: {ACCEPTED}")


def decode_image(
    data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Image bytes -> H x W x 3 uint8 RGB, or ImageError with a reason a person reads.

    The one decoder of every route. A JPEG's EXIF orientation is applied (a phone's
    portrait photo comes out upright), so its sides may be the header's swapped.
    """
    if len(data) == 0:
        raise ImageError("empty image (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"image is {len(data)} bytes, more than the {max_bytes} allowed")
    fmt, w, h = image_size(data)
    if w == 0 or h == 0:
        raise ImageError(f"{fmt} header says the image is {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(f"image is {w}x{h} = {w * h} pixels, more than the {max_pixels} allowed")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"corrupt {fmt} image ({exc.err or 'decoder error'})") from exc
    if img is None:
        raise ImageError(f"corrupt or truncated {fmt} image")
    if img.shape[:2] not in ((h, w), (w, h)):
        raise ImageError(f"{fmt} decoded to {img.shape[1]}x{img.shape[0]}, header said {w}x{h}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(
    path: str | Path, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """A file through `decode_image`; the size is checked before the file is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(f"{size} bytes, more than the {max_bytes} allowed", str(path))
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(exc.strerror or str(exc), str(path)) from exc
    try:
        return decode_image(data, max_bytes, max_pixels)
    except ImageError as exc:
        raise ImageError(exc.reason, str(path)) from exc


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """An RGB uint8 image as JPEG bytes (thumbnails, snapshots): encoding written once."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError("could not encode the image as JPEG")
    return buf.tobytes()
