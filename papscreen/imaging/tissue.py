"""Where on a scan there is stained material, so whole-slide analysis can skip tiles of empty glass.

A liquid-based or conventional smear covers only part of the slide; the rest is bare glass, which the scanner
records as near-white. Measuring in optical density (Beer-Lambert: ``OD = -log10(I / I0)``) rather than in
intensity makes the threshold mean "this much stain absorbed light" whatever the colour of the stain: glass
scanned at 240-255 has an OD below 0.03 in every channel, while Papanicolaou-stained cytoplasm (pink, orange or
blue-green) and nuclei are well above 0.1 in at least one channel. A pixel therefore counts as tissue when its
most absorbing channel passes the threshold; the mask is then dilated a little so that pale gaps inside a cell
(a koilocyte's halo, thin cytoplasm) do not split it.

The mask is usually made from a thumbnail and queried with level-0 boxes through ``tile_has_tissue``, which
rounds outward so a tile that only grazes stained material is still read.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["tile_has_tissue", "tissue_mask"]

# OD of each 8-bit intensity, with +1 so that black (0) has a finite density: -log10((I + 1) / 256).
_OD_LUT = -np.log10((np.arange(256, dtype=np.float64) + 1.0) / 256.0)


OPAQUE_OD = 1.3
"""A pixel whose every channel is darker than this optical density (intensity below about 13 of 255) is opaque:
black, not stained material. The darkest stained nuclei stay well under it (their brightest channel ~0.6)."""


def tissue_mask(rgb: np.ndarray, *, od_threshold: float = 0.08, dilate_px: int = 2) -> np.ndarray:
    """Boolean mask of the pixels that hold stained material (cells, mucus, debris), not bare glass nor black.

    Args:
        rgb: HxWx3 uint8 RGB image, typically a slide thumbnail.
        od_threshold: a pixel is tissue when the optical density of its most absorbing channel exceeds this.
            The default sits between glass (< 0.03, that is brighter than about 238) and the palest stained
            cytoplasm (> 0.1).
        dilate_px: radius in mask pixels by which the mask is grown (elliptical kernel, ``cv2.dilate``) to close
            pale gaps inside cells; 0 leaves it as thresholded.

    Returns:
        HxW bool mask, True where there is tissue.

    Raises:
        ValueError: ``rgb`` is not an HxWx3 uint8 image, ``od_threshold`` is negative or not finite, or
            ``dilate_px`` is negative.

    Examples:
        >>> white = np.full((20, 30, 3), 255, np.uint8)
        >>> bool(tissue_mask(white).any()), bool(tissue_mask(np.zeros((20, 30, 3), np.uint8)).any())
        (False, False)
        >>> stained = white.copy()
        >>> stained[5:10, 10:15] = (90, 60, 140)  # a dark violet nucleus
        >>> mask = tissue_mask(stained, dilate_px=1)
        >>> bool(mask[5:10, 10:15].all()), bool(mask[:, :8].any()), int(mask.sum())
        (True, False, 45)
    """
    image = _check_rgb(rgb)
    if not math.isfinite(od_threshold) or od_threshold < 0:
        raise ValueError(f"od_threshold must be a finite optical density >= 0, got {od_threshold}")
    if dilate_px < 0:
        raise ValueError(f"dilate_px must be >= 0, got {dilate_px}")
    # OD falls as intensity rises, so the most absorbing channel is the darkest one. A pixel dark in every
    # channel (black: a label, pen, the slide's edge, an empty 16-bit frame) is opaque, not stain.
    mask = (_OD_LUT[image.min(axis=2)] > od_threshold) & (_OD_LUT[image.max(axis=2)] <= OPAQUE_OD)
    if dilate_px == 0 or not mask.any():
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def tile_has_tissue(
    mask: np.ndarray, mask_scale: float, box: tuple[int, int, int, int], *, min_pixels: int = 1
) -> bool:
    """Whether a level-0 box (a tile about to be read) covers enough tissue in a low-resolution mask.

    The box is mapped into the mask and rounded outward (so a tile that only grazes a cell still counts), covers
    at least one mask pixel, and is clipped to the mask; a box wholly outside the mask has no tissue.

    Args:
        mask: HxW bool tissue mask, for example ``tissue_mask`` of a thumbnail.
        mask_scale: mask pixels per level-0 pixel (thumbnail width / slide width).
        box: (x0, y0, x1, y1) in level-0 pixels, x1 and y1 exclusive.
        min_pixels: how many tissue pixels of the mask the box must cover.

    Returns:
        True when the covered mask region holds at least ``min_pixels`` tissue pixels.

    Raises:
        ValueError: ``mask`` is not 2-D, ``mask_scale`` is not a positive finite number, the box has
            x1 < x0 or y1 < y0, or ``min_pixels`` < 1.

    Examples:
        >>> mask = tissue_mask(np.full((10, 10, 3), 255, np.uint8))
        >>> tile_has_tissue(mask, 0.01, (0, 0, 1000, 1000))
        False
        >>> image = np.full((10, 10, 3), 255, np.uint8)
        >>> image[2:4, 6:8] = 60  # a dark blob at mask columns 6-7, rows 2-3
        >>> mask = tissue_mask(image, dilate_px=0)
        >>> tile_has_tissue(mask, 0.01, (600, 200, 700, 300)), tile_has_tissue(mask, 0.01, (0, 0, 500, 1000))
        (True, False)
        >>> tile_has_tissue(mask, 0.01, (5000, 0, 6000, 100))  # outside the mask
        False
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a tissue mask must be a 2-D (H x W) array, got shape {mask.shape}")
    if not math.isfinite(mask_scale) or mask_scale <= 0:
        raise ValueError(f"mask_scale (mask pixels per level-0 pixel) must be positive and finite, got {mask_scale}")
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        raise ValueError(f"a box is (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, got {tuple(box)}")
    if min_pixels < 1:
        raise ValueError(f"min_pixels must be at least 1, got {min_pixels}")
    height, width = mask.shape
    col0, row0 = math.floor(x0 * mask_scale), math.floor(y0 * mask_scale)
    col1 = max(math.ceil(x1 * mask_scale), col0 + 1)
    row1 = max(math.ceil(y1 * mask_scale), row0 + 1)
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, width), min(row1, height)
    if col1 <= col0 or row1 <= row0:
        return False
    return int(np.count_nonzero(mask[row0:row1, col0:col1])) >= min_pixels


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit (uint8) image, got dtype {image.dtype}")
    return image
