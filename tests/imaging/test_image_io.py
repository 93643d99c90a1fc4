"""Plain images of every common layout come back as 8-bit RGB; bad files raise specific errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from papscreen.errors import CorruptImageError, DecompressionBombError
from papscreen.imaging.image_io import image_size, read_rgb, write_rgb


def _gradient(h: int = 12, w: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("suffix", "mode"),
    [
        (".png", "RGB"),
        (".png", "RGBA"),
        (".png", "L"),
        (".png", "P"),
        (".png", "I;16"),
        (".tif", "RGB"),
        (".tif", "CMYK"),
        (".tif", "I;16"),
        (".bmp", "RGB"),
        (".jpg", "RGB"),
        (".jpg", "L"),
        (".jpg", "CMYK"),
    ],
    ids=lambda v: v.strip(".").replace(";", ""),
)
def test_every_layout_reads_as_rgb8(tmp_path: Path, suffix: str, mode: str) -> None:
    rgb = _gradient()
    image = Image.fromarray(rgb)
    if mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
        assert image.mode == "I;16"
    elif mode != "RGB":
        image = image.convert(mode)
    path = tmp_path / f"x{suffix}"
    image.save(path)
    out = read_rgb(path)
    assert out.shape == (12, 16, 3)
    assert out.dtype == np.uint8
    if mode == "I;16":  # 16-bit scaled to 8 bits, not clipped to white
        assert np.array_equal(out[..., 0], rgb[..., 0])


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    path = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert (read_rgb(path) == 255).all()


def test_roundtrip_and_header_size(tmp_path: Path) -> None:
    rgb = _gradient(7, 9)
    write_rgb(tmp_path / "a.png", rgb)
    assert np.array_equal(read_rgb(tmp_path / "a.png"), rgb)
    assert image_size(tmp_path / "a.png") == (9, 7)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("limit", [1_000_000, 250_000_000], ids=["small-limit", "default-limit"])
def test_decompression_bomb_refused_before_decoding(tmp_path: Path, limit: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(100_000, 100_000))
    with pytest.raises(DecompressionBombError, match="10,000,000,000 pixels") as info:
        read_rgb(path, max_pixels=limit)
    assert info.value.path == path
    assert "PAPSCREEN_LIMITS__MAX_IMAGE_PIXELS" in str(info.value)


def _truncated_jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "full.jpg"
    Image.fromarray(_gradient(200, 200)).save(path, quality=90)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    return truncated


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_FILES = {
    "truncated-jpeg": (_truncated_jpeg, "truncated"),
    "zero-bytes": (lambda d: _write(d / "empty.png", b""), "empty"),
    "text-as-jpeg": (lambda d: _write(d / "text.jpg", b"hello, not a JPEG"), "not a readable image"),
    "missing": (lambda d: d / "missing.png", "no such file"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_raise_corrupt_image_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    make, message = BAD_FILES[kind]
    path = make(tmp_path)
    with pytest.raises(CorruptImageError, match=message) as info:
        read_rgb(path)
    assert str(path) in str(info.value)
