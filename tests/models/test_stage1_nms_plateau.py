"""Non-maximum suppression stays exact and fast on a plateau of peaks (a black or saturated scan)."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.models.stage1 import non_maximum_suppression


def _brute_force(xy: np.ndarray, scores: np.ndarray, distance: float) -> list[int]:
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(((xy[i] - xy[k]) ** 2).sum() >= distance**2 for k in kept):
            kept.append(int(i))
    return kept


def test_it_keeps_exactly_what_comparing_with_every_kept_point_keeps() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        xy = rng.integers(0, 60, (150, 2)).astype(float)
        scores = rng.random(150).round(1)  # ties too
        assert non_maximum_suppression(xy, scores, 10.0).tolist() == _brute_force(xy, scores, 10.0)


@pytest.mark.timeout(60)
def test_a_plateau_of_a_million_peaks_is_suppressed_to_a_grid() -> None:
    grid = np.stack(np.meshgrid(np.arange(1000.0), np.arange(1000.0)), axis=-1).reshape(-1, 2)
    kept = non_maximum_suppression(grid, np.ones(len(grid)), 10.0)
    assert 9_000 < len(kept) < 13_000  # hours before the k-d tree
