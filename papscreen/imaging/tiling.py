"""Cutting a large image into overlapping tiles whose cores partition it.

Each tile is read with a margin of context around its *core*; a detection belongs to the tile whose core holds
it, so the cores' partition of the image means no cell is counted twice at a seam, and the margin means a cell
near a seam is seen with all its surroundings, as it would be in one piece. Cores start on multiples of
``align`` pixels so a detector's window grid falls on the same image positions in every tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Tile", "tile_grid"]


@dataclass(frozen=True)
class Tile:
    """One tile, in the pixels of the image (or pyramid level) it was cut from.

    Attributes:
        col: tile column in the grid.
        row: tile row in the grid.
        core: (x0, y0, x1, y1), half-open: the part of the image this tile answers for.
        read: (x0, y0, x1, y1), half-open: the core plus margin, clipped to the image: what is read.
    """

    col: int
    row: int
    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]

    @property
    def read_size(self) -> tuple[int, int]:
        """(width, height) of the region read."""
        return (self.read[2] - self.read[0], self.read[3] - self.read[1])

    def in_core(self, x: float | np.ndarray, y: float | np.ndarray) -> bool | np.ndarray:
        """Whether image positions (pixel centres at integers) fall in this tile's core; arrays give a mask."""
        x0, y0, x1, y1 = (edge - 0.5 for edge in self.core)
        return (x0 <= x) & (x < x1) & (y0 <= y) & (y < y1)


def tile_grid(width: int, height: int, tile_px: int, margin_px: int, align: int = 1) -> list[Tile]:
    """Tiles of at most ``tile_px`` a side covering a ``width`` x ``height`` image, row by row.

    An image that fits in one tile is one tile reading the whole image. Otherwise cores are
    ``tile_px - 2 * margin_px`` (rounded down to a multiple of ``align``) a side, and each tile reads its core
    plus ``margin_px`` on every side, clipped to the image.

    Raises:
        ValueError: non-positive sizes, or a margin that leaves no core.

    Examples:
        >>> [t.core for t in tile_grid(100, 50, 256, 32)]
        [(0, 0, 100, 50)]
        >>> tiles = tile_grid(300, 100, 128, 16, align=4)
        >>> len(tiles), tiles[1].core, tiles[1].read
        (8, (96, 0, 192, 96), (80, 0, 208, 100))
    """
    if width < 1 or height < 1:
        raise ValueError(f"the image must have a positive size, got {width}x{height}")
    if tile_px < 1 or margin_px < 0 or align < 1:
        raise ValueError(f"tile_px and align must be positive and margin_px >= 0, got {tile_px}, {margin_px}, {align}")
    if width <= tile_px and height <= tile_px:
        return [Tile(0, 0, (0, 0, width, height), (0, 0, width, height))]
    core = (tile_px - 2 * margin_px) // align * align
    if core < align:
        raise ValueError(f"a {margin_px} px margin leaves no core in a {tile_px} px tile")
    tiles = []
    for row in range(math.ceil(height / core)):
        for col in range(math.ceil(width / core)):
            x0, y0 = col * core, row * core
            x1, y1 = min(x0 + core, width), min(y0 + core, height)
            read = (
                max(0, x0 - margin_px),
                max(0, y0 - margin_px),
                min(width, x1 + margin_px),
                min(height, y1 + margin_px),
            )
            tiles.append(Tile(col, row, (x0, y0, x1, y1), read))
    return tiles
