"""Whole synthetic fields: the size of a liquid-based cytology scan tile, with point ground truth."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from papscreen.datasets.synthetic.scene import Clutter, TruthCell, compose_scene, sample_clutter

__all__ = ["FIELD_HEIGHT", "FIELD_WIDTH", "SyntheticField", "render_field"]

FIELD_WIDTH = 2048
FIELD_HEIGHT = 1536
_OUTSIDE_BAND_PX = 120.0


@dataclass
class SyntheticField:
    """One field image and its ground truth.

    Attributes:
        rgb: the field, HxWx3 uint8.
        cells: squamous cells, one per annotated nucleus (the point a cytologist would click).
        others: inflammatory cells (neutrophils, lymphocytes), for checking false positives.
    """

    rgb: np.ndarray
    cells: list[TruthCell]
    others: list[TruthCell]


def render_field(
    rng: np.random.Generator,
    composition: Mapping[str, int],
    width: int = FIELD_WIDTH,
    height: int = FIELD_HEIGHT,
    n_inflammatory: int | None = None,
    n_debris: int | None = None,
    n_rods: int | None = None,
    n_mucus: int | None = None,
) -> SyntheticField:
    """Render a field holding exactly ``composition`` squamous cells (nuclei inside the image).

    Cells are also placed with their nucleus just outside the border (about as densely as inside), so cut cells
    show at the edges without being annotated. Inflammation, debris, bacteria and mucus are drawn from a range of
    typical amounts unless given. An empty composition gives a near-empty field of background material only.

    Args:
        rng: the field's random stream; the same stream state gives the same field.
        composition: squamous cells per Bethesda class, for example ``{"NILM": 30, "HSIL": 3}``.
        width: image width, px.
        height: image height, px.
        n_inflammatory: neutrophils and lymphocytes; ``None`` draws an amount.
        n_debris: debris clumps and cell fragments; ``None`` draws an amount.
        n_rods: bacteria-like rods; ``None`` draws an amount.
        n_mucus: mucus strands; ``None`` draws an amount.

    Raises:
        ValueError: an unknown class or bad count in ``composition``, or more cells than fit.

    Examples:
        >>> field = render_field(np.random.default_rng(0), {"NILM": 3, "SCC": 1}, width=512, height=384)
        >>> field.rgb.shape, sorted(cell.label for cell in field.cells)
        ((384, 512, 3), ['NILM', 'NILM', 'NILM', 'SCC'])
    """
    typical = sample_clutter(rng, width * height)
    clutter = Clutter(
        n_inflammatory=typical.n_inflammatory if n_inflammatory is None else n_inflammatory,
        n_debris=typical.n_debris if n_debris is None else n_debris,
        n_rods=typical.n_rods if n_rods is None else n_rods,
        n_mucus=typical.n_mucus if n_mucus is None else n_mucus,
        n_blood=typical.n_blood,
    )
    n_cells = sum(int(count) for count in composition.values() if isinstance(count, int | np.integer) and count > 0)
    band_area = 2.0 * _OUTSIDE_BAND_PX * (width + height)
    n_outside = int(rng.poisson(n_cells * band_area / (width * height))) if n_cells else 0
    scene = compose_scene(rng, width, height, composition=composition, n_outside=n_outside, clutter=clutter)
    return SyntheticField(rgb=scene.rgb, cells=scene.cells, others=scene.others)
