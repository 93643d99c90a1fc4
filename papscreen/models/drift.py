"""Drift: do the slides of the last nights look like the validation set the champions were judged on?

Two distributions are compared with the population stability index (PSI), the figure credit-risk and ML
monitoring use for "has the population moved": ``sum((actual - expected) * ln(actual / expected))`` over bins.
Below 0.1 is usually read as stable, 0.1-0.2 as a moderate shift, above 0.2 as a real one. The checks:

* the share of cells predicted NILM, LSIL, HSIL and SCC (a new stain, scanner or population moves it);
* the abnormal score of each cell (1 - P(NILM)), in bins cut at the validation scores' deciles, so each bin
  holds a tenth of the validation cells and a shift anywhere in the range shows.

A bin empty on one side would make the index infinite; an epsilon share keeps it finite. Too few recent cells
prove nothing either way, so then nothing is flagged and the report says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["DriftCheck", "DriftReport", "check_drift", "psi_of_counts", "psi_of_samples"]

EPSILON = 1e-4
"""Share given to an empty bin so the index stays finite."""


def _psi(expected: np.ndarray, actual: np.ndarray, epsilon: float) -> float:
    e = np.asarray(expected, np.float64)
    a = np.asarray(actual, np.float64)
    e = np.maximum(e / max(e.sum(), 1.0), epsilon)
    a = np.maximum(a / max(a.sum(), 1.0), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_of_counts(expected: Mapping[str, float], actual: Mapping[str, float], *, epsilon: float = EPSILON) -> float:
    """PSI between two categorical distributions given as counts (or shares) per category.

    Categories missing on one side count as zero there.

    Examples:
        >>> psi_of_counts({"NILM": 90, "HSIL": 10}, {"NILM": 900, "HSIL": 100})
        0.0
        >>> round(psi_of_counts({"NILM": 90, "HSIL": 10}, {"NILM": 50, "HSIL": 50}), 3)
        0.879
    """
    names = sorted(set(expected) | set(actual))
    return _psi(np.array([expected.get(n, 0) for n in names]), np.array([actual.get(n, 0) for n in names]), epsilon)


def psi_of_samples(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    *,
    bins: int = 10,
    epsilon: float = EPSILON,
) -> float:
    """PSI between two samples of a continuous score, in bins cut at the expected sample's quantiles.

    Repeated quantiles (many identical scores) merge into one cut, so a constant expected sample still gives two
    bins (at or below it, above it).

    Raises:
        ValueError: an empty sample or fewer than 2 bins.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> psi_of_samples(rng.uniform(size=5000), rng.uniform(size=5000)) < 0.01
        True
        >>> psi_of_samples(rng.uniform(size=5000), rng.uniform(0.5, 1.0, size=5000)) > 1
        True
    """
    e = np.asarray(expected, np.float64).ravel()
    a = np.asarray(actual, np.float64).ravel()
    if not len(e) or not len(a):
        raise ValueError("both samples need at least one value")
    if bins < 2:
        raise ValueError(f"need at least 2 bins, got {bins}")
    cuts = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    e_counts = np.bincount(np.searchsorted(cuts, e, side="left"), minlength=len(cuts) + 1)
    a_counts = np.bincount(np.searchsorted(cuts, a, side="left"), minlength=len(cuts) + 1)
    return _psi(e_counts, a_counts, epsilon)


@dataclass(frozen=True)
class DriftCheck:
    """One comparison: its PSI, the threshold it was held to, and whether it is over."""

    name: str
    psi: float
    threshold: float
    flagged: bool


@dataclass(frozen=True)
class DriftReport:
    """All checks of one night, whether any is flagged, and a sentence saying what was found.

    Attributes:
        checks: the class-distribution and abnormal-score checks (empty when there was too little data).
        flagged: a check is over its threshold.
        reason: for a person, with the numbers.
        recent_cells: cells of the recent slides compared.
        validation_cells: cells of the validation set compared.
        recent_classes: predicted-class counts of the recent cells.
        validation_classes: predicted-class counts on validation.
    """

    checks: tuple[DriftCheck, ...]
    flagged: bool
    reason: str
    recent_cells: int
    validation_cells: int
    recent_classes: dict[str, int] = field(default_factory=dict)
    validation_classes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the database's JSON column.

        Examples:
            >>> r = check_drift({"NILM": 5}, {}, [0.1] * 5, [], 0.2)
            >>> r.to_dict()["flagged"], r.to_dict()["checks"]
            (False, [])
        """
        return asdict(self) | {"checks": [asdict(c) for c in self.checks]}


def check_drift(
    validation_classes: Mapping[str, int],
    recent_classes: Mapping[str, int],
    validation_suspicion: Sequence[float] | np.ndarray,
    recent_suspicion: Sequence[float] | np.ndarray,
    threshold: float,
    *,
    min_recent_cells: int = 100,
    bins: int = 10,
) -> DriftReport:
    """Compare the recent slides' predicted classes and abnormal scores with the validation set's.

    Args:
        validation_classes: predicted-class counts of the champion on the validation set.
        recent_classes: predicted-class counts of the cells of the recent slides.
        validation_suspicion: the champion's abnormal score (1 - P(NILM)) of each validation cell.
        recent_suspicion: the abnormal score of each recent cell.
        threshold: PSI above which a check is flagged (``settings.validation.drift_threshold``).
        min_recent_cells: fewer recent cells than this flag nothing (too little to tell).
        bins: quantile bins of the abnormal score.

    Examples:
        >>> rng = np.random.default_rng(1)
        >>> same = check_drift({"NILM": 80, "HSIL": 20}, {"NILM": 800, "HSIL": 200},
        ...                    rng.beta(1, 5, 400), rng.beta(1, 5, 1000), 0.2)
        >>> same.flagged
        False
        >>> moved = check_drift({"NILM": 80, "HSIL": 20}, {"NILM": 300, "HSIL": 700},
        ...                     rng.beta(1, 5, 400), rng.beta(5, 1, 1000), 0.2)
        >>> moved.flagged, [c.name for c in moved.checks if c.flagged]
        (True, ['predicted classes', 'abnormal score'])
        >>> check_drift({"NILM": 80}, {"NILM": 3}, [0.1] * 80, [0.1] * 3, 0.2).reason
        'not enough recent data: 3 cells of recent slides, at least 100 needed; nothing flagged'
    """
    recent_scores = np.asarray(recent_suspicion, np.float64).ravel()
    validation_scores = np.asarray(validation_suspicion, np.float64).ravel()
    n_recent = int(sum(recent_classes.values()))
    n_validation = int(sum(validation_classes.values()))
    common = {
        "recent_cells": n_recent,
        "validation_cells": n_validation,
        "recent_classes": {k: int(v) for k, v in recent_classes.items()},
        "validation_classes": {k: int(v) for k, v in validation_classes.items()},
    }
    if n_recent < min_recent_cells or len(recent_scores) < min_recent_cells:
        reason = (
            f"not enough recent data: {min(n_recent, len(recent_scores))} cells of recent slides, "
            f"at least {min_recent_cells} needed; nothing flagged"
        )
        return DriftReport((), False, reason, **common)
    if not n_validation or not len(validation_scores):
        return DriftReport((), False, "no validation predictions to compare with; nothing flagged", **common)
    checks = []
    for name, psi in (
        ("predicted classes", psi_of_counts(validation_classes, recent_classes)),
        ("abnormal score", psi_of_samples(validation_scores, recent_scores, bins=bins)),
    ):
        checks.append(DriftCheck(name, round(psi, 6), threshold, psi > threshold))
    flagged = any(c.flagged for c in checks)
    numbers = ", ".join(f"{c.name} PSI {c.psi:.3f}" for c in checks)
    if flagged:
        over = " and ".join(c.name for c in checks if c.flagged)
        reason = f"drift in {over}: {numbers} (threshold {threshold:.2f}; {n_recent} recent cells)"
    else:
        reason = f"no drift: {numbers} (threshold {threshold:.2f}; {n_recent} recent cells)"
    return DriftReport(tuple(checks), flagged, reason, **common)
