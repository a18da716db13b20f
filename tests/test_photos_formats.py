"""Every accepted image format decodes through the one decoder, grey and colour, and a
truncated or oversized file of each is refused before the pixels are decoded.

The files are made here with cv2.imencode from the astronaut photo the repo's assets
already fetch, so these tests need no shared data.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vision import imageio
from appliance.vision.imageio import ImageError, decode_image

# (extension, colour?, lossless?): PGM is grey only, PPM and GIF are written from
# three channels (a grey PPM/GIF is three equal channels).
FORMATS = [
    (".jpg", True, False),
    (".png", True, True),
    (".webp", True, False),
    (".bmp", True, True),
    (".tiff", True, True),
    (".ppm", True, True),
    (".gif", True, False),
    (".jpg", False, False),
    (".png", False, True),
    (".webp", False, False),
    (".bmp", False, True),
    (".tiff", False, True),
    (".pgm", False, True),
    (".gif", False, False),
]
IDS = [f"{ext[1:]}-{'colour' if colour else 'grey'}" for ext, colour, _ in FORMATS]


def _rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def encoded(astronaut: np.ndarray, ext: str, colour: bool) -> tuple[bytes, np.ndarray]:
    """(file bytes, the RGB image they hold) for one format of the astronaut photo."""
    rgb = (
        astronaut
        if colour
        else cv2.cvtColor(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    )
    src = _rgb_to_bgr(rgb) if (colour or ext in (".ppm", ".gif")) else rgb[..., 0]
    ok, buf = cv2.imencode(ext, src)
    assert ok, ext
    return buf.tobytes(), rgb


@pytest.fixture(autouse=True)
def _no_decode_after_a_refused_header(request, monkeypatch):
    """In the refusal tests the decoder must not even start: make it fail the test."""
    if "refused" in request.node.name:

        def boom(*args, **kwargs):
            raise AssertionError("cv2.imdecode ran on an image the header check refuses")

        monkeypatch.setattr(imageio.cv2, "imdecode", boom)


@pytest.mark.parametrize(("ext", "colour", "lossless"), FORMATS, ids=IDS)
def test_each_format_decodes_to_rgb(astronaut, ext, colour, lossless):
    data, want = encoded(astronaut, ext, colour)
    got = decode_image(data)
    assert got.shape == (512, 512, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    if lossless:
        assert diff.max() == 0
    elif ext == ".gif":  # OpenCV writes GIF with a fixed 3-3-2 bit palette, dithered
        assert diff.mean() < 20
        return
    else:  # JPEG and WebP are lossy
        assert diff.mean() < 8
    if not colour:
        assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2])


@pytest.mark.parametrize(("ext", "colour", "lossless"), FORMATS, ids=IDS)
def test_truncated_file_of_each_format_decodes_to_an_error(astronaut, ext, colour, lossless):
    data, _ = encoded(astronaut, ext, colour)
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(("ext", "colour", "lossless"), FORMATS, ids=IDS)
def test_oversized_file_of_each_format_refused_from_its_header(astronaut, ext, colour, lossless):
    data, _ = encoded(astronaut, ext, colour)
    with pytest.raises(ImageError, match=r"512x512 = 262144 pixels, more than the 262143"):
        decode_image(data, max_pixels=512 * 512 - 1)
    with pytest.raises(ImageError, match=rf"{len(data)} bytes, more than the {len(data) - 1}"):
        decode_image(data, max_bytes=len(data) - 1)


def _bomb(fmt: str, w: int, h: int) -> bytes:
    """A header that claims w x h pixels, as a hostile sender would write it."""
    if fmt == "bmp":
        return b"BM" + b"\0" * 12 + struct.pack("<IiiHH", 40, w, -h, 1, 24) + b"\0" * 64
    if fmt == "pgm":
        return f"P5\n# made by hand\n{w} {h}\n255\n".encode() + b"\0" * 64
    if fmt == "gif":
        return b"GIF89a" + struct.pack("<HH", w, h) + b"\0" * 64
    if fmt == "webp":
        vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4
        vp8x += (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x + b"\0" * 64
    if fmt == "tiff":
        entries = [(256, 4, 1, w), (257, 4, 1, h)]
        ifd = struct.pack("<H", len(entries))
        ifd += b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
        return b"II*\x00" + struct.pack("<I", 8) + ifd
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["bmp", "pgm", "gif", "webp", "tiff"])
def test_decompression_bomb_headers_refused(fmt):
    with pytest.raises(ImageError, match="30000x20000 = 600000000 pixels"):
        decode_image(_bomb(fmt, 30000, 20000))


def test_extended_webp_header_read(astronaut):
    """VP8X (the WebP a phone writes with EXIF or transparency) holds the canvas size."""
    data, _ = encoded(astronaut, ".webp", True)
    body = data[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + (511).to_bytes(3, "little") * 2
    extended = b"RIFF" + struct.pack("<I", 4 + len(vp8x) + len(body)) + b"WEBP" + vp8x + body
    assert decode_image(extended).shape == (512, 512, 3)
    with pytest.raises(ImageError, match="512x512"):
        decode_image(extended, max_pixels=1000)


@pytest.mark.parametrize("ext", [".gif", ".webp"])
def test_animation_gives_its_first_frame(ext):
    red, blue = np.zeros((64, 48, 3), np.uint8), np.zeros((64, 48, 3), np.uint8)
    red[..., 2], blue[..., 0] = 255, 255  # BGR
    anim = cv2.Animation()
    anim.frames, anim.durations = [red, blue], [100, 100]
    ok, buf = cv2.imencodeanimation(ext, anim)
    assert ok
    got = decode_image(buf.tobytes())
    assert got.shape == (64, 48, 3)
    assert got[..., 0].min() > 240 and got[..., 2].max() < 10  # red in RGB: frame 1


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_phone_photo_turned_by_exif_comes_out_upright(astronaut):
    """A portrait phone photo is stored sideways with EXIF orientation 6; OpenCV turns
    it, so its sides are the header's swapped, which must not be refused."""
    wide = astronaut[:300]  # 512 wide, 300 high
    jpeg = cv2.imencode(".jpg", _rgb_to_bgr(wide))[1].tobytes()
    out = decode_image(_with_exif_orientation(jpeg, 6))
    assert out.shape == (512, 300, 3)
    assert np.abs(out.astype(int) - np.rot90(wide, -1).astype(int)).mean() < 8


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIC/HEIF photos are not read here: convert"),
        (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1", "AVIF photos are not read here"),
        (b"%PDF-1.7\n", "accepted: JPEG, PNG, WebP, BMP, TIFF, PGM/PPM or GIF"),
        (b"II+\x00\x08\x00\x00\x00", "BigTIFF is not accepted"),
        (b"P5\n# no size\n", "corrupt PGM/PPM header"),
    ],
)
def test_other_formats_refused_saying_what_is_accepted(data, reason):
    with pytest.raises(ImageError, match=reason.replace("(", r"\(")):
        decode_image(data)


def test_read_image_names_the_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_bytes(b"not a photo")
    with pytest.raises(ImageError) as err:
        imageio.read_image(p)
    assert err.value.source == str(p) and str(err.value).startswith(f"{p}: not an image")


_SMALL = np.random.default_rng(0).integers(0, 255, (24, 20, 3), np.uint8)
_SEEDS = [
    cv2.imencode(ext, _SMALL if ext != ".pgm" else _SMALL[..., 0])[1].tobytes()
    for ext in (".jpg", ".png", ".webp", ".bmp", ".tiff", ".ppm", ".pgm", ".gif")
]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    seed=st.sampled_from(_SEEDS),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
)
def test_damaged_headers_give_image_error_or_an_image(seed, cut, flips):
    """Whatever a careless or hostile sender changes in a header, the answer is an
    ImageError or a decoded RGB image within the limits, never another exception."""
    data = bytearray(seed[: max(cut, 1)] if cut < len(seed) else seed)
    for at, value in flips:
        if at < len(data):
            data[at] = value
    try:
        img = decode_image(bytes(data), max_pixels=100_000)
    except ImageError:
        return
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert img.shape[0] * img.shape[1] <= 100_000
