"""Grouped, stratified folds never leak a field across folds; fold figures get honest intervals."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.models.crossval import grouped_folds, mean_ci


def _cells(n_fields: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for field in range(n_fields):
        n = int(rng.integers(3, 30))
        groups += [f"field{field:03d}"] * n
        labels += list(rng.choice(["NILM", "LSIL", "HSIL", "SCC"], size=n, p=[0.75, 0.12, 0.09, 0.04]))
    return np.array(groups), np.array(labels)


@pytest.mark.parametrize("k", [2, 5, 10], ids=lambda k: f"k{k}")
@pytest.mark.parametrize("seed", [0, 3], ids=lambda s: f"seed{s}")
def test_no_field_is_on_both_sides_and_every_cell_is_held_out_once(k: int, seed: int) -> None:
    groups, labels = _cells(seed=seed)
    folds = grouped_folds(groups, labels, k, seed)
    assert len(folds) == k
    held_out = np.concatenate([f.validation for f in folds])
    assert sorted(held_out) == list(range(len(groups)))
    for fold in folds:
        assert not set(groups[fold.train]) & set(groups[fold.validation])
        assert set(fold.validation_groups) == set(groups[fold.validation])
        assert len(np.intersect1d(fold.train, fold.validation)) == 0
    seen = [g for f in folds for g in f.validation_groups]
    assert len(seen) == len(set(seen)) == len(set(groups))


def test_classes_are_spread_over_folds() -> None:
    groups, labels = _cells(n_fields=60)
    folds = grouped_folds(groups, labels, 5, seed=0)
    for label in ("NILM", "HSIL"):
        shares = [np.mean(labels[f.validation] == label) for f in folds]
        assert max(shares) - min(shares) < 0.15


def test_same_seed_same_folds() -> None:
    groups, labels = _cells()
    first = [f.validation_groups for f in grouped_folds(groups, labels, 5, seed=1)]
    assert first == [f.validation_groups for f in grouped_folds(groups, labels, 5, seed=1)]


def test_too_many_folds_or_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="between 2"):
        grouped_folds(["a", "a", "b"], ["x", "y", "x"], 3, 0)
    with pytest.raises(ValueError, match="strata"):
        grouped_folds(["a", "b"], ["x"], 2, 0)


def test_interval_of_fold_figures() -> None:
    ci = mean_ci([0.8, 0.82, 0.78, 0.81, 0.79])
    assert ci.mean == pytest.approx(0.8)
    assert ci.low < 0.8 < ci.high
    assert ci.high - ci.low == pytest.approx(2 * 2.776 * 0.0158 / np.sqrt(5), rel=1e-2)
    assert mean_ci([0.5]).to_dict() == {"mean": 0.5, "low": 0.5, "high": 0.5, "n": 1}
    assert mean_ci([None, float("nan")]).n == 0


def test_rare_classes_only_fall_back_to_plain_group_folds() -> None:
    groups = [f"f{i}" for i in range(6)]
    strata = ["NILM", "NILM", "LSIL", "LSIL", "HSIL", "SCC"]  # no class has 3 members
    folds = grouped_folds(groups, strata, 3, seed=0)
    assert sorted(g for f in folds for g in f.validation_groups) == groups
