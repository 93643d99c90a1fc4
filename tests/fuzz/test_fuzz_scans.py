"""Fuzzing the header probe and the decoders: whatever bytes a file holds, only papscreen's own errors escape.

Inputs are either random bytes under a scan's name, or a small valid scan of each format the intake takes
(PNG 8 and 16 bit, grey, palette, JPEG, BMP, plain, palette and tiled pyramidal TIFF) with bytes overwritten,
cut short, inserted or its header fields rewritten: the damage a failing disk, a half-finished copy or a hostile
file would do. A bug in a third-party decoder that raises its own exception would stop an intake pass if it
escaped; the probe must turn it into a quarantine reason.
"""

from __future__ import annotations

import contextlib
import io
from functools import cache
from pathlib import Path

import numpy as np
import tifffile
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from papscreen.config import LimitSettings
from papscreen.errors import PapscreenError
from papscreen.imaging.image_io import read_rgb
from papscreen.intake.probe import probe_scan

LIMITS = LimitSettings(max_file_bytes=64 * 1024**2, max_image_pixels=4_000_000)
MAGIC_NUMBERS = (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"II+\x00")
SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".svs", ".ndpi")


def _pil(array: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@cache
def seeds() -> dict[str, bytes]:
    """One small valid scan per format and flavour, keyed by the name it is written under."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    grey16 = rng.integers(0, 65535, (40, 40), dtype=np.uint16)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_tiff = io.BytesIO()
    palette.save(palette_tiff, format="TIFF")
    tiled = io.BytesIO()
    with tifffile.TiffWriter(tiled) as tif:
        pyramid = np.repeat(rgb[:32, :32], 4, axis=0).repeat(4, axis=1)  # 128x128, compresses to a few kB
        tif.write(pyramid, tile=(64, 64), photometric="rgb", subifds=1, compression="zlib")
        tif.write(pyramid[::2, ::2], tile=(64, 64), photometric="rgb", subfiletype=1, compression="zlib")
    return {
        "rgb.png": _pil(rgb, "PNG"),
        "grey16.png": _pil(grey16, "PNG"),
        "grey.png": _pil(rgb[..., 0], "PNG"),
        "rgba.png": _pil(np.dstack([rgb, rgb[..., :1]]), "PNG"),
        "field.jpg": _pil(rgb, "JPEG", quality=90),
        "field.bmp": _pil(rgb, "BMP"),
        "plain.tif": _pil(rgb, "TIFF"),
        "lzw.tif": _pil(rgb, "TIFF", compression="tiff_lzw"),
        "palette.tif": palette_tiff.getvalue(),
        "pyramid.tif": tiled.getvalue(),
    }


@st.composite
def damaged_scans(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid seed with overwritten bytes (often in its header), a cut, an insertion, or all three."""
    name = draw(st.sampled_from(sorted(seeds())))
    data = bytearray(seeds()[name])
    for _ in range(draw(st.integers(0, 8))):
        near_header = draw(st.booleans())
        position = draw(st.integers(0, min(len(data) - 1, 64) if near_header else len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        width = draw(st.integers(1, 4))  # a header field (a size, an offset, a count) set to an extreme value
        position = draw(st.integers(0, max(0, min(len(data), 200) - width)))
        data[position : position + width] = draw(st.sampled_from([b"\xff", b"\x00", b"\x7f"])) * width
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(max_size=64))
    return name, bytes(data)


@st.composite
def random_scans(draw: st.DrawFn) -> tuple[str, bytes]:
    """Any bytes under a scan's name, sometimes behind a real format's magic number."""
    magic = draw(st.sampled_from(MAGIC_NUMBERS))
    return "scan" + draw(st.sampled_from(SUFFIXES)), magic + draw(st.binary(max_size=2048))


def _only_our_errors(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    refusal: str | None = None
    try:
        probe_scan(path, LIMITS)
    except PapscreenError as e:  # the only way out besides success: anything else fails the test
        refusal = str(e)
    assert refusal is None or refusal.strip(), "a refused scan is quarantined with a reason a person can read"
    if path.suffix in (".jpg", ".jpeg", ".png", ".bmp"):
        with contextlib.suppress(PapscreenError):
            read_rgb(path, LIMITS.max_image_pixels)


@given(scan=damaged_scans())
def test_a_damaged_scan_is_refused_with_our_error_or_read(tmp_path_factory, scan: tuple[str, bytes]) -> None:
    _only_our_errors(tmp_path_factory.mktemp("scan"), *scan)


@given(scan=random_scans())
def test_random_bytes_under_a_scan_name_are_refused_with_our_error(tmp_path_factory, scan: tuple[str, bytes]) -> None:
    _only_our_errors(tmp_path_factory.mktemp("scan"), *scan)


def test_every_seed_is_a_scan_the_probe_accepts(tmp_path: Path) -> None:
    """The mutations start from files that are good, so what they find is the damage's doing."""
    for name, data in seeds().items():
        (tmp_path / name).write_bytes(data)
        assert probe_scan(tmp_path / name, LIMITS).width > 0, name
