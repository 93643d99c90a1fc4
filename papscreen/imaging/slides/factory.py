"""``open_slide``: pick the reader for a file from its content, after the size checks.

The order matters. Empty, missing and oversized files are refused before anything parses them. A TIFF is
inspected with tifffile: a vendor format OpenSlide knows (SVS, NDPI, ...) or a generic tiled 8-bit RGB TIFF with
its pyramid in separate IFDs goes to OpenSlide; OME-TIFF, SubIFD pyramids, single-level tiled TIFFs and very
large striped ones go to tifffile (which decodes only the tiles a region touches, and reads 16-bit and grey too);
a small striped TIFF is a plain image. Anything else OpenSlide recognises (MRXS) goes to OpenSlide; JPEG, PNG and
BMP are plain images; every other format is refused as unsupported.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import openslide
import tifffile
from PIL import Image, UnidentifiedImageError

from papscreen.errors import CorruptImageError, DecompressionBombError, FileTooLargeError, UnsupportedImageError
from papscreen.imaging.image_io import (
    DECODER_FAILURES,
    DEFAULT_MAX_PIXELS,
    PLAIN_IMAGE_SUFFIXES,
    declared_pixels,
    pillow_pixel_limit,
)
from papscreen.imaging.slides.base import SlideReader
from papscreen.imaging.slides.openslide_reader import OpenSlideReader
from papscreen.imaging.slides.plain import PlainImageReader
from papscreen.imaging.slides.tiff import TiffReader

__all__ = ["SLIDE_SUFFIXES", "open_slide"]

DEFAULT_MAX_FILE_BYTES = 20 * 1024**3
SLIDE_SUFFIXES = frozenset({".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".ome.tif"})
_PLAIN_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF"})
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_slide(
    path: str | Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, max_image_pixels: int = DEFAULT_MAX_PIXELS
) -> SlideReader:
    """Open a field image or a whole-slide scan with the reader its content calls for.

    Args:
        path: the file (for MRXS, the ``.mrxs`` file beside its data folder).
        max_file_bytes: larger files are refused before parsing (``Settings.limits.max_file_bytes``).
        max_image_pixels: largest plain image decoded whole, and largest single TIFF tile or strip
            (``Settings.limits.max_image_pixels``); pyramids are never decoded whole, whatever their size.

    Returns:
        A :class:`SlideReader`; use it as a context manager so the file is closed.

    Raises:
        CorruptImageError: missing, empty, truncated, or not the image its name says.
        FileTooLargeError: over ``max_file_bytes``.
        DecompressionBombError: a plain image over ``max_image_pixels``.
        UnsupportedImageError: a format papscreen does not read (GIF, WebP, PDF, float TIFF, ...).

    Examples:
        >>> import tempfile, numpy as np
        >>> from papscreen.imaging.image_io import write_rgb
        >>> path = Path(tempfile.mkdtemp()) / "field.png"
        >>> write_rgb(path, np.zeros((30, 40, 3), np.uint8))
        >>> with open_slide(path) as slide:
        ...     type(slide).__name__, slide.dimensions, slide.read_region((35, 0), 0, (10, 1))[0, -1].tolist()
        ('PlainImageReader', (40, 30), [255, 255, 255])
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptImageError(path, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise CorruptImageError(path, "file is empty (0 bytes)")
    if size > max_file_bytes:
        raise FileTooLargeError(path, size, max_file_bytes)
    with path.open("rb") as f:
        magic = f.read(4)
    if magic in _TIFF_MAGIC:
        return _open_tiff(path, max_image_pixels)
    vendor = _openslide_vendor(path)
    if vendor is not None:
        return OpenSlideReader(path)
    image_format = _pillow_format(path, max_image_pixels)
    if image_format is None:
        if path.suffix.lower() in PLAIN_IMAGE_SUFFIXES | SLIDE_SUFFIXES:
            raise CorruptImageError(
                path, f"not a readable image although named {path.suffix} (damaged, or not an image at all)"
            )
        raise UnsupportedImageError(
            path, "unknown file format; papscreen reads JPEG, PNG, BMP, TIFF/OME-TIFF, SVS, NDPI and MRXS"
        )
    if image_format not in _PLAIN_FORMATS:
        raise UnsupportedImageError(
            path, f"{image_format} images are not supported; convert to PNG, JPEG or TIFF (lossless preferred)"
        )
    return PlainImageReader(path, max_image_pixels=max_image_pixels)


def _openslide_vendor(path: Path) -> str | None:
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except (openslide.OpenSlideError, OSError):
        return None


def _pillow_format(path: Path, max_image_pixels: int) -> str | None:
    """Pillow's name for the format, from the header only; ``None`` when Pillow does not recognise it.

    Raises:
        DecompressionBombError: the header declares more than ``max_image_pixels`` pixels (any format).
    """
    try:
        with warnings.catch_warnings(), pillow_pixel_limit(max_image_pixels), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return image.format
    except Image.DecompressionBombError as e:
        raise DecompressionBombError(path, declared_pixels(path), max_image_pixels) from e
    except (UnidentifiedImageError, *DECODER_FAILURES):
        return None


def _open_tiff(path: Path, max_image_pixels: int) -> SlideReader:
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            is_tiled = bool(page.is_tiled)
            has_subifds = bool(page.subifds)
            is_ome = bool(tif.is_ome)
            levels = len(tif.series[0].levels) if tif.series else 1
            pixels = int(page.imagewidth) * int(page.imagelength)
            rgb8 = page.dtype == "uint8" and int(page.samplesperpixel) in (3, 4) and int(page.photometric) in (2, 6)
    except (tifffile.TiffFileError, *DECODER_FAILURES) as e:
        raise CorruptImageError(path, f"not a readable TIFF (damaged or truncated header: {e})") from e
    vendor = _openslide_vendor(path)
    if vendor not in (None, "generic-tiff"):
        return OpenSlideReader(path)
    if vendor == "generic-tiff" and rgb8 and levels > 1 and not (is_ome or has_subifds):
        return OpenSlideReader(path)
    if is_tiled or levels > 1 or pixels > max_image_pixels:
        return TiffReader(path, max_segment_pixels=max_image_pixels)
    return PlainImageReader(path, max_image_pixels=max_image_pixels)
