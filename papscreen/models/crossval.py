"""Grouped, stratified k-fold cross-validation and the confidence intervals of its figures.

Cells of one field share stain, focus and patient, so a fold never splits a field: every split here is by group
(scikit-learn's ``StratifiedGroupKFold``, which also keeps each class's share close to even across folds). A
figure is reported as the mean over folds with a 95% Student-t interval, so two recipes can be told apart only
when their intervals say so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

__all__ = ["Fold", "MeanCI", "grouped_folds", "mean_ci"]


@dataclass(frozen=True)
class Fold:
    """One fold: indices of the training and validation items, and the validation groups.

    Attributes:
        number: 0-based fold number.
        train: indices into the items, sorted.
        validation: indices into the items, sorted.
        validation_groups: the groups held out, sorted.
    """

    number: int
    train: np.ndarray
    validation: np.ndarray
    validation_groups: tuple[str, ...]


def grouped_folds(
    groups: Sequence[str] | np.ndarray, strata: Sequence[str] | np.ndarray, k: int, seed: int
) -> list[Fold]:
    """Split items into ``k`` folds so that no group is on both sides and each class is spread evenly.

    Args:
        groups: the group of every item (a field).
        strata: the class of every item, balanced across folds as far as the groups allow.
        k: number of folds, at least 2 and at most the number of groups.
        seed: breaks ties between groups of equal class make-up; the same seed gives the same folds (the
            splitter places groups by how uneven their classes are, so other seeds mostly give the same folds).

    Raises:
        ValueError: fewer groups than folds, or lengths that differ.

    Examples:
        >>> groups = [f"f{i // 4}" for i in range(40)]
        >>> strata = ["NILM", "NILM", "NILM", "HSIL"] * 10
        >>> folds = grouped_folds(groups, strata, k=5, seed=0)
        >>> [len(f.validation) for f in folds]
        [8, 8, 8, 8, 8]
        >>> any(set(f.validation_groups) & {groups[i] for i in f.train} for f in folds)
        False
    """
    groups = np.asarray(groups)
    strata = np.asarray(strata)
    if len(groups) != len(strata):
        raise ValueError(f"{len(groups)} groups but {len(strata)} strata")
    distinct = np.unique(groups)
    if k < 2 or k > len(distinct):
        raise ValueError(f"k must be between 2 and the number of groups ({len(distinct)}), got {k}")
    _, counts = np.unique(strata, return_counts=True)
    if counts.max() < k:  # no class can be spread over k folds: split by group alone
        splitter: StratifiedGroupKFold | GroupKFold = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class rarer than k is expected (SCC fields); it is spread as far as it goes
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        splits = list(splitter.split(np.zeros(len(groups)), strata, groups))
    folds = []
    for number, (train, validation) in enumerate(splits):
        held_out = tuple(sorted({str(g) for g in groups[validation]}))
        folds.append(Fold(number, np.sort(train), np.sort(validation), held_out))
    return folds


@dataclass(frozen=True)
class MeanCI:
    """A mean over folds with its 95% interval (``low`` = ``high`` = ``mean`` when there is one value)."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain numbers for JSON."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}

    def __str__(self) -> str:
        """``0.812 [0.790, 0.834]``."""
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def mean_ci(values: Sequence[float | None], level: float = 0.95) -> MeanCI:
    """Mean and Student-t confidence interval of per-fold figures; undefined ones (``None``, NaN) are skipped.

    Examples:
        >>> str(mean_ci([0.8, 0.82, 0.78, 0.81, 0.79]))
        '0.800 [0.780, 0.820]'
        >>> mean_ci([None, 0.5]).n
        1
    """
    kept = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if kept.size == 0:
        return MeanCI(float("nan"), float("nan"), float("nan"), 0)
    mean = float(kept.mean())
    if kept.size == 1:
        return MeanCI(mean, mean, mean, 1)
    half = float(stats.t.ppf(0.5 + level / 2, kept.size - 1) * kept.std(ddof=1) / np.sqrt(kept.size))
    return MeanCI(mean, mean - half, mean + half, int(kept.size))
