"""Outlines, soft masks and noise textures: the geometry every synthetic object is drawn from.

Outlines are arrays of ``(x, y)`` offsets around an object's centre. They are rasterised with sub-pixel
precision, so a nucleus centred at a fractional position really is centred there, which matters because the
ground truth records fractional nucleus centres.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "disc_union",
    "fill_mask",
    "polygon_outline",
    "radial_outline",
    "smooth_noise",
    "spindle_outline",
    "tadpole_outline",
]

_SHIFT = 4  # cv2 fixed-point bits: coordinates to 1/16 px
_SUPERSAMPLE = 4  # fill_mask's sub-pixel resolution


def _stretch_rotate(x: np.ndarray, y: np.ndarray, aspect: float, angle: float) -> np.ndarray:
    """Squash a unit-aspect outline to ``aspect`` (minor/major) keeping its area, then rotate it."""
    major, minor = 1.0 / np.sqrt(aspect), np.sqrt(aspect)
    x, y = x * major, y * minor
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([x * cos - y * sin, x * sin + y * cos], axis=1)


def radial_outline(
    rng: np.random.Generator,
    radius: float,
    *,
    aspect: float = 1.0,
    angle: float = 0.0,
    irregularity: float = 0.0,
    n_points: int = 48,
) -> np.ndarray:
    """A closed, smoothly irregular outline: a circle whose radius wobbles with a few random harmonics.

    This is the shape of nuclei, haloes and round cells: ``irregularity`` is the typical relative wobble
    (0.03 a smooth normal nucleus, 0.15 the notched, knobbly contour of a malignant one). The area stays close
    to ``pi * radius**2`` whatever the aspect, so ``radius`` keeps meaning "equivalent radius".

    Examples:
        >>> outline = radial_outline(np.random.default_rng(0), 10.0, irregularity=0.1)
        >>> outline.shape
        (48, 2)
        >>> bool(np.all(np.hypot(*outline.T) > 3.0))
        True
    """
    theta = np.linspace(0.0, 2.0 * np.pi, n_points, endpoint=False)
    wobble = np.zeros_like(theta)
    if irregularity > 0:
        for k in range(2, 7):
            amplitude = irregularity * rng.standard_normal() / k**0.7
            wobble += amplitude * np.cos(k * theta + rng.uniform(0.0, 2.0 * np.pi))
    r = radius * np.clip(1.0 + wobble, 0.35, None)
    return _stretch_rotate(r * np.cos(theta), r * np.sin(theta), aspect, angle)


def _chaikin(points: np.ndarray, iterations: int) -> np.ndarray:
    """Round a polygon's corners by Chaikin corner cutting (each pass doubles the vertices)."""
    for _ in range(iterations):
        following = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * following, 0.25 * points + 0.75 * following], axis=1).reshape(-1, 2)
    return points


def polygon_outline(
    rng: np.random.Generator,
    radius: float,
    *,
    n_vertices: int = 6,
    aspect: float = 1.0,
    angle: float = 0.0,
    jitter: float = 0.15,
    rounding: int = 2,
) -> np.ndarray:
    """A convex-ish polygon with rounded corners: the flat, angular outline of a mature squamous cell.

    Vertex angles and distances are jittered so no two cells look alike; ``rounding`` passes of corner cutting
    soften the corners as a cell's edge does.

    Examples:
        >>> polygon_outline(np.random.default_rng(0), 80.0, n_vertices=6, rounding=2).shape
        (24, 2)
    """
    base = np.linspace(0.0, 2.0 * np.pi, n_vertices, endpoint=False)
    theta = np.sort(base + rng.uniform(-0.35, 0.35, n_vertices) * (2.0 * np.pi / n_vertices))
    r = radius * np.clip(1.0 + jitter * rng.standard_normal(n_vertices), 0.55, 1.6)
    points = _stretch_rotate(r * np.cos(theta), r * np.sin(theta), aspect, angle)
    return _chaikin(points, rounding)


def spindle_outline(length: float, width: float, angle: float, *, bend: float = 0.0, n_points: int = 48) -> np.ndarray:
    """A spindle (fusiform) cell: pointed at both ends, widest in the middle, optionally bent.

    Examples:
        >>> spindle_outline(100.0, 20.0, 0.0).shape
        (96, 2)
    """
    t = np.linspace(-1.0, 1.0, n_points)
    half_width = 0.5 * width * np.clip(1.0 - t**2, 0.0, None) ** 0.8
    x = 0.5 * length * t
    centre_y = bend * 0.5 * length * (t**2 - 1.0 / 3.0)
    upper = np.stack([x, centre_y + half_width], axis=1)
    lower = np.stack([x, centre_y - half_width], axis=1)[::-1]
    points = np.concatenate([upper, lower])
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([points[:, 0] * cos - points[:, 1] * sin, points[:, 0] * sin + points[:, 1] * cos], axis=1)


def tadpole_outline(head_radius: float, tail_length: float, angle: float, *, n_points: int = 64) -> np.ndarray:
    """A tadpole cell: a round head (where the nucleus sits) with a tapering tail, centred on the head.

    Examples:
        >>> outline = tadpole_outline(20.0, 80.0, 0.0)
        >>> float(outline[:, 0].min()) < -70.0  # the tail points along -x from the head at the origin
        True
    """
    theta = np.linspace(0.0, 2.0 * np.pi, n_points, endpoint=False)
    # Distance from the head centre: the head's radius, stretched into a tail around theta = pi.
    tail = np.exp(-(((theta - np.pi) / 0.45) ** 2))
    r = head_radius + tail_length * tail
    # Narrow the tail: pull points near the tail axis towards it.
    x, y = r * np.cos(theta), r * np.sin(theta)
    y = y * (1.0 - 0.75 * tail)
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([x * cos - y * sin, x * sin + y * cos], axis=1)


def fill_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise a closed outline (pixel coordinates, pixel centres at integers) to a soft 0..1 coverage mask.

    The outline is filled at 4x resolution and averaged down, so edge pixels get their true partial coverage
    and a shape's area and centre are right to a fraction of a pixel (OpenCV's anti-aliased fill alone grows
    shapes by about half a pixel, which matters for a 12 px nucleus).

    Examples:
        >>> mask = fill_mask(radial_outline(np.random.default_rng(0), 5.0) + 10.0, 21, 21)
        >>> bool(abs(float(mask.sum()) / (np.pi * 25) - 1.0) < 0.03)
        True
    """
    points = np.asarray(points, dtype=np.float64)
    # Filled polygons include pixels on their edge: pull the outline in by half a fine pixel to compensate.
    offsets = points - points.mean(axis=0)
    points = points - (0.5 / _SUPERSAMPLE) * offsets / np.maximum(np.hypot(*offsets.T), 1e-6)[:, None]
    fine = np.zeros((height * _SUPERSAMPLE, width * _SUPERSAMPLE), dtype=np.uint8)
    scaled = points * _SUPERSAMPLE + (_SUPERSAMPLE - 1) / 2.0
    fixed = np.round(scaled * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(fine, [fixed], 255, lineType=cv2.LINE_8, shift=_SHIFT)
    coarse = cv2.resize(fine, (width, height), interpolation=cv2.INTER_AREA)
    return coarse.astype(np.float32) * np.float32(1.0 / 255.0)


def disc_union(height: int, width: int, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Soft union of small discs (anti-aliased by distance): lobes of a neutrophil, granules, blood cells.

    ``centres`` is ``(N, 2)`` in the mask's pixel coordinates. Meant for small masks: it is vectorised over
    discs and pixels at once.

    Examples:
        >>> mask = disc_union(9, 9, np.array([[4.0, 4.0]]), np.array([3.0]))
        >>> float(mask[4, 4]), float(mask[0, 0])
        (1.0, 0.0)
    """
    if len(centres) == 0:
        return np.zeros((height, width), dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)[:, None, None]
    xs = np.arange(width, dtype=np.float32)[None, :, None]
    cx = np.asarray(centres[:, 0], dtype=np.float32)
    cy = np.asarray(centres[:, 1], dtype=np.float32)
    distance = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    coverage = np.clip(np.asarray(radii, dtype=np.float32) - distance + 0.5, 0.0, 1.0)
    return coverage.max(axis=2)


def smooth_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with grain ``sigma`` px: chromatin, cytoplasm texture, stain unevenness.

    Coarse noise (``sigma`` above 1.5 px) is made at reduced resolution and enlarged, which looks the same and
    costs a fraction of blurring full-resolution white noise.

    Examples:
        >>> noise = smooth_noise(np.random.default_rng(0), 64, 64, 4.0)
        >>> noise.shape, round(float(noise.std()), 2)
        ((64, 64), 1.0)
    """
    factor = max(1.0, sigma / 1.5)
    small_h, small_w = max(2, int(np.ceil(height / factor)) + 1), max(2, int(np.ceil(width / factor)) + 1)
    white = rng.standard_normal((small_h, small_w), dtype=np.float32)
    if sigma > 0:
        white = cv2.GaussianBlur(white, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT)
    if factor > 1.0:
        white = cv2.resize(white, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        white = white[:height, :width]
    std = float(white.std())
    return (white - white.mean()) / np.float32(std if std > 0 else 1.0)
