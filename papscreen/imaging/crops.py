"""Full-resolution square crops centred on points of a field, mirrored at the borders.

Stage 2 classifies the window around each nucleus stage 1 found (or a person annotated), cut from the field at
full resolution, exactly as DB_4 crops were cut. A nucleus near the edge of a field still gets a full window: the
part outside the field is the field mirrored at its edge (``reflect`` without repeating the edge pixel, like
OpenCV's ``BORDER_REFLECT_101``), which looks like more smear rather than a black band the network never saw in
training.

Coordinates are pixels with pixel centres at integers (x = column, y = row), as in the point annotations. A crop
of even side ``s`` centred on ``(x, y)`` covers columns ``round(x) - s // 2`` to ``round(x) + s // 2 - 1``, so its
centre pixel ``(s // 2, s // 2)`` is the field pixel nearest the point.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cut_crops", "reflect_indices"]


def reflect_indices(indices: np.ndarray, length: int) -> np.ndarray:
    """Map any integer positions onto ``0..length - 1`` by mirroring at the edges (edge pixel not repeated).

    Positions far outside (more than a length away) keep mirroring back and forth, so any window fits any image.

    Examples:
        >>> reflect_indices(np.arange(-3, 7), 4).tolist()
        [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
        >>> reflect_indices(np.array([-2, 5]), 1).tolist()
        [0, 0]
    """
    indices = np.asarray(indices, np.int64)
    if length < 1:
        raise ValueError(f"cannot index an empty axis (length {length})")
    if length == 1:
        return np.zeros_like(indices)
    period = 2 * (length - 1)
    folded = np.abs(indices) % period
    return np.where(folded >= length, period - folded, folded)


def cut_crops(field_rgb: np.ndarray, xy: np.ndarray, crop_size: int) -> np.ndarray:
    """Cut one ``crop_size`` square per point, centred on it, at full resolution; borders mirrored.

    Args:
        field_rgb: the field, HxWx3 uint8 (any HxWxC array works the same way).
        xy: (N, 2) points (x, y) in field pixels; fractional positions are rounded to the nearest pixel.
        crop_size: side of each crop, pixels (the stage-2 model card's ``crop_size``).

    Returns:
        (N, crop_size, crop_size, 3) uint8 crops, in the order of ``xy``; (0, crop_size, crop_size, 3) for no point.

    Raises:
        ValueError: ``field_rgb`` is not an HxWx3 image, ``xy`` is not (N, 2) finite, or ``crop_size`` < 1.

    Examples:
        >>> field = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
        >>> crops = cut_crops(field, np.array([[2.0, 2.0], [0.0, 0.0]]), 3)
        >>> crops.shape
        (2, 3, 3, 3)
        >>> bool(np.array_equal(crops[0], field[1:4, 1:4]))
        True
        >>> bool(np.array_equal(crops[1][0], crops[1][2]))  # row -1 mirrors row 1
        True
    """
    field = np.asarray(field_rgb)
    if field.ndim != 3 or field.shape[0] < 1 or field.shape[1] < 1:
        raise ValueError(f"a field must be an H x W x 3 image, got shape {field.shape}")
    if crop_size < 1:
        raise ValueError(f"crop_size must be at least 1, got {crop_size}")
    points = np.asarray(xy, np.float64).reshape(-1, 2) if np.size(xy) else np.zeros((0, 2))
    if not np.all(np.isfinite(points)):
        raise ValueError("points must be finite (x, y) positions")
    height, width = field.shape[:2]
    offsets = np.arange(crop_size) - crop_size // 2
    out = np.empty((len(points), crop_size, crop_size, field.shape[2]), dtype=field.dtype)
    centres = np.floor(points + 0.5).astype(np.int64)
    for k, (cx, cy) in enumerate(centres):
        rows, cols = cy + offsets, cx + offsets
        if rows[0] >= 0 and cols[0] >= 0 and rows[-1] < height and cols[-1] < width:
            out[k] = field[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        else:
            out[k] = field[np.ix_(reflect_indices(rows, height), reflect_indices(cols, width))]
    return out
