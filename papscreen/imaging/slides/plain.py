"""Plain images (JPEG, PNG, BMP, strip TIFF): a field of view of a few megapixels, decoded once, one level.

Decoding goes through :func:`papscreen.imaging.image_io.read_rgb`, which refuses decompression bombs from the
header and truncated files instead of padding them, and normalises every mode (grey, 16-bit, palette, RGBA,
CMYK) to 8-bit RGB.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from papscreen.imaging.image_io import DECODER_FAILURES, read_rgb
from papscreen.imaging.slides.array import ArraySlideReader

__all__ = ["PlainImageReader"]

# Resolutions at or below this many dots per inch are screen or print defaults (72, 96, 300, 600 dpi), not a
# microscope's: 2540 dpi is 10 µm per pixel, coarser than any objective used for cytology.
_MIN_MICROSCOPE_DPI = 2540.0


def _mpp_from_dpi(info: dict) -> float | None:
    dpi = info.get("dpi")
    if not dpi:
        return None
    try:
        dpi_x, dpi_y = (float(v) for v in dpi)
    except (TypeError, ValueError):
        return None
    if dpi_x <= _MIN_MICROSCOPE_DPI or dpi_y <= _MIN_MICROSCOPE_DPI:
        return None
    return (25400.0 / dpi_x + 25400.0 / dpi_y) / 2.0


class PlainImageReader(ArraySlideReader):
    """A plain image file as a one-level slide, read whole on opening.

    ``mpp`` comes from the file's resolution (TIFF tags, PNG pHYs, JFIF density) only when it is fine enough to
    be a microscope's; 72 or 300 dpi defaults are ignored and ``mpp`` is ``None``.

    Raises:
        CorruptImageError: missing, empty, truncated or not an image.
        DecompressionBombError: the header declares more than ``max_image_pixels`` pixels.
        UnsupportedImageError: an encoding Pillow cannot decode.
    """

    def __init__(self, path: str | Path, *, max_image_pixels: int) -> None:
        path = Path(path)
        rgb = read_rgb(path, max_pixels=max_image_pixels)
        mpp = None
        try:
            with warnings.catch_warnings(), Image.open(path) as image:  # header only: the resolution tags
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                mpp = _mpp_from_dpi(image.info)
        except (Image.DecompressionBombError, *DECODER_FAILURES):
            mpp = None
        super().__init__(rgb, mpp=mpp, path=path)
