"""The field (or slide) verdict: one abnormality score from its most suspicious cells, and where to cut it.

A single most-suspicious cell is a poor verdict: one misgraded cell among hundreds flips a field, and a field with
several moderately suspicious cells is missed. :class:`FieldScorer` takes the mean probability of "LSIL or worse"
over the field's ``top_k`` most suspicious cells (missing cells count as 0, so a field of two cells is not judged
as confidently as one of twenty). Its ``threshold`` is chosen on validation fields by :func:`choose_threshold`:
the highest cut that still flags the wanted share of abnormal fields, which keeps specificity as high as that
sensitivity allows. The scorer is stored on the stage-2 model card (``field_scorer``), so the operating point
travels with the model it was chosen for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["FieldScorer", "OperatingPoint", "choose_threshold", "field_scores"]


@dataclass(frozen=True)
class FieldScorer:
    """Mean P(LSIL or worse) of the ``top_k`` most suspicious cells, positive at or above ``threshold``.

    Examples:
        >>> scorer = FieldScorer(top_k=3, threshold=0.5)
        >>> scorer.score([0.9, 0.8, 0.1, 0.05])
        0.6
        >>> scorer.score([0.99]), scorer.is_positive([0.9, 0.8, 0.1])
        (0.33, True)
    """

    top_k: int = 5
    threshold: float = 0.5

    def __post_init__(self) -> None:
        """Refuse a scorer that cannot score."""
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")

    def score(self, abnormal_probs: Sequence[float] | np.ndarray) -> float:
        """The field's score in [0, 1] (rounded to 6 places so stored scores compare exactly)."""
        return round(float(field_scores([np.asarray(abnormal_probs, np.float64)], self.top_k)[0]), 6)

    def is_positive(self, abnormal_probs: Sequence[float] | np.ndarray) -> bool:
        """Whether the field is LSIL or worse at this operating point."""
        return self.score(abnormal_probs) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """For the model card."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldScorer:
        """Read back what :meth:`to_dict` wrote (extra keys, such as the validation figures, are ignored)."""
        return cls(top_k=int(data["top_k"]), threshold=float(data["threshold"]))


def field_scores(abnormal_probs: Sequence[np.ndarray], top_k: int) -> np.ndarray:
    """Score of each field: the sum of its ``top_k`` highest probabilities divided by ``top_k``.

    Examples:
        >>> field_scores([np.array([0.2, 0.9]), np.array([])], top_k=2).tolist()
        [0.55, 0.0]
    """
    out = np.zeros(len(abnormal_probs), np.float64)
    for i, probs in enumerate(abnormal_probs):
        probs = np.asarray(probs, np.float64).ravel()
        if probs.size:
            out[i] = np.sort(probs)[::-1][:top_k].sum() / top_k
    return out


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold and what it gave on the fields it was chosen on."""

    threshold: float
    sensitivity: float
    specificity: float
    fields: int


def choose_threshold(scores: np.ndarray, positive: np.ndarray, min_sensitivity: float = 0.95) -> OperatingPoint:
    """The highest threshold whose sensitivity on these fields is at least ``min_sensitivity``.

    Args:
        scores: field scores.
        positive: whether each field is truly LSIL or worse.
        min_sensitivity: the share of positive fields that must be flagged.

    Raises:
        ValueError: no positive field (nothing to be sensitive to) or lengths that differ.

    Examples:
        >>> point = choose_threshold(np.array([0.1, 0.2, 0.6, 0.7, 0.9]), np.array([0, 0, 1, 0, 1]), 1.0)
        >>> point.threshold, point.sensitivity, point.specificity
        (0.6, 1.0, 0.6666666666666666)
    """
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    if scores.shape != positive.shape:
        raise ValueError(f"{scores.shape[0]} scores but {positive.shape[0]} truths")
    if not positive.any():
        raise ValueError("no positive field: a threshold for sensitivity cannot be chosen")
    ranked = np.sort(scores[positive])[::-1]
    needed = int(np.ceil(min_sensitivity * positive.sum() - 1e-9))
    threshold = float(ranked[max(needed, 1) - 1])
    flagged = scores >= threshold
    negatives = (~positive).sum()
    return OperatingPoint(
        threshold=threshold,
        sensitivity=float(flagged[positive].mean()),
        specificity=float((~flagged[~positive]).mean()) if negatives else float("nan"),
        fields=int(scores.size),
    )
