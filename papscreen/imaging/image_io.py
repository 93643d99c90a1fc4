"""Read and write plain images (JPEG, PNG, TIFF, BMP) safely, always as 8-bit RGB.

Pillow reads the header first, so an image that declares too many pixels is refused before any pixel is
decoded (a decompression bomb), and a truncated file raises instead of being padded with grey, which is
what OpenCV's ``imread`` silently does.
"""

from __future__ import annotations

import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from papscreen.errors import CorruptImageError, DecompressionBombError, UnsupportedImageError

__all__ = [
    "DECODER_FAILURES",
    "PLAIN_IMAGE_SUFFIXES",
    "declared_pixels",
    "image_size",
    "pillow_pixel_limit",
    "read_rgb",
    "to_rgb8",
    "write_rgb",
]

PLAIN_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
DEFAULT_MAX_PIXELS = 250_000_000

DECODER_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    TypeError,
    KeyError,
    IndexError,
    ArithmeticError,
    EOFError,
    RuntimeError,
    MemoryError,
    struct.error,
)
"""What Pillow and tifffile raise on damaged bytes besides their own errors: a header field set to zero, a tuple
where a number belongs, a table cut short (found by fuzzing, ``tests/fuzz``). Each means "this file is damaged"
and is reported as :class:`~papscreen.errors.CorruptImageError`, never left to stop an intake pass."""


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def pillow_pixel_limit(limit: int | None) -> Iterator[None]:
    """Apply papscreen's pixel limit to Pillow's header check, for this call only."""
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def declared_pixels(path: Path) -> int:
    """Header-only pixel count, for the message about an image Pillow refused outright."""
    try:
        with pillow_pixel_limit(None), Image.open(path) as image:
            return image.size[0] * image.size[1]
    except (UnidentifiedImageError, *DECODER_FAILURES):
        return -1


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.is_file():
        raise CorruptImageError(path, "no such file")
    if path.stat().st_size == 0:
        raise CorruptImageError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings(), pillow_pixel_limit(max_pixels):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError as e:
        raise CorruptImageError(path, "not a readable image (unknown or damaged format)") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecompressionBombError(path, declared_pixels(path), max_pixels) from e
    except DECODER_FAILURES as e:
        raise CorruptImageError(path, f"cannot open image: {e}") from e
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise DecompressionBombError(path, width * height, max_pixels)
    return image


def image_size(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone, checking the pixel limit.

    Raises:
        CorruptImageError: missing, empty or unidentifiable file.
        DecompressionBombError: more pixels than ``max_pixels``.
    """
    with _open(Path(path), max_pixels) as image:
        return image.size


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode (1, L, P, RGBA, CMYK, I;16, I, F, LA, ...) to an HxWx3 uint8 array.

    16-bit and floating-point images are scaled by their own range, not clipped, so a 16-bit scan keeps
    its contrast. Transparent pixels are composited on white, the colour of an empty slide.

    Examples:
        >>> to_rgb8(Image.new("I;16", (2, 1), 65535)).tolist()
        [[[255, 255, 255], [255, 255, 255]]]
    """
    mode = image.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        return _grey_to_rgb8(np.asarray(image), mode)
    if mode in {"RGBA", "LA", "PA"} or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


_ROWS_AT_ONCE = 256
"""Rows of a high-bit-depth image scaled at a time: memory stays near the 8-bit result, never a float64 copy."""


def _grey_to_rgb8(array: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16-bit, 32-bit or float grey image to uint8 RGB in row blocks (see :func:`to_rgb8`)."""
    if mode == "F":
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / max(high - low, 1e-12)
    else:
        low = 0.0
        scale = 255.0 / (65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0))
    out = np.empty((*array.shape[:2], 3), np.uint8)
    for start in range(0, array.shape[0], _ROWS_AT_ONCE):
        block = array[start : start + _ROWS_AT_ONCE].astype(np.float32)
        block -= low
        block *= scale
        out[start : start + _ROWS_AT_ONCE] = np.clip(np.rint(block), 0, 255).astype(np.uint8)[..., None]
    return out


def read_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a plain image to an HxWx3 uint8 RGB array, refusing bombs and truncated files.

    Raises:
        CorruptImageError: the file is missing, empty, truncated or not an image.
        DecompressionBombError: the header declares more than ``max_pixels`` pixels.
        UnsupportedImageError: an image layout Pillow cannot decode (for example an exotic TIFF codec).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "x.png"
        >>> write_rgb(path, np.zeros((4, 6, 3), np.uint8))
        >>> read_rgb(path).shape
        (4, 6, 3)
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
        try:
            image.load()
        except OSError as e:
            message = str(e)
            if "truncated" in message or "broken data stream" in message or "premature end" in message:
                raise CorruptImageError(path, f"image data is truncated or damaged ({message})") from e
            if "decoder" in message and "not available" in message:
                raise UnsupportedImageError(path, f"image encoding is not supported ({message})") from e
            raise CorruptImageError(path, f"cannot decode image ({message})") from e
        except DECODER_FAILURES as e:
            raise CorruptImageError(path, f"cannot decode image ({e})") from e
        return to_rgb8(image)


PNG_COMPRESS_LEVEL = 1
"""zlib level of PNGs written: level 1 encodes an overlay or a gallery crop several times faster than the default
6 for files about a fifth larger (measured on 2048x1536 overlays: the analysis' exports took 1.25 s at 6)."""


def write_rgb(path: str | Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write an HxWx3 uint8 array; the format follows the suffix (JPEG gets ``quality``, PNG a fast zlib level)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    suffix = path.suffix.lower()
    if suffix in {".jpg", ".jpeg"}:
        image.save(path, quality=quality)
    elif suffix == ".png":
        image.save(path, compress_level=PNG_COMPRESS_LEVEL)
    else:
        image.save(path)
