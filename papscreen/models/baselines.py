"""Baselines a stage-2 model must beat: the majority class, and logistic regression on nuclear features.

The hand-made features are what a cytotechnologist looks at first: nuclear area, nuclear darkness
(haematoxylin density), and the nucleus-to-cytoplasm ratio. They are measured on the crop around a nucleus:
the nucleus is the stained blob nearest the centre (Otsu threshold on haematoxylin density), the cell is the
non-glass region connected to it (Otsu on total optical density).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from papscreen.datasets.stain import haematoxylin_density, optical_density

__all__ = ["NUCLEAR_FEATURES", "NuclearFeatureBaseline", "majority_class_probs", "nuclear_features"]

NUCLEAR_FEATURES = ("nucleus_area", "nucleus_darkness", "nc_ratio", "cell_area")


def _component_at_centre(mask: np.ndarray) -> np.ndarray:
    """The connected component of ``mask`` closest to the image centre (empty if the mask is)."""
    count, labels, _, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    centre = labels[h // 2, w // 2]
    if centre == 0:
        distances = np.hypot(centroids[1:, 0] - w / 2, centroids[1:, 1] - h / 2)
        centre = 1 + int(np.argmin(distances))
    return labels == centre


def _otsu(values: np.ndarray) -> np.ndarray:
    scaled = np.clip(values / max(float(values.max()), 1e-6) * 255, 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask.astype(bool)


def nuclear_features(crop: np.ndarray) -> np.ndarray:
    """Nuclear area and darkness, N:C ratio and cell area of the cell centred in an RGB crop.

    Areas are fractions of the crop, so crops of any size compare.

    Examples:
        >>> crop = np.full((64, 64, 3), 235, np.uint8)
        >>> _ = cv2.circle(crop, (32, 32), 20, (200, 150, 160), -1)  # cytoplasm
        >>> _ = cv2.circle(crop, (32, 32), 6, (60, 40, 110), -1)     # nucleus
        >>> area, darkness, nc, cell = nuclear_features(crop)
        >>> bool(0.02 < area < 0.04 and 0.05 < nc < 0.15)
        True
    """
    h, w = crop.shape[:2]
    haem = cv2.GaussianBlur(haematoxylin_density(crop).astype(np.float32), (0, 0), 1.0)
    centre_window = haem[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    nucleus = np.zeros((h, w), dtype=bool)
    nucleus[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = _component_at_centre(_otsu(centre_window))
    total = cv2.GaussianBlur(optical_density(crop).mean(axis=2).astype(np.float32), (0, 0), 2.0)
    cell = _component_at_centre(_otsu(total) | nucleus)
    nucleus_area = nucleus.sum() / (h * w)
    cell_area = max(cell.sum(), nucleus.sum(), 1) / (h * w)
    darkness = float(haem[nucleus].mean()) if nucleus.any() else 0.0
    return np.array([nucleus_area, darkness, nucleus_area / cell_area, cell_area], dtype=np.float64)


def majority_class_probs(train_labels: Sequence[int], n_samples: int, n_classes: int) -> np.ndarray:
    """Probabilities of a classifier that always answers the training set's most common class."""
    majority = int(np.bincount(np.asarray(train_labels), minlength=n_classes).argmax())
    probs = np.zeros((n_samples, n_classes))
    probs[:, majority] = 1.0
    return probs


@dataclass
class NuclearFeatureBaseline:
    """Class-balanced logistic regression on :func:`nuclear_features` (standardised)."""

    n_classes: int
    seed: int = 0

    def __post_init__(self) -> None:
        self.model = make_pipeline(
            StandardScaler(),
            LogisticRegression(class_weight="balanced", max_iter=2000, random_state=self.seed),
        )

    def fit(self, crops: Sequence[np.ndarray], labels: Sequence[int]) -> NuclearFeatureBaseline:
        """Fit on RGB crops and integer labels."""
        self.model.fit(np.stack([nuclear_features(c) for c in crops]), np.asarray(labels))
        return self

    def predict_proba(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, n_classes) probabilities; classes absent from training get 0."""
        features = np.stack([nuclear_features(c) for c in crops])
        probs = np.zeros((len(crops), self.n_classes))
        probs[:, self.model.classes_] = self.model.predict_proba(features)
        return probs
