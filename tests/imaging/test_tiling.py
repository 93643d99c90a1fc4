"""Tiles: cores partition the image, reads add the margin clipped to the image, cores align to the grid."""

from __future__ import annotations

import numpy as np
import pytest

from papscreen.imaging.tiling import tile_grid


@pytest.mark.parametrize(
    ("width", "height", "tile_px", "margin", "align"),
    [(100, 80, 256, 32, 1), (1000, 700, 256, 40, 4), (4097, 3001, 1024, 100, 6), (300, 5000, 128, 10, 1)],
    ids=["one-tile", "grid", "odd-sizes", "tall"],
)
def test_cores_partition_the_image_and_reads_hold_the_margin(
    width: int, height: int, tile_px: int, margin: int, align: int
) -> None:
    tiles = tile_grid(width, height, tile_px, margin, align)
    cover = np.zeros((height, width), np.int32)
    for tile in tiles:
        x0, y0, x1, y1 = tile.core
        cover[y0:y1, x0:x1] += 1
        rx0, ry0, rx1, ry1 = tile.read
        assert (rx0, ry0) == (max(0, x0 - margin), max(0, y0 - margin)) or len(tiles) == 1
        assert (rx1, ry1) == (min(width, x1 + margin), min(height, y1 + margin)) or len(tiles) == 1
        assert rx1 - rx0 <= tile_px
        assert ry1 - ry0 <= tile_px
        assert x0 % align == 0
        assert y0 % align == 0
    assert np.all(cover == 1)


def test_a_point_belongs_to_exactly_one_core() -> None:
    tiles = tile_grid(500, 300, 128, 16, align=2)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform([-0.5, -0.5], [499.49, 299.49], (500, 2)):
        assert sum(tile.in_core(x, y) for tile in tiles) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 10, 64, 8), "positive size"), ((100, 100, 64, 40), "leaves no core"), ((100, 100, 0, 4), "positive")],
    ids=["empty", "margin-too-big", "no-tile"],
)
def test_bad_grids_are_refused(args: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tile_grid(*args)
