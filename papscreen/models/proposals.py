"""Nucleus candidates from colour alone: blobs of haematoxylin (or locally dark blobs) of a nucleus's size.

The stage-1 network sees a field through 20x20 windows at a reduced scale and may miss a nucleus it was not
trained on (an unusual stain, a large pale dysplastic nucleus). Nuclei take up haematoxylin, so a cheap, classical
detector gives an independent list of candidates:

1. shrink the field to ``scale`` (``INTER_AREA``) and smooth it a little;
2. mark pixels with haematoxylin density above a threshold (colour deconvolution, Ruifrok & Johnston) or darker
   than their surroundings by a black top-hat (pale vesicular nuclei inside cytoplasm);
3. open the mask, label connected components, drop those smaller than a nucleus;
4. a component of a nucleus's size gives its centroid; a larger one (touching nuclei, a cluster) gives the
   maxima of its distance transform, at least a nucleus apart.

The candidates are only proposals: :class:`~papscreen.models.stage1.Stage1Detector` scores each with the
network's map and keeps those it rates above a lower threshold where the network had no peak of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from papscreen.datasets.stain import haematoxylin_density

__all__ = ["ProposalConfig", "propose_nuclei"]


@dataclass(frozen=True)
class ProposalConfig:
    """How colour proposals are found; sizes in field pixels; checked on construction.

    Attributes:
        scale: the field is shrunk by this factor first (nuclei stay several pixels across; it is much faster).
        haematoxylin_min: haematoxylin optical density above which a pixel is stained (glass is about 0.05).
        local_contrast_min: grey levels by which a pixel must be darker than its surroundings (0 turns it off).
        min_diameter_px: smaller blobs are not nuclei (bacteria, granules, JPEG specks).
        max_diameter_px: the largest single nucleus; larger blobs are split by their distance transform.
        smooth_sigma_px: Gaussian smoothing before thresholding.

    Examples:
        >>> ProposalConfig(min_diameter_px=30, max_diameter_px=20)
        Traceback (most recent call last):
        ...
        ValueError: need 0 < min_diameter_px <= max_diameter_px, got 30 and 20
    """

    scale: float = 0.5
    haematoxylin_min: float = 0.3
    local_contrast_min: float = 20.0
    min_diameter_px: float = 8.0
    max_diameter_px: float = 70.0
    smooth_sigma_px: float = 2.0

    def __post_init__(self) -> None:
        """Refuse settings that cannot find anything."""
        if not 0 < self.scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {self.scale}")
        if not 0 < self.min_diameter_px <= self.max_diameter_px:
            raise ValueError(
                f"need 0 < min_diameter_px <= max_diameter_px, got {self.min_diameter_px} and {self.max_diameter_px}"
            )
        if self.haematoxylin_min <= 0 or self.local_contrast_min < 0 or self.smooth_sigma_px < 0:
            raise ValueError("haematoxylin_min must be > 0, local_contrast_min and smooth_sigma_px >= 0")


def _local_maxima(values: np.ndarray, size: int, minimum: float) -> tuple[np.ndarray, np.ndarray]:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    dilated = cv2.dilate(values, kernel)
    return np.nonzero((values >= dilated) & (values >= minimum))


def propose_nuclei(rgb: np.ndarray, config: ProposalConfig | None = None) -> np.ndarray:
    """Centres (N, 2) as (x, y) field pixels of blobs that look like nuclei by colour and size.

    Args:
        rgb: HxWx3 uint8 field at full resolution.
        config: thresholds and sizes; the defaults suit Papanicolaou-stained fields at about 2 px per micrometre.

    Examples:
        >>> field = np.full((200, 200, 3), 235, np.uint8)
        >>> _ = cv2.circle(field, (60, 80), 9, (90, 60, 140), -1)
        >>> _ = cv2.circle(field, (150, 120), 1, (90, 60, 140), -1)  # a speck, too small
        >>> np.round(propose_nuclei(field)).tolist()
        [[60.0, 80.0]]
    """
    config = config or ProposalConfig()
    rgb = np.asarray(rgb, np.uint8)
    height, width = rgb.shape[:2]
    scale = config.scale
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = rgb if size == (width, height) else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    sigma = config.smooth_sigma_px * scale
    if sigma > 0:
        small = cv2.GaussianBlur(small, (0, 0), sigma)
    mask = haematoxylin_density(small) > config.haematoxylin_min
    if config.local_contrast_min > 0:
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        side = max(3, round(config.max_diameter_px * scale) | 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        mask |= cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel) > config.local_contrast_min
    mask8 = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))

    _, labels, stats, centroids = cv2.connectedComponentsWithStats(mask8, connectivity=8)
    min_area = np.pi * (config.min_diameter_px * scale / 2) ** 2
    max_area = np.pi * (config.max_diameter_px * scale / 2) ** 2
    areas = stats[1:, cv2.CC_STAT_AREA]
    single = np.nonzero((areas >= min_area) & (areas <= max_area))[0] + 1
    points = [centroids[single]]
    large = np.nonzero(areas > max_area)[0] + 1
    if len(large):
        inside = np.isin(labels, large).astype(np.uint8)
        distance = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
        spacing = max(3, round(config.min_diameter_px * scale) | 1)
        rows, cols = _local_maxima(distance, spacing, config.min_diameter_px * scale / 2)
        points.append(np.stack([cols, rows], axis=1).astype(np.float64))
    xy = np.concatenate(points).reshape(-1, 2)
    # Working pixel centres to field pixel centres (both at integers): x_field = (x + 0.5) / scale - 0.5.
    return (xy + 0.5) * np.array([width / size[0], height / size[1]]) - 0.5
