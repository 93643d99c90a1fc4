"""Training samples cut the way the real datasets were cut: stage-1 patches (DB_3) and stage-2 crops (DB_4).

Each sample is cut from a scene rendered just large enough for it, not from a full field, which keeps
generation fast while every sample still has the surroundings it would have in a field: neighbouring cells,
inflammatory cells, debris and cut cell edges.
"""

from __future__ import annotations

import cv2
import numpy as np

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.conventions import DEFAULT_CROP_PX, DEFAULT_STAGE1_SCALE, STAGE1_INPUT_PX
from papscreen.datasets.synthetic.scene import Clutter, Scene, compose_scene, sample_clutter

__all__ = ["render_cell_crop", "render_stage1_patches", "stage1_window"]

_TILE_PX = 320
_PER_TILE = 3
_TILE_LABEL_WEIGHTS = {"NILM": 0.55, "LSIL": 0.15, "HSIL": 0.15, "SCC": 0.15}
_BACKGROUND_KINDS = ("glass_or_cytoplasm", "inflammatory", "edge", "debris")
_BACKGROUND_WEIGHTS = (0.4, 0.3, 0.2, 0.1)


def stage1_window(scale: float = DEFAULT_STAGE1_SCALE) -> int:
    """Side of the full-resolution window a stage-1 patch sees at working ``scale``, px.

    Raises:
        ValueError: ``scale`` is not in (0, 1].

    Examples:
        >>> stage1_window(0.5)
        40
    """
    if not 0 < scale <= 1:
        raise ValueError(f"the stage-1 working scale must be in (0, 1], not {scale}")
    return round(STAGE1_INPUT_PX / float(scale))


def render_cell_crop(rng: np.random.Generator, label: str, size: int = DEFAULT_CROP_PX) -> np.ndarray:
    """A ``size`` x ``size`` RGB crop centred on the nucleus of one cell of class ``label``.

    As a crop cut from a field would, it shows neighbouring cells (mostly normal; in abnormal crops sometimes
    another abnormal cell, as they cluster), cut cell edges at the borders, inflammatory cells and debris. The
    nucleus is centred to within a pixel, like a careful point annotation.

    Raises:
        ValueError: ``label`` is not one of ``BETHESDA_CLASSES``.

    Examples:
        >>> crop = render_cell_crop(np.random.default_rng(0), "HSIL")
        >>> crop.shape, crop.dtype.name
        ((250, 250, 3), 'uint8')
    """
    if label not in BETHESDA_CLASSES:
        raise ValueError(f"unknown Bethesda class {label!r}; expected one of {', '.join(BETHESDA_CLASSES)}")
    centre = size / 2.0 + rng.uniform(-1.0, 1.0, 2)
    optional = {"NILM": int(rng.poisson(1.0))}
    if label != "NILM" and rng.random() < 0.3:
        optional[label] = 1
    area = float(size * size)
    scene = compose_scene(
        rng,
        size,
        size,
        composition={},
        planted=[(label, float(centre[0]), float(centre[1]))],
        optional=optional,
        n_outside=int(rng.poisson(3.0 * area / 250.0**2)),
        clutter=sample_clutter(rng, area),
        keep_clear=0.25 * size,
    )
    return scene.rgb


def _cut(scene: Scene, x: float, y: float, window: int) -> np.ndarray | None:
    """The ``window`` px square centred at (x, y), resized to the stage-1 input; None if it leaves the image."""
    height, width = scene.rgb.shape[:2]
    x0, y0 = round(float(x) - window / 2.0), round(float(y) - window / 2.0)
    if x0 < 0 or y0 < 0 or x0 + window > width or y0 + window > height:
        return None
    patch = scene.rgb[y0 : y0 + window, x0 : x0 + window]
    return cv2.resize(patch, (STAGE1_INPUT_PX, STAGE1_INPUT_PX), interpolation=cv2.INTER_AREA)


def _far_from_nuclei(scene: Scene, x: float, y: float) -> bool:
    """A background centre must be more than 1.5 nucleus radii + 20 px from every squamous nucleus."""
    if len(scene.nuclei) == 0:
        return True
    distance = np.hypot(scene.nuclei[:, 0] - x, scene.nuclei[:, 1] - y)
    return bool(np.all(distance > 1.5 * scene.nuclei[:, 2] + 20.0))


def _background_candidate(rng: np.random.Generator, scene: Scene, window: int) -> tuple[float, float]:
    """A point of one kind of background: glass or cytoplasm, an inflammatory cell, a cell's edge, debris."""
    height, width = scene.rgb.shape[:2]
    kind = _BACKGROUND_KINDS[int(rng.choice(len(_BACKGROUND_KINDS), p=_BACKGROUND_WEIGHTS))]
    pools = {
        "inflammatory": np.array([(c.x, c.y) for c in scene.others]).reshape(-1, 2),
        "edge": scene.edges,
        "debris": scene.debris,
    }
    pool = pools.get(kind)
    if pool is None or len(pool) == 0:
        return float(rng.uniform(0, width)), float(rng.uniform(0, height))
    x, y = pool[rng.integers(len(pool))] + rng.uniform(-window / 5.0, window / 5.0, 2)
    return float(x), float(y)


def _tile(rng: np.random.Generator) -> Scene:
    labels = list(_TILE_LABEL_WEIGHTS)
    weights = np.array(list(_TILE_LABEL_WEIGHTS.values()))
    picks = rng.choice(len(labels), size=int(rng.integers(2, 6)), p=weights / weights.sum())
    optional = {label: int(np.sum(picks == i)) for i, label in enumerate(labels)}
    typical = sample_clutter(rng, _TILE_PX * _TILE_PX)
    # Hard negatives are worth more than empty glass: keep tiles somewhat inflamed and dirty.
    clutter = Clutter(
        n_inflammatory=typical.n_inflammatory + int(rng.integers(0, 6)),
        n_debris=typical.n_debris + int(rng.integers(0, 3)),
        n_rods=typical.n_rods,
        n_mucus=typical.n_mucus,
        n_blood=typical.n_blood,
    )
    return compose_scene(
        rng, _TILE_PX, _TILE_PX, composition={}, optional=optional, n_outside=int(rng.poisson(3.0)), clutter=clutter
    )


def render_stage1_patches(
    rng: np.random.Generator, n_cell: int, n_background: int, scale: float = DEFAULT_STAGE1_SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 training patches: ``n_cell`` centred on squamous nuclei and ``n_background`` away from them.

    A patch is a ``stage1_window(scale)`` px square of a full-resolution scene resized with ``INTER_AREA`` to
    20x20, like DB_3. Cell patches are centred on nuclei of all four classes (more often normal ones) with
    1-2 px of jitter at the working scale. Background patches keep more than 1.5 nucleus radii + 20 px from
    every squamous nucleus and mix empty glass, cytoplasm, inflammatory cells, cell edges and debris, so the
    detector has to learn what a squamous nucleus looks like rather than "dark spot".

    Returns:
        ``(cells, background)``: uint8 arrays of shape ``(n_cell, 20, 20, 3)`` and ``(n_background, 20, 20, 3)``.

    Raises:
        ValueError: a negative count or a scale outside (0, 1].

    Examples:
        >>> cells, background = render_stage1_patches(np.random.default_rng(0), 2, 3)
        >>> cells.shape, background.shape
        ((2, 20, 20, 3), (3, 20, 20, 3))
    """
    if n_cell < 0 or n_background < 0:
        raise ValueError(f"patch counts must be >= 0, not {n_cell} cell and {n_background} background")
    window = stage1_window(scale)
    cells: list[np.ndarray] = []
    background: list[np.ndarray] = []
    while len(cells) < n_cell or len(background) < n_background:
        scene = _tile(rng)
        taken = 0
        for index in rng.permutation(len(scene.cells)):
            if len(cells) >= n_cell or taken >= _PER_TILE:
                break
            truth = scene.cells[int(index)]
            jitter = rng.uniform(-2.0, 2.0, 2) / scale
            patch = _cut(scene, truth.x + jitter[0], truth.y + jitter[1], window)
            if patch is not None:
                cells.append(patch)
                taken += 1
        taken = 0
        for _ in range(8 * _PER_TILE):
            if len(background) >= n_background or taken >= _PER_TILE:
                break
            x, y = _background_candidate(rng, scene, window)
            if not _far_from_nuclei(scene, x, y):
                continue
            patch = _cut(scene, x, y, window)
            if patch is not None:
                background.append(patch)
                taken += 1
    shape = (0, STAGE1_INPUT_PX, STAGE1_INPUT_PX, 3)
    return (
        np.stack(cells) if cells else np.zeros(shape, np.uint8),
        np.stack(background) if background else np.zeros(shape, np.uint8),
    )
