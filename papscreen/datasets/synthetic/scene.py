"""Compose a scene: place cells and everything else on a canvas, draw them, develop the image, keep the truth.

Fields, stage-2 crops and the tiles stage-1 patches are cut from are all scenes of different sizes, so they share
one placement policy: squamous nuclei never closer than :data:`MIN_NUCLEUS_GAP` px (or their radii plus a
margin), cytoplasm allowed to overlap but not pile up, inflammatory cells and debris kept off squamous nuclei
(so the annotated point is where the nucleus visibly is), and some cells whose nucleus lies just outside the
canvas so that cut cell edges appear at the borders, as in a real crop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.synthetic.morphology import CellMorphology, sample_morphology
from papscreen.datasets.synthetic.optics import FieldLook, develop, sample_look
from papscreen.datasets.synthetic.render import (
    DrawnCell,
    draw_blood,
    draw_diathesis,
    draw_granules,
    draw_lymphocyte,
    draw_mucus,
    draw_neutrophil,
    draw_rods,
    draw_squamous_cell,
    new_canvas,
)
from papscreen.datasets.synthetic.stains import StainSet, sample_stains

__all__ = [
    "MIN_NUCLEUS_GAP",
    "Clutter",
    "Scene",
    "TruthCell",
    "compose_scene",
    "sample_clutter",
]

MIN_NUCLEUS_GAP = 20.0
"""No two squamous nuclei are placed closer than this (px, centre to centre)."""

_PLACEMENT_TRIES = 400


@dataclass(frozen=True)
class TruthCell:
    """Ground truth for one cell: where its nucleus is and what it is.

    Inflammatory cells are benign, so their ``label`` is ``"NILM"``; ``kind`` tells them apart.

    Attributes:
        x: nucleus centre, field pixels (column).
        y: nucleus centre, field pixels (row).
        label: Bethesda class, one of ``BETHESDA_CLASSES``.
        kind: ``"squamous"`` or ``"inflammatory"``.
        nucleus_radius: equivalent radius of the nucleus (of the whole cell for inflammatory cells), px.
    """

    x: float
    y: float
    label: str
    kind: Literal["squamous", "inflammatory"]
    nucleus_radius: float


@dataclass(frozen=True)
class Clutter:
    """How much non-squamous material a scene holds.

    Attributes:
        n_inflammatory: neutrophils and lymphocytes.
        n_debris: granular clumps and nucleus-free cytoplasm fragments.
        n_rods: bacteria-like rods.
        n_mucus: mucus strands.
        n_blood: red blood cells (a bloody smear, not tumour diathesis).
    """

    n_inflammatory: int = 0
    n_debris: int = 0
    n_rods: int = 0
    n_mucus: int = 0
    n_blood: int = 0


@dataclass
class Scene:
    """A developed scene and everything needed to cut labelled samples from it.

    Attributes:
        rgb: the image, HxWx3 uint8.
        cells: annotated squamous cells whose nucleus centre is inside the image.
        others: inflammatory cells whose centre is inside the image.
        nuclei: ``(K, 3)`` rows of x, y, radius for every squamous nucleus drawn, secondary nuclei and nuclei
            outside the image included: background samples must keep away from all of them.
        edges: ``(M, 2)`` points on squamous cells' edges inside the image.
        debris: ``(D, 2)`` centres of debris inside the image.
    """

    rgb: np.ndarray
    cells: list[TruthCell] = field(default_factory=list)
    others: list[TruthCell] = field(default_factory=list)
    nuclei: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    debris: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def sample_clutter(rng: np.random.Generator, area_px: float) -> Clutter:
    """Draw how inflamed, dirty and bacterial a scene of ``area_px`` pixels is, from clean to florid.

    Examples:
        >>> clutter = sample_clutter(np.random.default_rng(0), 2048 * 1536)
        >>> clutter.n_inflammatory >= 0 and clutter.n_debris > 0
        True
    """
    megapixels = area_px / 1e6
    inflammation = float(rng.choice([4.0, 20.0, 60.0, 140.0], p=[0.25, 0.35, 0.25, 0.15]))
    bacteria = float(rng.choice([0.0, 80.0, 400.0], p=[0.4, 0.35, 0.25]))
    blood = float(rng.choice([0.0, 40.0, 200.0], p=[0.7, 0.2, 0.1]))
    return Clutter(
        n_inflammatory=int(rng.poisson(inflammation * megapixels)),
        n_debris=int(rng.poisson(rng.uniform(8.0, 30.0) * megapixels)),
        n_rods=int(rng.poisson(bacteria * megapixels)),
        n_mucus=int(rng.poisson(rng.uniform(0.0, 4.0) * megapixels)),
        n_blood=int(rng.poisson(blood * megapixels)),
    )


def _reach(cell: CellMorphology) -> float:
    """How far a cell's nuclei reach from the annotated one, px."""
    if cell.n_nuclei == 1:
        return cell.nucleus_radius
    return cell.nucleus_radius * (1.05 + 2.3 * (1.0 + 0.9 * (cell.n_nuclei - 2)))


@dataclass
class _Placement:
    cell: CellMorphology
    x: float
    y: float
    inside: bool


def _far_enough(
    x: float, y: float, reach: float, placed: list[_Placement], cell_radius: float, strict: bool, keep_clear: float
) -> bool:
    for other in placed:
        distance = float(np.hypot(x - other.x, y - other.y))
        needed = max(MIN_NUCLEUS_GAP, reach + _reach(other.cell) + 6.0)
        if keep_clear > 0 and other is placed[0]:
            needed = max(needed, keep_clear)
        if strict:
            needed = max(needed, 0.5 * (cell_radius + other.cell.cell_radius))
        if distance < needed:
            return False
    return True


def _place(
    rng: np.random.Generator,
    cells: Sequence[CellMorphology],
    width: int,
    height: int,
    placed: list[_Placement],
    *,
    where: Literal["inside", "optional", "outside"],
    keep_clear: float,
) -> None:
    """Place cells by rejection sampling: ``inside`` must all fit, ``optional`` and ``outside`` ones only if room.

    The first half of the tries also keeps cytoplasm from piling up (nuclei at least half the two cells' radii
    apart); the rest only keeps nuclei apart.
    """
    for cell in cells:
        reach = _reach(cell)
        margin = min(cell.extent, 160.0)
        for attempt in range(_PLACEMENT_TRIES):
            if where == "outside":
                x = rng.uniform(-margin, width + margin)
                y = rng.uniform(-margin, height + margin)
                pad = cell.nucleus_radius + 2.0
                if -pad < x < width + pad and -pad < y < height + pad:
                    continue
            else:
                pad = cell.nucleus_radius + 3.0
                x = rng.uniform(pad, max(width - pad, pad + 1e-3))
                y = rng.uniform(pad, max(height - pad, pad + 1e-3))
            strict = attempt < _PLACEMENT_TRIES // 2
            if _far_enough(x, y, reach, placed, cell.cell_radius, strict, keep_clear):
                placed.append(_Placement(cell, float(x), float(y), where != "outside"))
                break
        else:
            if where == "inside":
                raise ValueError(
                    f"cannot place {len(cells)} cells in a {width}x{height} px scene without two nuclei closer "
                    f"than {MIN_NUCLEUS_GAP:.0f} px; ask for fewer cells or a larger scene"
                )


def _cells(rng: np.random.Generator, counts: Mapping[str, int]) -> list[CellMorphology]:
    for label, count in counts.items():
        if label not in BETHESDA_CLASSES:
            raise ValueError(f"unknown Bethesda class {label!r}; expected one of {', '.join(BETHESDA_CLASSES)}")
        if not isinstance(count, int | np.integer) or count < 0:
            raise ValueError(f"the number of {label} cells must be a whole number >= 0, not {count!r}")
    return [sample_morphology(rng, label) for label in BETHESDA_CLASSES for _ in range(int(counts.get(label, 0)))]


def _clear_of(points: np.ndarray, nuclei: np.ndarray, margin: float) -> np.ndarray:
    """Which of ``points`` (N, 2) lie at least radius + ``margin`` from every nucleus (K, 3)."""
    if len(nuclei) == 0 or len(points) == 0:
        return np.ones(len(points), dtype=bool)
    distance = np.hypot(points[:, None, 0] - nuclei[None, :, 0], points[:, None, 1] - nuclei[None, :, 1])
    return np.all(distance >= nuclei[None, :, 2] + margin, axis=1)


def _scatter(
    rng: np.random.Generator, count: int, width: int, height: int, clustered: float, spread: float
) -> np.ndarray:
    """``count`` points, a fraction ``clustered`` of them in loose clumps of ``spread`` px, the rest uniform."""
    n_clustered = round(count * clustered)
    uniform = rng.uniform((0.0, 0.0), (width, height), (count - n_clustered, 2))
    n_clusters = max(1, n_clustered // 12)
    centres = rng.uniform((0.0, 0.0), (width, height), (n_clusters, 2))
    members = centres[rng.integers(0, n_clusters, n_clustered)] + rng.normal(0.0, spread, (n_clustered, 2))
    return np.concatenate([uniform, members]) if n_clustered else uniform


def _inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)


def compose_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    composition: Mapping[str, int],
    planted: Sequence[tuple[str, float, float]] = (),
    optional: Mapping[str, int] | None = None,
    n_outside: int = 0,
    clutter: Clutter | None = None,
    keep_clear: float = 0.0,
    stains: StainSet | None = None,
    look: FieldLook | None = None,
) -> Scene:
    """Place, draw and develop one scene.

    Args:
        rng: the scene's random stream.
        width: image width, px.
        height: image height, px.
        composition: how many squamous cells of each class to place at random, nuclei inside the image.
        planted: cells whose annotated nucleus must sit exactly at ``(label, x, y)`` (a crop's centre cell).
        optional: like ``composition``, but a cell that does not fit is left out instead of raising.
        n_outside: NILM cells whose nucleus lies just outside the image, so only part of their cytoplasm shows.
        clutter: inflammatory cells, debris, bacteria and mucus; ``None`` draws a typical amount.
        keep_clear: other nuclei keep at least this far from the first planted cell's nucleus, px.
        stains: the slide's dye colours; ``None`` draws them.
        look: the field's lighting and focus; ``None`` draws them.

    Raises:
        ValueError: an unknown class or a negative count in ``composition``, or more cells than fit.

    Examples:
        >>> scene = compose_scene(np.random.default_rng(0), 300, 200, composition={"HSIL": 2})
        >>> scene.rgb.shape, [cell.label for cell in scene.cells]
        ((200, 300, 3), ['HSIL', 'HSIL'])
    """
    required = _cells(rng, composition)
    extra = _cells(rng, optional or {})
    stains = stains if stains is not None else sample_stains(rng)
    look = look if look is not None else sample_look(rng)
    clutter = clutter if clutter is not None else sample_clutter(rng, width * height)

    placed = [_Placement(sample_morphology(rng, label), float(x), float(y), True) for label, x, y in planted]
    keep_clear = keep_clear if placed else 0.0
    _place(rng, required, width, height, placed, where="inside", keep_clear=keep_clear)
    _place(rng, extra, width, height, placed, where="optional", keep_clear=keep_clear)
    outside = [sample_morphology(rng, "NILM") for _ in range(n_outside)]
    _place(rng, outside, width, height, placed, where="outside", keep_clear=keep_clear)

    canvas = new_canvas(height, width)
    drawn: list[tuple[_Placement, DrawnCell]] = []
    for placement in placed:
        drawn.append((placement, draw_squamous_cell(canvas, rng, placement.cell, stains, placement.x, placement.y)))
        if placement.cell.diathesis:
            radius = placement.cell.cell_radius * float(rng.uniform(1.0, 1.8))
            draw_diathesis(canvas, rng, stains, placement.x, placement.y, radius)

    nuclei = (
        np.concatenate([np.column_stack([d.nuclei, d.nucleus_radii]) for _, d in drawn]) if drawn else np.zeros((0, 3))
    )
    inflammatory, debris = _draw_clutter(rng, canvas, stains, clutter, nuclei)

    edges = np.concatenate([d.outline for _, d in drawn]) if drawn else np.zeros((0, 2))
    return Scene(
        rgb=develop(rng, canvas, look),
        cells=[
            TruthCell(p.x, p.y, p.cell.label, "squamous", float(p.cell.nucleus_radius)) for p, _ in drawn if p.inside
        ],
        others=inflammatory,
        nuclei=nuclei,
        edges=edges[_inside(edges, width, height)],
        debris=debris,
    )


def _draw_clutter(
    rng: np.random.Generator, canvas: np.ndarray, stains: StainSet, clutter: Clutter, nuclei: np.ndarray
) -> tuple[list[TruthCell], np.ndarray]:
    """Draw inflammatory cells, debris, mucus and rods, keeping the first two off squamous nuclei.

    Returns the inflammatory cells inside the canvas and the debris centres.
    """
    height, width = canvas.shape[:2]
    inflammatory: list[TruthCell] = []
    points = _scatter(rng, clutter.n_inflammatory, width, height, clustered=0.6, spread=float(rng.uniform(15, 45)))
    points = points[_clear_of(points, nuclei, 10.0)]
    for x, y in points:
        if rng.random() < 0.85:
            radius = draw_neutrophil(canvas, rng, stains, float(x), float(y))
        else:
            radius = draw_lymphocyte(canvas, rng, stains, float(x), float(y))
        if 0 <= x < width and 0 <= y < height:
            inflammatory.append(TruthCell(float(x), float(y), "NILM", "inflammatory", float(radius)))

    debris = rng.uniform((0.0, 0.0), (width, height), (clutter.n_debris, 2))
    debris = debris[_clear_of(debris, nuclei, 30.0)]
    for x, y in debris:
        if rng.random() < 0.35:
            draw_granules(canvas, rng, stains, x, y, spread=float(rng.uniform(6.0, 22.0)), count=0, fragment=True)
        else:
            count = int(rng.integers(4, 22))
            draw_granules(canvas, rng, stains, x, y, spread=float(rng.uniform(3.0, 12.0)), count=count)
    for x, y in rng.uniform((0.0, 0.0), (width, height), (clutter.n_mucus, 2)):
        draw_mucus(canvas, rng, stains, float(x), float(y))
    draw_rods(canvas, rng, stains, _scatter(rng, clutter.n_rods, width, height, clustered=0.6, spread=40.0))
    draw_blood(canvas, rng, stains, _scatter(rng, clutter.n_blood, width, height, clustered=0.7, spread=30.0))
    return inflammatory, debris
