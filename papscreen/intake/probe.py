"""Check at intake that a file is a scan papscreen can analyse, so a bad file is quarantined at once.

The check goes through the same readers the analysis uses (:func:`papscreen.imaging.slides.open_slide`), so a
file that passes here opens there too, and every bad file fails with the same one-line
:class:`~papscreen.errors.ImageError` the ``papscreen analyze`` command prints. Opening a plain image decodes it
whole (fields are small), which catches a truncated JPEG; a pyramid is never decoded whole, so its smallest
level and one region in the middle of level 0 are read, which catches a file cut short or damaged in the bulk
of its tiles rather than half-way through an analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from papscreen.config import LimitSettings
from papscreen.imaging.slides import OpenSlideReader, PlainImageReader, SlideReader, TiffReader, open_slide

__all__ = ["ScanInfo", "probe_scan"]

FIELD_MAX_PIXELS = 64_000_000
"""A single-level image up to this size is a field of view; the same rule as ``papscreen.pipeline.scan_kind``."""

_WHOLE_LEVEL_PIXELS = 16_000_000
"""The smallest pyramid level is read whole up to this size; a larger one (no real pyramid) only in its middle."""

_REGION_PX = 512
"""Side of the regions read to prove that a pyramid's tiles decode."""

_VENDOR_FORMATS = {
    "aperio": "svs",
    "hamamatsu": "ndpi",
    "mirax": "mrxs",
    "leica": "scn",
    "ventana": "bif",
    "philips": "tiff",
    "sakura": "svslide",
    "generic-tiff": "tiff",
}
_MAGIC_FORMATS = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
)


@dataclass(frozen=True)
class ScanInfo:
    """What intake learned about a readable scan.

    Attributes:
        format: lowercase format from the content and the reader (``"jpeg"``, ``"png"``, ``"bmp"``, ``"tiff"``,
            ``"svs"``, ``"ndpi"``, ``"mrxs"``, ...), not from the extension.
        width: level-0 width, px.
        height: level-0 height, px.
        levels: pyramid levels (1 for a plain image).
        kind: ``"field"`` (a plain image of a field of view) or ``"slide"`` (a pyramid or a very large image).
    """

    format: str
    width: int
    height: int
    levels: int
    kind: str


def probe_scan(path: Path, limits: LimitSettings) -> ScanInfo:
    """Open a scan with papscreen's readers and read enough of it to be sure it can be analysed.

    Args:
        path: the file.
        limits: the size limits; the file size is checked from ``stat`` before anything is read.

    Returns:
        The scan's :class:`ScanInfo`.

    Raises:
        CorruptImageError: missing, empty (``file is empty (0 bytes)``), truncated or damaged, or not an image
            although named like one (a text file called ``.jpg``). A damaged pyramid region raises its subclass
            :class:`~papscreen.errors.UnreadableRegionError`.
        FileTooLargeError: over ``limits.max_file_bytes``.
        DecompressionBombError: a plain image declaring more than ``limits.max_image_pixels`` pixels, refused
            before decoding.
        UnsupportedImageError: a format papscreen does not read (GIF, WebP, float TIFF, unknown content).

    Examples:
        >>> import tempfile, numpy as np
        >>> from papscreen.imaging.image_io import write_rgb
        >>> path = Path(tempfile.mkdtemp()) / "field.jpg"
        >>> write_rgb(path, np.zeros((30, 40, 3), np.uint8))
        >>> probe_scan(path, LimitSettings())
        ScanInfo(format='jpeg', width=40, height=30, levels=1, kind='field')
    """
    path = Path(path)
    # open_slide refuses a missing, empty or oversized file from stat alone, before parsing anything.
    with open_slide(path, max_file_bytes=limits.max_file_bytes, max_image_pixels=limits.max_image_pixels) as slide:
        if not isinstance(slide, PlainImageReader):  # a plain image was decoded whole on opening
            _read_samples(slide)
        width, height = slide.dimensions
        levels = slide.level_count
        kind = "slide" if levels > 1 or width * height > FIELD_MAX_PIXELS else "field"
        return ScanInfo(format=_format(slide), width=width, height=height, levels=levels, kind=kind)


def _read_samples(slide: SlideReader) -> None:
    """Decode the smallest level (or its middle when it is large) and a region in the middle of level 0."""
    last = slide.level_count - 1
    width, height = slide.level_dimensions[last]
    if width * height <= _WHOLE_LEVEL_PIXELS:
        slide.read_region((0, 0), last, (width, height))
    else:
        downsample = slide.level_downsamples[last]
        corner = _middle(slide.dimensions, round(_REGION_PX * downsample))
        slide.read_region(corner, last, (_REGION_PX, _REGION_PX))
    slide.read_region(_middle(slide.dimensions, _REGION_PX), 0, (_REGION_PX, _REGION_PX))


def _middle(dimensions: tuple[int, int], side: int) -> tuple[int, int]:
    """Level-0 top-left corner of a ``side``-px square centred on the slide."""
    width, height = dimensions
    return max(0, (width - side) // 2), max(0, (height - side) // 2)


def _format(slide: SlideReader) -> str:
    """The format's lowercase name from what the reader found in the file."""
    if isinstance(slide, OpenSlideReader):
        vendor = (slide.vendor or "").lower()
        return _VENDOR_FORMATS.get(vendor, vendor or "tiff")
    if isinstance(slide, TiffReader):
        return "tiff"
    with slide.path.open("rb") as f:  # a plain image: its signature (open_slide has already checked it)
        head = f.read(8)
    return next((name for magic, name in _MAGIC_FORMATS if head.startswith(magic)), "unknown")
