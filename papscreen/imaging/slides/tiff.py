"""Tiled TIFF and OME-TIFF through tifffile, decoding only the tiles a region touches.

This reads what OpenSlide does not: pyramids stored as SubIFDs (OME-TIFF's layout), a single huge tiled level
with no pyramid, 16-bit or grey tiled scans. Each ``read_region`` finds the tiles (or strips) that intersect
it, reads their bytes under a lock, decodes them with tifffile's codec for the page and keeps the last few in a
small cache; a gigapixel level is never decoded whole.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import tifffile

from papscreen.errors import CorruptImageError, DecompressionBombError, UnreadableRegionError, UnsupportedImageError
from papscreen.imaging.image_io import DECODER_FAILURES
from papscreen.imaging.slides.base import WHITE, SlideReader

__all__ = ["TiffReader"]

_PHOTOMETRIC_MINISWHITE = 0
_PHOTOMETRIC_MINISBLACK = 1
_PHOTOMETRIC_RGB = 2
_PHOTOMETRIC_PALETTE = 3
_PHOTOMETRIC_SEPARATED = 5  # CMYK
_PHOTOMETRIC_YCBCR = 6
_SUPPORTED_PHOTOMETRIC = {
    _PHOTOMETRIC_MINISWHITE,
    _PHOTOMETRIC_MINISBLACK,
    _PHOTOMETRIC_RGB,
    _PHOTOMETRIC_PALETTE,
    _PHOTOMETRIC_SEPARATED,
    _PHOTOMETRIC_YCBCR,
}
_DECODE_ERRORS = DECODER_FAILURES
_CACHE_TILES = 64


def _to_rgb8(pixels: np.ndarray, page: tifffile.TiffPage) -> np.ndarray:
    """Normalise decoded TIFF samples (HxWxS, uint8 or uint16) to HxWx3 uint8 RGB like ``image_io.to_rgb8``."""
    photometric = int(page.photometric)
    if photometric == _PHOTOMETRIC_PALETTE:
        colormap = page.colormap  # (3, 2**bits) uint16
        rgb = colormap[:, pixels[..., 0].astype(np.intp)].transpose(1, 2, 0)
        return (rgb if colormap.max() <= 255 else rgb // 257).astype(np.uint8)
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    samples = pixels.shape[2]
    if photometric == _PHOTOMETRIC_SEPARATED and samples >= 4:
        cmy = pixels[..., :3].astype(np.int16) + pixels[..., 3:4].astype(np.int16)
        return (255 - np.clip(cmy, 0, 255)).astype(np.uint8)  # Pillow's CMYK -> RGB
    if samples in (1, 2):
        grey = pixels[..., 0]
        if photometric == _PHOTOMETRIC_MINISWHITE:
            grey = 255 - grey
        colour = np.repeat(grey[..., None], 3, axis=2)
        alpha = pixels[..., 1:2] if samples == 2 else None
    else:
        colour = pixels[..., :3]
        alpha = pixels[..., 3:4] if samples >= 4 and page.extrasamples else None
    if alpha is None:
        return np.ascontiguousarray(colour)
    a = alpha.astype(np.uint16)
    return ((colour.astype(np.uint16) * a + WHITE * (255 - a) + 127) // 255).astype(np.uint8)


class _Level:
    """Where one pyramid level's tiles (or strips) lie in the file and how to decode them."""

    def __init__(self, page: tifffile.TiffPage, path: Path, max_segment_pixels: int) -> None:
        self.page = page
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        if page.imagedepth > 1:
            raise UnsupportedImageError(path, "volumetric (3-D) TIFF tiles are not supported")
        if page.is_tiled:
            self.tile_width, self.tile_height = int(page.tilewidth), int(page.tilelength)
        else:
            self.tile_width, self.tile_height = self.width, int(min(page.rowsperstrip, self.height))
        if min(self.width, self.height, self.tile_width, self.tile_height) <= 0:
            raise CorruptImageError(
                path,
                f"a level declares {self.width}x{self.height} pixels in {self.tile_width}x{self.tile_height} tiles",
            )
        if self.tile_width * self.tile_height > max_segment_pixels:
            raise DecompressionBombError(path, self.tile_width * self.tile_height, max_segment_pixels)
        self.across = math.ceil(self.width / self.tile_width)
        self.down = math.ceil(self.height / self.tile_height)
        self.planes = int(page.samplesperpixel) if int(page.planarconfig) == 2 else 1
        expected = self.across * self.down * self.planes
        if len(page.dataoffsets) < expected:
            raise CorruptImageError(
                path, f"a level has {len(page.dataoffsets)} tiles listed where {expected} are needed"
            )
        self.decode_args: dict[str, object] = {"_fullsize": bool(page.is_tiled)}
        if int(page.compression) in {6, 7, 34892, 33007}:  # JPEG flavours
            self.decode_args["jpegtables"] = page.jpegtables
            self.decode_args["jpegheader"] = page.jpegheader


class TiffReader(SlideReader):
    """A tiled (or large striped) TIFF or OME-TIFF read tile by tile with tifffile.

    Levels come from tifffile's first series (SubIFD, OME and separate-IFD pyramids alike). ``mpp`` is the
    OME ``PhysicalSizeX``/``Y`` when present, otherwise from the resolution tags when their unit is a length.

    Args:
        path: the file.
        max_segment_pixels: largest tile or strip decoded in one piece (a strip TIFF stored as one huge strip
            would otherwise be a decompression bomb).

    Raises:
        CorruptImageError: not a readable TIFF, or its tile table is damaged.
        UnsupportedImageError: a sample layout papscreen does not read (float samples, 3-D, ...).
        DecompressionBombError: a single tile or strip larger than ``max_segment_pixels``.
    """

    def __init__(self, path: str | Path, *, max_segment_pixels: int = 64_000_000) -> None:
        self.path = Path(path)
        try:
            self._tif = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, *_DECODE_ERRORS) as e:
            raise CorruptImageError(self.path, f"not a readable TIFF ({e})") from e
        try:
            self._levels = self._find_levels(max_segment_pixels)
            self.mpp = self._read_mpp()
        except (tifffile.TiffFileError, *_DECODE_ERRORS) as e:
            self._tif.close()
            raise CorruptImageError(self.path, f"damaged TIFF structure ({e})") from e
        except Exception:
            self._tif.close()
            raise
        self._level_dimensions = tuple((level.width, level.height) for level in self._levels)
        self._file_lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.segments_decoded = 0
        """How many tiles or strips have been decoded so far (a check that regions do not read whole levels)."""

    def _find_levels(self, max_segment_pixels: int) -> list[_Level]:
        if not self._tif.series:
            raise CorruptImageError(self.path, "the TIFF holds no image")
        series = self._tif.series[0]
        levels = []
        for level_series in series.levels:
            page = level_series.keyframe
            # Several pages per level (channels, z, time): read the first plane only if it is an RGB image.
            if len(level_series.pages) > 1 and int(page.samplesperpixel) < 3:
                raise UnsupportedImageError(self.path, f"a multi-plane TIFF ({series.axes}) is not a slide image")
            if page.dtype not in (np.uint8, np.uint16):
                raise UnsupportedImageError(self.path, f"{page.dtype} TIFF samples are not supported (8 or 16 bit)")
            if int(page.photometric) not in _SUPPORTED_PHOTOMETRIC:
                raise UnsupportedImageError(self.path, f"TIFF photometric {page.photometric!s} is not supported")
            levels.append(_Level(page, self.path, max_segment_pixels))
        # Pyramid levels must shrink; anything else (a thumbnail or label tagged as a level) ends the pyramid.
        kept = [levels[0]]
        for level in levels[1:]:
            if level.width < kept[-1].width and level.height < kept[-1].height:
                kept.append(level)
        return kept

    def _read_mpp(self) -> float | None:
        if self._tif.is_ome and self._tif.ome_metadata:
            metadata = tifffile.xml2dict(self._tif.ome_metadata)
            images = metadata.get("OME", {}).get("Image", {})
            image = images[0] if isinstance(images, list) else images
            pixels = image.get("Pixels", {}) if isinstance(image, dict) else {}
            sizes = [pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeY")]
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
            values = [float(v) * scale for v in sizes if v is not None and scale is not None and float(v) > 0]
            if values:
                return sum(values) / len(values)
        page = self._levels[0].page
        unit = int(page.tags.valueof("ResolutionUnit", 1))
        per_unit = {2: 25400.0, 3: 10000.0}.get(unit)  # inch, centimetre -> microns
        if per_unit is None:
            return None
        values = []
        for name in ("XResolution", "YResolution"):
            value = page.tags.valueof(name)
            if value is None:
                continue
            numerator, denominator = value if isinstance(value, tuple) else (value, 1)
            if numerator and denominator:
                values.append(per_unit * denominator / numerator)
        return sum(values) / len(values) if values else None

    def _segment(
        self, level_index: int, index: int, request: tuple[tuple[int, int], int, tuple[int, int]]
    ) -> np.ndarray:
        """Tile ``index`` (row-major, all planes stacked) of a level, decoded to its native samples."""
        key = (level_index, index)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        level = self._levels[level_index]
        page = level.page
        planes = []
        per_plane = level.across * level.down
        for plane in range(level.planes):
            segment_index = plane * per_plane + index
            offset = int(page.dataoffsets[segment_index])
            count = int(page.databytecounts[segment_index])
            try:
                data = None
                if count > 0 and offset > 0:
                    with self._file_lock:
                        fh = self._tif.filehandle
                        fh.seek(offset)
                        data = fh.read(count)
                    if len(data) != count:
                        raise ValueError(f"file ends {count - len(data)} bytes into the tile")
                decoded, _, _shape = page.decode(data, segment_index, **level.decode_args)
            except (tifffile.TiffFileError, *_DECODE_ERRORS) as e:
                row, column = divmod(index, level.across)
                raise UnreadableRegionError(
                    self.path, *request, f"tile {column},{row} of level {level_index} cannot be decoded ({e})"
                ) from e
            if decoded is None:  # a sparse file's missing tile: empty glass
                planes = []
                break
            planes.append(decoded.reshape(decoded.shape[-3:]))  # (length, width, samples)
        if planes:
            rgb = _to_rgb8(planes[0] if len(planes) == 1 else np.concatenate(planes, axis=2), page)
        else:
            rgb = np.full((level.tile_height, level.tile_width, 3), WHITE, np.uint8)
        with self._cache_lock:
            self.segments_decoded += 1
            self._cache[key] = rgb
            while len(self._cache) > _CACHE_TILES:
                self._cache.popitem(last=False)
        return rgb

    def _read_window(
        self, level: int, x: int, y: int, width: int, height: int, request: tuple[tuple[int, int], int, tuple[int, int]]
    ) -> np.ndarray:
        info = self._levels[level]
        out = np.empty((height, width, 3), np.uint8)
        for row in range(y // info.tile_height, (y + height - 1) // info.tile_height + 1):
            for column in range(x // info.tile_width, (x + width - 1) // info.tile_width + 1):
                tile = self._segment(level, row * info.across + column, request)
                tx, ty = column * info.tile_width, row * info.tile_height
                left, top = max(x, tx), max(y, ty)
                right = min(x + width, tx + info.tile_width, info.width)
                bottom = min(y + height, ty + info.tile_height, info.height)
                out[top - y : bottom - y, left - x : right - x] = tile[top - ty : bottom - ty, left - tx : right - tx]
        return out

    def close(self) -> None:
        """Close the file and drop cached tiles."""
        self._tif.close()
        with self._cache_lock:
            self._cache.clear()
