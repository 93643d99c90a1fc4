"""Whole-slide pyramids through OpenSlide: Aperio SVS, Hamamatsu NDPI, 3DHISTECH MRXS, generic tiled TIFF.

OpenSlide sees a generic TIFF's pyramid only when the levels are separate top-level IFDs (not SubIFDs); such
files, and OME-TIFF, go to :class:`papscreen.imaging.slides.tiff.TiffReader` instead. OpenSlide returns RGBA
with transparent pixels outside the scanned area; they are composited on white here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

from papscreen.errors import CorruptImageError, UnreadableRegionError
from papscreen.imaging.slides.base import SlideReader

__all__ = ["OpenSlideReader"]


def _rgba_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite OpenSlide's (non-premultiplied) RGBA on white, as uint8 RGB."""
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    rgb = rgba[..., :3].astype(np.uint16)
    a = alpha.astype(np.uint16)
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


class OpenSlideReader(SlideReader):
    """A whole-slide image opened with OpenSlide; ``mpp`` from ``openslide.mpp-x``/``-y`` when present.

    Raises:
        CorruptImageError: OpenSlide recognises the format but cannot open the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._slide = openslide.OpenSlide(str(self.path))
        except (openslide.OpenSlideError, OSError) as e:
            raise CorruptImageError(self.path, f"OpenSlide cannot open this slide ({e})") from e
        self.vendor = self._slide.properties.get(openslide.PROPERTY_NAME_VENDOR)
        self._level_dimensions = tuple(tuple(int(v) for v in dims) for dims in self._slide.level_dimensions)
        self._downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self.mpp = self._read_mpp()

    def _read_mpp(self) -> float | None:
        values = []
        for key in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y):
            try:
                value = float(self._slide.properties.get(key, "nan"))
            except ValueError:
                continue
            if value > 0:  # false for NaN
                values.append(value)
        return sum(values) / len(values) if values else None

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """OpenSlide's own downsamples (it knows the vendor's nominal factors)."""
        return self._downsamples

    def _openslide_read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        try:
            region = self._slide.read_region(location, level, size)
        except openslide.OpenSlideError as e:
            raise UnreadableRegionError(self.path, location, level, size, f"OpenSlide: {e}") from e
        return _rgba_on_white(np.asarray(region))

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """See :meth:`SlideReader.read_region`; OpenSlide pads outside the slide itself."""
        x0, y0, level, width, height = self._check_region(location, level, size)
        return self._openslide_read((x0, y0), level, (width, height))

    def _read_window(
        self, level: int, x: int, y: int, width: int, height: int, request: tuple[tuple[int, int], int, tuple[int, int]]
    ) -> np.ndarray:
        downsample = self._downsamples[level]
        return self._openslide_read((round(x * downsample), round(y * downsample)), level, (width, height))

    def close(self) -> None:
        """Close the OpenSlide handle."""
        self._slide.close()
