"""Tissue masks: glass is empty, stain is tissue, and tile queries round outward and clip to the mask."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.datasets.synthetic import render_field
from papscreen.imaging.tissue import tile_has_tissue, tissue_mask


def test_white_glass_has_no_tissue() -> None:
    assert not tissue_mask(np.full((30, 40, 3), 255, np.uint8)).any()


def test_grey_glass_with_noise_has_next_to_no_tissue() -> None:
    rng = np.random.default_rng(1)
    glass = np.clip(rng.normal(245, 2, (120, 160, 3)), 0, 255).astype(np.uint8)
    assert tissue_mask(glass).mean() < 0.001


@pytest.mark.parametrize(
    "stain", [(200, 150, 170), (150, 190, 185), (90, 60, 140), (235, 200, 180)], ids=["pink", "cyan", "nucleus", "pale"]
)
def test_stained_patch_is_tissue(stain: tuple[int, int, int]) -> None:
    image = np.full((30, 40, 3), 250, np.uint8)
    image[10:20, 15:25] = stain
    mask = tissue_mask(image, dilate_px=0)
    assert mask[10:20, 15:25].all()
    assert mask.sum() == 100


def test_dilation_grows_the_mask_and_threshold_is_respected() -> None:
    image = np.full((30, 40, 3), 255, np.uint8)
    image[15, 20] = 100
    assert tissue_mask(image, dilate_px=0).sum() == 1
    grown = tissue_mask(image, dilate_px=2)
    assert grown[13:18, 20].all()
    assert grown[15, 18:23].all()
    assert not grown[12, 20]
    assert not tissue_mask(image, od_threshold=0.5, dilate_px=0).any()  # OD of 100 is about 0.41


def test_synthetic_field_mask_covers_nuclei_not_everything() -> None:
    field = render_field(np.random.default_rng(0), {"NILM": 5}, width=512, height=384)
    mask = tissue_mask(field.rgb)
    assert len(field.cells) == 5
    for cell in field.cells:
        assert mask[round(cell.y), round(cell.x)], (cell.x, cell.y)
    assert 0.02 < mask.mean() < 0.6


@pytest.mark.parametrize(
    "image",
    [np.zeros((5, 5), np.uint8), np.zeros((5, 5, 4), np.uint8), np.zeros((5, 5, 3), np.float32)],
    ids=["gray", "rgba", "float"],
)
def test_mask_refuses_bad_images(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"H x W x 3|uint8"):
        tissue_mask(image)


def test_mask_refuses_bad_parameters() -> None:
    image = np.full((5, 5, 3), 255, np.uint8)
    with pytest.raises(ValueError, match="od_threshold"):
        tissue_mask(image, od_threshold=-0.1)
    with pytest.raises(ValueError, match="dilate_px"):
        tissue_mask(image, dilate_px=-1)


@pytest.fixture
def blob_mask() -> np.ndarray:
    """A 20x30 mask (scale 0.1: 200x300 level-0) with tissue at mask rows 5-9, columns 10-14."""
    mask = np.zeros((20, 30), bool)
    mask[5:10, 10:15] = True
    return mask


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((100, 50, 150, 100), True),  # inside the blob
        ((0, 0, 90, 40), False),  # empty corner
        ((145, 95, 400, 400), True),  # partly outside the mask, overlapping the blob's corner
        ((250, 150, 400, 400), False),  # partly outside, no tissue in the part inside
        ((500, 500, 600, 600), False),  # wholly outside
        ((-100, -100, -10, -10), False),  # wholly outside, negative side
        ((91, 41, 99, 49), False),  # rounds to mask pixel (9, 4): empty, next to the blob
        ((99, 49, 101, 51), True),  # rounds outward to columns 9-10, rows 4-5: touches (10, 5)
        ((120, 60, 120, 60), True),  # zero-size box still covers one mask pixel
    ],
    ids=["inside", "empty", "partly-out-hit", "partly-out-miss", "outside", "negative", "near", "graze", "point"],
)
def test_tile_has_tissue(blob_mask: np.ndarray, box: tuple[int, int, int, int], expected: bool) -> None:
    assert tile_has_tissue(blob_mask, 0.1, box) is expected


def test_tile_min_pixels(blob_mask: np.ndarray) -> None:
    box = (0, 0, 300, 200)
    assert tile_has_tissue(blob_mask, 0.1, box, min_pixels=25)
    assert not tile_has_tissue(blob_mask, 0.1, box, min_pixels=26)


@pytest.mark.parametrize(
    ("mask", "scale", "box", "min_pixels", "message"),
    [
        (np.zeros((2, 2, 2), bool), 0.1, (0, 0, 1, 1), 1, "2-D"),
        (np.zeros((2, 2), bool), 0.0, (0, 0, 1, 1), 1, "mask_scale"),
        (np.zeros((2, 2), bool), 0.1, (5, 0, 1, 1), 1, "x0 <= x1"),
        (np.zeros((2, 2), bool), 0.1, (0, 0, 1, 1), 0, "min_pixels"),
    ],
    ids=["3d", "scale", "box", "min-pixels"],
)
def test_tile_has_tissue_refuses_bad_input(
    mask: np.ndarray, scale: float, box: tuple[int, int, int, int], min_pixels: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tile_has_tissue(mask, scale, box, min_pixels=min_pixels)
