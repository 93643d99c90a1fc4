"""Crops cut around points: exact windows inside the field, mirrored windows at its borders."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.imaging.crops import cut_crops, reflect_indices


@pytest.fixture
def field() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [9, 10], ids=["odd", "even"])
def test_interior_crop_is_the_exact_window(field: np.ndarray, size: int) -> None:
    crops = cut_crops(field, np.array([[20.4, 15.6]]), size)
    top, left = 16 - size // 2, 20 - size // 2
    assert crops.shape == (1, size, size, 3)
    np.testing.assert_array_equal(crops[0], field[top : top + size, left : left + size])
    np.testing.assert_array_equal(crops[0, size // 2, size // 2], field[16, 20])


@pytest.mark.parametrize("xy", [(0.0, 0.0), (49.0, 39.0), (0.0, 39.0), (-3.0, 60.0)], ids=["tl", "br", "bl", "outside"])
def test_border_crops_mirror_the_field(field: np.ndarray, xy: tuple[float, float]) -> None:
    crop = cut_crops(field, np.array([xy]), 31)[0]
    padded = np.pad(field, ((40, 40), (50, 50), (0, 0)), mode="reflect")
    x, y = round(xy[0]) + 50, round(xy[1]) + 40
    np.testing.assert_array_equal(crop, padded[y - 15 : y + 16, x - 15 : x + 16])


def test_no_points_and_bad_input(field: np.ndarray) -> None:
    assert cut_crops(field, np.zeros((0, 2)), 8).shape == (0, 8, 8, 3)
    with pytest.raises(ValueError, match="H x W x 3"):
        cut_crops(field[..., 0], np.zeros((1, 2)), 8)
    with pytest.raises(ValueError, match="finite"):
        cut_crops(field, np.array([[np.nan, 1.0]]), 8)


def test_reflect_indices_fold_far_positions_back() -> None:
    assert reflect_indices(np.array([-7, 7, 10]), 3).tolist() == [1, 1, 2]
