"""Where the stained, nucleus-like things on a Pap smear field are, so background patches can avoid them.

A background patch for stage 1 must show no nucleus at all, including the many nuclei nobody annotated
(normal cells and every inflammatory cell in CRIC carry no point). Three cheap, conservative cues are OR-ed:

* haematoxylin density, from colour deconvolution (Ruifrok & Johnston) of the optical density
  ``OD = -log10(rgb / 255)``: nuclei take up haematoxylin;
* plain darkness (mean OD): dense nuclei, clumps and debris, whatever their hue;
* local darkness (a black top-hat on grey): pale vesicular nuclei inside cytoplasm, which are faint in absolute
  terms but darker than what surrounds them.

Excluding a little cytoplasm too is the price of never calling a nucleus "background".

Background cut only from empty glass teaches a network that anything stained is a cell. *Hard* background windows
(:func:`sample_centred_windows`) are only clear at their centre: they may show cytoplasm, debris, or a nucleus off
to one side, which is exactly what a centred-cell detector must learn to reject.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

__all__ = [
    "DEFAULT_DARKNESS_MIN",
    "DEFAULT_HAEMATOXYLIN_MIN",
    "DEFAULT_LOCAL_CONTRAST_MIN",
    "centre_exclusion_mask",
    "exclusion_mask",
    "haematoxylin_density",
    "nucleus_mask",
    "optical_density",
    "sample_centred_windows",
    "sample_free_windows",
]

_RGB_FROM_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]], dtype=np.float64)
"""Ruifrok & Johnston stain vectors (haematoxylin, eosin) in optical-density RGB."""

DEFAULT_HAEMATOXYLIN_MIN = 0.3
"""Haematoxylin OD above which a (smoothed) pixel counts as stained; CRIC glass is ~0.05, nuclei 0.4-1.8."""

DEFAULT_DARKNESS_MIN = 0.45
"""Mean OD over the three channels above which a pixel counts as dark (grey below about 90)."""

DEFAULT_LOCAL_CONTRAST_MIN = 25
"""Grey levels by which a blob must be darker than its surroundings to count (black top-hat)."""


def _stain_matrix() -> np.ndarray:
    """OD-RGB -> (haematoxylin, eosin, residual) matrix; the residual is orthogonal to both stains."""
    stains = _RGB_FROM_HE / np.linalg.norm(_RGB_FROM_HE, axis=1, keepdims=True)
    residual = np.cross(stains[0], stains[1])
    rgb_from_stains = np.vstack([stains, residual / np.linalg.norm(residual)])
    return np.linalg.inv(rgb_from_stains)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per-channel optical density ``-log10(I / 255)`` of an RGB image, as float32.

    Optical density is additive in the amount of stain, which is what makes thresholds and deconvolution
    meaningful; a zero intensity is clamped to 1 so black pixels stay finite.

    Examples:
        >>> optical_density(np.array([[[255, 255, 255]]], np.uint8)).tolist()
        [[[-0.0, -0.0, -0.0]]]
        >>> round(float(optical_density(np.array([[[25, 25, 25]]], np.uint8))[0, 0, 0]), 2)
        1.01
    """
    intensity = np.maximum(np.asarray(rgb, dtype=np.float32), 1.0) / 255.0
    return -np.log10(intensity)


def haematoxylin_density(rgb: np.ndarray) -> np.ndarray:
    """Haematoxylin concentration (in OD units) of each pixel, by colour deconvolution.

    Examples:
        >>> purple = np.array([[[90, 60, 140]]], np.uint8)
        >>> pink = np.array([[[240, 170, 200]]], np.uint8)
        >>> bool(haematoxylin_density(purple)[0, 0] > haematoxylin_density(pink)[0, 0])
        True
    """
    od = optical_density(rgb)
    return (od.reshape(-1, 3) @ _stain_matrix().astype(np.float32))[:, 0].reshape(od.shape[:2])


def nucleus_mask(
    rgb: np.ndarray,
    *,
    haematoxylin_min: float = DEFAULT_HAEMATOXYLIN_MIN,
    darkness_min: float = DEFAULT_DARKNESS_MIN,
    local_contrast_min: float = DEFAULT_LOCAL_CONTRAST_MIN,
    largest_nucleus_px: int = 61,
    smooth_sigma: float = 1.5,
) -> np.ndarray:
    """Boolean mask of everything that may be a nucleus: stained, dark, or darker than its surroundings.

    Meant to be over-inclusive: it decides where background must *not* be taken from, never where cells are.

    Args:
        rgb: HxWx3 uint8 field at full resolution.
        haematoxylin_min: haematoxylin OD threshold.
        darkness_min: mean OD threshold.
        local_contrast_min: black top-hat threshold, in grey levels.
        largest_nucleus_px: diameter of the largest nucleus to find by local contrast (the top-hat's size).
        smooth_sigma: Gaussian smoothing before thresholding, so JPEG noise on glass stays below the thresholds.

    Examples:
        >>> field = np.full((64, 64, 3), 240, np.uint8)
        >>> _ = cv2.circle(field, (32, 32), 6, (90, 60, 140), -1)
        >>> mask = nucleus_mask(field)
        >>> bool(mask[32, 32]), bool(mask[5, 5])
        (True, False)
    """
    smooth = cv2.GaussianBlur(np.asarray(rgb, dtype=np.uint8), (0, 0), smooth_sigma) if smooth_sigma > 0 else rgb
    # Optical density of a uint8 is one of 256 values: look-up tables are ~10x faster than log on every pixel.
    od_lut = optical_density(np.arange(256, dtype=np.uint8))
    haematoxylin = _stain_matrix()[:, 0].astype(np.float32)
    r, g, b = (smooth[..., c] for c in range(3))
    stained = od_lut[r] * haematoxylin[0] + od_lut[g] * haematoxylin[1] + od_lut[b] * haematoxylin[2]
    dark = (od_lut[r] + od_lut[g] + od_lut[b]) > 3 * darkness_min
    grey = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    size = max(3, int(largest_nucleus_px) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    locally_dark = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel) > local_contrast_min
    return (stained > haematoxylin_min) | dark | locally_dark


def exclusion_mask(
    nuclei: np.ndarray,
    points: Iterable[tuple[float, float]],
    *,
    margin_px: int,
    point_radius_px: int,
) -> np.ndarray:
    """Where no background pixel may come from: the nucleus mask grown by ``margin_px``, and a disc around each point.

    Points count even when their row was skipped (a label outside the 4 classes is still a cell).

    Examples:
        >>> nuclei = np.zeros((50, 50), bool)
        >>> nuclei[10, 10] = True
        >>> mask = exclusion_mask(nuclei, [(40.0, 40.0)], margin_px=2, point_radius_px=5)
        >>> bool(mask[12, 10]), bool(mask[13, 10]), bool(mask[44, 40]), bool(mask[25, 25])
        (True, False, True, False)
    """
    mask = nuclei.astype(np.uint8)
    if margin_px > 0:
        size = 2 * int(margin_px) + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    for x, y in points:
        cv2.circle(mask, (int(np.floor(x)), int(np.floor(y))), int(point_radius_px), 1, -1)
    return mask.astype(bool)


def _take_greedily(
    tops: np.ndarray,
    lefts: np.ndarray,
    window_px: int,
    count: int,
    rng: np.random.Generator,
    taken: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """Shuffle the candidates with ``rng`` and keep each one that overlaps no window kept or ``taken`` before."""
    w = window_px
    chosen: list[tuple[int, int]] = []
    occupied = list(taken)
    for i in rng.permutation(len(tops)):
        top, left = int(tops[i]), int(lefts[i])
        if all(abs(top - t) >= w or abs(left - lf) >= w for t, lf in occupied):
            chosen.append((top, left))
            occupied.append((top, left))
            if len(chosen) == count:
                break
    return chosen


def sample_free_windows(
    excluded: np.ndarray,
    window_px: int,
    count: int,
    rng: np.random.Generator,
) -> list[tuple[int, int]]:
    """Up to ``count`` non-overlapping ``window_px`` squares, inside the image and clear of ``excluded``.

    Candidates lie on a grid of a quarter window (enough variety, far fewer candidates), are shuffled with
    ``rng`` and taken greedily, so the result is deterministic for a seeded generator.

    Returns:
        (top, left) of each window, in the order they were drawn.

    Examples:
        >>> excluded = np.zeros((100, 100), bool)
        >>> excluded[:, :60] = True
        >>> windows = sample_free_windows(excluded, 20, 5, np.random.default_rng(0))
        >>> len(windows) > 0 and all(left >= 60 for _, left in windows)
        True
    """
    height, width = excluded.shape
    if count <= 0 or window_px > height or window_px > width:
        return []
    integral = cv2.integral(excluded.astype(np.uint8), sdepth=cv2.CV_32S)
    w = window_px
    inside = integral[w:, w:] - integral[:-w, w:] - integral[w:, :-w] + integral[:-w, :-w]
    stride = max(1, w // 4)
    tops, lefts = np.nonzero(inside[::stride, ::stride] == 0)
    return _take_greedily(tops * stride, lefts * stride, w, count, rng)


def centre_exclusion_mask(
    nuclei: np.ndarray,
    points: Iterable[tuple[float, float]],
    window_px: int,
) -> np.ndarray:
    """Where a hard background window's *centre* may not lie: near a stained blob or an annotated point.

    A centre closer than ``window_px // 4`` to the nucleus mask would show a nucleus (or part of one) where a cell
    patch shows its nucleus; a centre closer than ``window_px // 2`` to a point would be a cell patch slightly
    off-centre, which is too close to a positive to call negative.

    Examples:
        >>> nuclei = np.zeros((100, 100), bool)
        >>> nuclei[50, 50] = True
        >>> mask = centre_exclusion_mask(nuclei, [(10.0, 10.0)], window_px=40)
        >>> bool(mask[50, 60]), bool(mask[50, 61]), bool(mask[10, 30]), bool(mask[10, 31])
        (True, False, True, False)
    """
    return exclusion_mask(nuclei, points, margin_px=max(1, window_px // 4), point_radius_px=max(1, window_px // 2))


def sample_centred_windows(
    centre_excluded: np.ndarray,
    window_px: int,
    count: int,
    rng: np.random.Generator,
    *,
    taken: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """Up to ``count`` non-overlapping ``window_px`` squares inside the image whose *centre* is not excluded.

    Unlike :func:`sample_free_windows` the rest of the window may hold anything, stain included. The centre of
    the window at (top, left) is pixel ``(top + window_px // 2, left + window_px // 2)``, as for
    :func:`papscreen.datasets.build.cut_centred`. Candidates lie on the same quarter-window grid, are shuffled
    with ``rng`` and taken greedily, never overlapping each other nor a window in ``taken``.

    Args:
        centre_excluded: HxW boolean mask of forbidden centres (e.g. :func:`centre_exclusion_mask`).
        window_px: window side.
        count: the most windows wanted.
        rng: seeded generator; the same generator state gives the same windows.
        taken: (top, left) of windows already chosen (clear background), which new ones must not overlap.

    Returns:
        (top, left) of each window, in the order they were drawn.

    Examples:
        >>> centre_excluded = np.zeros((100, 100), bool)
        >>> centre_excluded[:, :70] = True
        >>> windows = sample_centred_windows(centre_excluded, 20, 5, np.random.default_rng(0))
        >>> len(windows) > 0 and all(left + 10 >= 70 for _, left in windows)
        True
    """
    height, width = centre_excluded.shape
    if count <= 0 or window_px > height or window_px > width:
        return []
    w, half = window_px, window_px // 2
    stride = max(1, w // 4)
    grid_tops = np.arange(0, height - w + 1, stride)
    grid_lefts = np.arange(0, width - w + 1, stride)
    allowed = ~centre_excluded[np.ix_(grid_tops + half, grid_lefts + half)]
    rows, cols = np.nonzero(allowed)
    return _take_greedily(grid_tops[rows], grid_lefts[cols], w, count, rng, taken)
