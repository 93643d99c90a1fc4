"""Draw one object at a time into an optical-density canvas.

Every ``draw_*`` function works on the object's own small bounding box (clipped to the canvas) and adds its
absorbance there, so the cost of a field grows with the number of objects, not with the canvas area, and
overlapping objects darken each other as stacked cells do. Coordinates are canvas pixels with pixel centres at
integers; objects may lie partly, or wholly, outside the canvas.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from papscreen.datasets.synthetic.morphology import CellMorphology
from papscreen.datasets.synthetic.shapes import (
    disc_union,
    fill_mask,
    polygon_outline,
    radial_outline,
    smooth_noise,
    spindle_outline,
    tadpole_outline,
)
from papscreen.datasets.synthetic.stains import StainSet

__all__ = [
    "DrawnCell",
    "draw_blood",
    "draw_diathesis",
    "draw_granules",
    "draw_lymphocyte",
    "draw_mucus",
    "draw_neutrophil",
    "draw_rods",
    "draw_squamous_cell",
    "new_canvas",
]

_SHIFT = 4
_FIXED = 1 << _SHIFT


def new_canvas(height: int, width: int) -> np.ndarray:
    """An empty (clear glass) optical-density canvas, float32 HxWx3.

    Examples:
        >>> new_canvas(4, 6).shape
        (4, 6, 3)
    """
    return np.zeros((height, width, 3), dtype=np.float32)


@dataclass(frozen=True)
class DrawnCell:
    """Where a squamous cell ended up, for ground truth and patch sampling.

    Attributes:
        morphology: the traits it was drawn with.
        nuclei: ``(K, 2)`` centres of its nuclei, canvas pixels; row 0 is the annotated one.
        nucleus_radii: ``(K,)`` equivalent radii of those nuclei.
        outline: ``(N, 2)`` points on the cytoplasm's edge, canvas pixels.
    """

    morphology: CellMorphology
    nuclei: np.ndarray
    nucleus_radii: np.ndarray
    outline: np.ndarray


def _box(canvas: np.ndarray, points: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    """Integer bounding box (x0, y0, x1, y1) of ``points`` plus ``margin``, clipped; None if off-canvas."""
    height, width = canvas.shape[:2]
    x0 = max(int(np.floor(points[:, 0].min() - margin)), 0)
    y0 = max(int(np.floor(points[:, 1].min() - margin)), 0)
    x1 = min(int(np.ceil(points[:, 0].max() + margin)) + 1, width)
    y1 = min(int(np.ceil(points[:, 1].max() + margin)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _add(canvas: np.ndarray, box: tuple[int, int, int, int], local: np.ndarray) -> None:
    x0, y0, x1, y1 = box
    canvas[y0:y1, x0:x1] += local


def _paint(density: np.ndarray, stain: np.ndarray) -> np.ndarray:
    return density[..., None] * stain[None, None, :]


def _cell_outline(rng: np.random.Generator, cell: CellMorphology, radius: float) -> np.ndarray:
    """The cytoplasm's outline around the cell centre (the head's centre for a tadpole)."""
    if cell.shape == "polygon":
        return polygon_outline(
            rng,
            radius,
            n_vertices=int(rng.integers(5, 9)),
            aspect=cell.cell_aspect,
            angle=cell.cell_angle,
            jitter=0.14,
            rounding=1,
        )
    if cell.shape == "oval":
        return radial_outline(
            rng, radius, aspect=cell.cell_aspect, angle=cell.cell_angle, irregularity=0.06, n_points=64
        )
    if cell.shape == "spindle":
        width = max(2.0 * radius * cell.cell_aspect, 2.6 * cell.nucleus_radius)
        return spindle_outline(2.0 * radius, width, cell.cell_angle, bend=float(rng.uniform(-0.35, 0.35)))
    head = max(radius * cell.cell_aspect, cell.nucleus_radius * 1.5)
    return tadpole_outline(head, 2.0 * radius - head, cell.cell_angle)


def _nucleus_positions(rng: np.random.Generator, cell: CellMorphology, x: float, y: float) -> np.ndarray:
    """Centres of all nuclei: the annotated one at (x, y), extra ones beside it (along the axis if elongated)."""
    centres = [(x, y)]
    elongated = cell.shape in {"spindle", "tadpole"}
    for k in range(1, cell.n_nuclei):
        if elongated:
            direction = cell.cell_angle + (0.0 if k % 2 else np.pi) + rng.uniform(-0.3, 0.3)
            if cell.shape == "tadpole":
                direction = cell.cell_angle + np.pi + rng.uniform(-0.25, 0.25)  # down the tail, towards the body
        else:
            direction = rng.uniform(0.0, 2.0 * np.pi)
        distance = cell.nucleus_radius * rng.uniform(1.75, 2.3) * (1 + (k - 1) * 0.9)
        centres.append((x + distance * np.cos(direction), y + distance * np.sin(direction)))
    return np.asarray(centres, dtype=np.float64)


def _fold(rng: np.random.Generator, height: int, width: int, outline: np.ndarray) -> np.ndarray:
    """A thin dark line across a cell: folded or wrinkled cytoplasm, common in thin superficial cells."""
    layer = np.zeros((height, width), dtype=np.uint8)
    a, b = outline[rng.integers(len(outline))], outline[rng.integers(len(outline))]
    middle = 0.5 * (a + b) + rng.normal(0.0, 6.0, 2)
    points = np.round(np.stack([a, middle, b]) * _FIXED).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(layer, [points], False, 255, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA, shift=_SHIFT)
    return cv2.GaussianBlur(layer.astype(np.float32) * np.float32(1 / 255), (0, 0), 1.2)


def draw_squamous_cell(
    canvas: np.ndarray, rng: np.random.Generator, cell: CellMorphology, stains: StainSet, x: float, y: float
) -> DrawnCell:
    """Add one squamous cell whose (first) nucleus is centred at ``(x, y)``.

    The cytoplasm is a translucent sheet (denser at its rim, sometimes folded); an LSIL halo clears it around
    the nucleus and condenses it into a rim; nuclei get a textured chromatin and a slightly darker membrane.
    Returns where the nuclei and the cell's edge ended up.

    Examples:
        >>> from papscreen.datasets.synthetic.morphology import sample_morphology
        >>> from papscreen.datasets.synthetic.stains import sample_stains
        >>> rng = np.random.default_rng(0)
        >>> canvas = new_canvas(300, 300)
        >>> drawn = draw_squamous_cell(canvas, rng, sample_morphology(rng, "HSIL"), sample_stains(rng), 150.0, 150.0)
        >>> drawn.nuclei[0].tolist(), bool(canvas[150, 150].sum() > canvas[5, 5].sum())
        ([150.0, 150.0], True)
    """
    nuclei = _nucleus_positions(rng, cell, x, y)
    radii = np.array(
        [cell.nucleus_radius] + [cell.nucleus_radius * rng.uniform(0.8, 1.05) for _ in range(cell.n_nuclei - 1)]
    )
    centre_of_nuclei = nuclei.mean(axis=0)
    spread = float(np.max(np.hypot(*(nuclei - centre_of_nuclei).T)))
    cell_radius = cell.cell_radius
    if cell.shape in {"polygon", "oval"}:
        cell_radius = max(cell_radius, (spread + cell.nucleus_radius) * 1.3 / np.sqrt(cell.cell_aspect))
        offset = np.asarray(cell.nucleus_offset) * cell_radius * np.sqrt(cell.cell_aspect)
        cell_centre = centre_of_nuclei - offset
    else:
        cell_centre = np.asarray([x, y])
    outline = _cell_outline(rng, cell, cell_radius) + cell_centre
    record = DrawnCell(morphology=cell, nuclei=nuclei, nucleus_radii=radii, outline=outline)

    margin = 4.0 + 3.0 * cell.focus_sigma + float(radii.max())
    box = _box(canvas, np.concatenate([outline, nuclei]), margin)
    if box is None:
        return record
    x0, y0, x1, y1 = box
    height, width = y1 - y0, x1 - x0
    origin = np.array([x0, y0], dtype=np.float64)

    # Cytoplasm: translucent, uneven, denser at the edge where it curls.
    mask = fill_mask(outline - origin, height, width)
    texture = 1.0 + 0.16 * smooth_noise(rng, height, width, 4.0) + 0.07 * smooth_noise(rng, height, width, 1.0)
    edge = np.clip(mask - cv2.GaussianBlur(mask, (0, 0), 1.5), 0.0, None)
    cytoplasm = mask * texture + 2.0 * edge
    if cell.shape == "polygon" and rng.random() < 0.3:
        cytoplasm += 0.8 * _fold(rng, height, width, outline - origin) * mask
    if cell.halo > 0:
        halo_radius = min(cell.halo * cell.nucleus_radius + spread, 0.7 * cell_radius * np.sqrt(cell.cell_aspect))
        halo_outline = radial_outline(
            rng,
            halo_radius,
            aspect=float(rng.uniform(0.75, 1.0)),
            angle=float(rng.uniform(0, np.pi)),
            irregularity=0.12,
        )
        halo = fill_mask(halo_outline + centre_of_nuclei - origin, height, width)
        rim = np.clip(cv2.GaussianBlur(halo, (0, 0), 2.5) - halo, 0.0, None)
        clearing = float(rng.uniform(0.6, 0.92))
        cytoplasm = cytoplasm * (1.0 - clearing * halo) + float(rng.uniform(1.5, 3.5)) * rim * mask
    cytoplasm_stain = stains.cytoplasm(*cell.cytoplasm_mix)
    local = _paint(cytoplasm * np.float32(cell.cytoplasm_density), cytoplasm_stain)

    # Nuclei: chromatin texture (coarse in dysplasia), a darker membrane; each worked on in its own small box.
    nucleus = np.zeros((height, width), dtype=np.float32)
    grain = 1.0 + 1.5 * cell.chromatin
    for (nx, ny), radius in zip(nuclei - origin, radii, strict=True):
        nucleus_outline = radial_outline(
            rng,
            float(radius),
            aspect=cell.nucleus_aspect,
            angle=cell.cell_angle + float(rng.normal(0.0, 0.3)),
            irregularity=cell.nucleus_irregularity,
        )
        nucleus_outline += np.array([nx, ny])
        sub = _box(nucleus, nucleus_outline, 4.0)
        if sub is None:
            continue
        sx0, sy0, sx1, sy1 = sub
        sub_h, sub_w = sy1 - sy0, sx1 - sx0
        nucleus_mask = fill_mask(nucleus_outline - np.array([sx0, sy0]), sub_h, sub_w)
        membrane = np.clip(nucleus_mask - cv2.GaussianBlur(nucleus_mask, (0, 0), 1.5), 0.0, None)
        chromatin = 1.0 + cell.chromatin * smooth_noise(rng, sub_h, sub_w, grain)
        density = cell.nucleus_density * (nucleus_mask * np.clip(chromatin, 0.2, None) + 0.6 * membrane)
        np.maximum(nucleus[sy0:sy1, sx0:sx1], density, out=nucleus[sy0:sy1, sx0:sx1])
    haematoxylin = stains.haematoxylin * (1.0 + 0.05 * rng.standard_normal(3)).astype(np.float32)
    local += _paint(nucleus, haematoxylin)

    if cell.focus_sigma > 0:
        local = cv2.GaussianBlur(local, (0, 0), cell.focus_sigma)
    _add(canvas, box, local)
    return record


def draw_neutrophil(canvas: np.ndarray, rng: np.random.Generator, stains: StainSet, x: float, y: float) -> float:
    """Add a neutrophil: 2-5 dark nuclear lobes in a chain, in a faint cell body; returns its radius.

    Neutrophils are the main false positive of a nucleus detector: dark, nucleus-sized, but with no squamous
    cytoplasm around them.

    Examples:
        >>> from papscreen.datasets.synthetic.stains import sample_stains
        >>> rng = np.random.default_rng(0)
        >>> 4.0 < draw_neutrophil(new_canvas(40, 40), rng, sample_stains(rng), 20.0, 20.0) < 15.0
        True
    """
    n_lobes = int(rng.integers(2, 6))
    lobe_radius = float(rng.uniform(2.5, 3.6))
    heading = rng.uniform(0.0, 2.0 * np.pi)
    steps = [np.zeros(2)]
    for _ in range(n_lobes - 1):
        heading += rng.uniform(-1.6, 1.6)
        steps.append(steps[-1] + 1.1 * lobe_radius * np.array([np.cos(heading), np.sin(heading)]))
    lobes = np.asarray(steps)
    lobes -= lobes.mean(axis=0)
    body_radius = float(np.max(np.hypot(*lobes.T)) + lobe_radius + rng.uniform(2.0, 4.0))
    centre = np.array([[x, y]])
    box = _box(canvas, centre, body_radius + 3.0)
    if box is None:
        return body_radius
    origin = np.array([box[0], box[1]], dtype=np.float64)
    height, width = box[3] - box[1], box[2] - box[0]
    nucleus = disc_union(height, width, lobes + centre - origin, np.full(n_lobes, lobe_radius))
    body = disc_union(height, width, centre - origin, np.array([body_radius]))
    local = _paint(nucleus * np.float32(rng.uniform(1.4, 2.2)), stains.haematoxylin)
    local += _paint(body * np.float32(rng.uniform(0.05, 0.14)), stains.cytoplasm(0.5, 0.5, 0.0))
    _add(canvas, box, cv2.GaussianBlur(local, (0, 0), float(rng.uniform(0.4, 1.0))))
    return body_radius


def draw_lymphocyte(canvas: np.ndarray, rng: np.random.Generator, stains: StainSet, x: float, y: float) -> float:
    """Add a lymphocyte: one small, round, very dark nucleus with a thin rim of cytoplasm; returns its radius.

    Examples:
        >>> from papscreen.datasets.synthetic.stains import sample_stains
        >>> rng = np.random.default_rng(0)
        >>> 3.0 < draw_lymphocyte(new_canvas(30, 30), rng, sample_stains(rng), 15.0, 15.0) < 8.0
        True
    """
    radius = float(rng.uniform(3.4, 4.8))
    centre = np.array([[x, y]])
    box = _box(canvas, centre, radius + 5.0)
    if box is None:
        return radius + 1.5
    origin = np.array([box[0], box[1]], dtype=np.float64)
    height, width = box[3] - box[1], box[2] - box[0]
    nucleus = disc_union(height, width, centre - origin, np.array([radius]))
    body = disc_union(height, width, centre - origin + rng.normal(0.0, 0.7, 2), np.array([radius + 1.5]))
    local = _paint(nucleus * np.float32(rng.uniform(1.6, 2.3)), stains.haematoxylin)
    local += _paint(body * np.float32(rng.uniform(0.1, 0.2)), stains.light_green)
    _add(canvas, box, cv2.GaussianBlur(local, (0, 0), float(rng.uniform(0.4, 0.9))))
    return radius + 1.5


def draw_granules(
    canvas: np.ndarray,
    rng: np.random.Generator,
    stains: StainSet,
    x: float,
    y: float,
    *,
    spread: float,
    count: int,
    fragment: bool = False,
) -> None:
    """Add debris: a clump of ``count`` stained granules within ``spread`` px, or a nucleus-free cell fragment.

    Examples:
        >>> from papscreen.datasets.synthetic.stains import sample_stains
        >>> rng = np.random.default_rng(0)
        >>> canvas = new_canvas(60, 60)
        >>> draw_granules(canvas, rng, sample_stains(rng), 30.0, 30.0, spread=8.0, count=12)
        >>> bool(canvas.sum() > 0)
        True
    """
    centre = np.array([[x, y]])
    box = _box(canvas, centre, spread * (2.0 if fragment else 1.0) + 6.0)
    if box is None:
        return
    origin = np.array([box[0], box[1]], dtype=np.float64)
    height, width = box[3] - box[1], box[2] - box[0]
    if fragment:
        outline = radial_outline(
            rng, spread, aspect=float(rng.uniform(0.3, 0.9)), angle=float(rng.uniform(0, np.pi)), irregularity=0.25
        )
        mask = fill_mask(outline + centre - origin, height, width)
        mask = mask * (1.0 + 0.2 * smooth_noise(rng, height, width, 2.0))
        stain = stains.cytoplasm(*rng.uniform(0.0, 1.0, 3))
        local = _paint(mask * np.float32(rng.uniform(0.2, 0.55)), stain)
    else:
        layer = np.zeros((height, width), dtype=np.uint8)
        offsets = rng.normal(0.0, spread / 2.0, (count, 2)) + centre - origin
        radii = rng.uniform(0.7, 2.6, count)
        levels = rng.uniform(80, 255, count)
        for (gx, gy), radius, level in zip(offsets, radii, levels, strict=True):
            cv2.circle(
                layer,
                (int(gx * _FIXED), int(gy * _FIXED)),
                int(radius * _FIXED),
                int(level),
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )
        mix = rng.uniform(0.0, 1.0, 3)
        stain = 0.6 * stains.haematoxylin + 0.4 * stains.cytoplasm(mix[0], mix[1] * 0.3, mix[2])
        local = _paint(layer.astype(np.float32) * np.float32(rng.uniform(0.5, 1.2) / 255.0), stain)
    _add(canvas, box, cv2.GaussianBlur(local, (0, 0), 0.7))


def draw_mucus(canvas: np.ndarray, rng: np.random.Generator, stains: StainSet, x: float, y: float) -> None:
    """Add a strand of mucus: a long, faint, wavy blue-grey band starting near ``(x, y)``.

    Examples:
        >>> from papscreen.datasets.synthetic.stains import sample_stains
        >>> rng = np.random.default_rng(0)
        >>> canvas = new_canvas(300, 300)
        >>> draw_mucus(canvas, rng, sample_stains(rng), 150.0, 150.0)
        >>> bool(canvas.sum() > 0)
        True
    """
    n_steps = int(rng.integers(8, 25))
    heading = rng.uniform(0.0, 2.0 * np.pi)
    points = [np.array([x, y])]
    for _ in range(n_steps):
        heading += rng.normal(0.0, 0.35)
        points.append(points[-1] + 12.0 * np.array([np.cos(heading), np.sin(heading)]))
    path = np.asarray(points)
    thickness = int(rng.integers(2, 7))
    box = _box(canvas, path, thickness + 8.0)
    if box is None:
        return
    origin = np.array([box[0], box[1]], dtype=np.float64)
    height, width = box[3] - box[1], box[2] - box[0]
    layer = np.zeros((height, width), dtype=np.uint8)
    fixed = np.round((path - origin) * _FIXED).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(layer, [fixed], False, 255, thickness=thickness, lineType=cv2.LINE_AA, shift=_SHIFT)
    density = cv2.GaussianBlur(layer.astype(np.float32) * np.float32(1 / 255), (0, 0), 2.0)
    stain = 0.7 * stains.light_green + 0.3 * stains.haematoxylin
    _add(canvas, box, _paint(density * np.float32(rng.uniform(0.08, 0.22)), stain))


def draw_rods(canvas: np.ndarray, rng: np.random.Generator, stains: StainSet, centres: np.ndarray) -> None:
    """Add bacteria-like rods (lactobacilli): short thin dark dashes, one at each of ``centres`` ``(N, 2)``.

    All rods go into one layer in a single OpenCV call, restricted to their joint bounding box.

    Examples:
        >>> from papscreen.datasets.synthetic.stains import sample_stains
        >>> rng = np.random.default_rng(0)
        >>> canvas = new_canvas(50, 50)
        >>> draw_rods(canvas, rng, sample_stains(rng), np.array([[25.0, 25.0]]))
        >>> bool(canvas.sum() > 0)
        True
    """
    if len(centres) == 0:
        return
    box = _box(canvas, centres, 8.0)
    if box is None:
        return
    origin = np.array([box[0], box[1]], dtype=np.float64)
    height, width = box[3] - box[1], box[2] - box[0]
    angles = rng.uniform(0.0, np.pi, len(centres))
    half = rng.uniform(2.0, 4.5, len(centres))[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    local_centres = centres - origin
    segments = np.stack([local_centres - half, local_centres + half], axis=1)
    fixed = np.round(segments * _FIXED).astype(np.int32)
    layer = np.zeros((height, width), dtype=np.uint8)
    cv2.polylines(layer, list(fixed.reshape(-1, 2, 1, 2)), False, 255, thickness=1, lineType=cv2.LINE_AA, shift=_SHIFT)
    density = layer.astype(np.float32) * np.float32(rng.uniform(0.3, 0.6) / 255.0)
    _add(canvas, box, _paint(density, stains.haematoxylin))


def draw_diathesis(
    canvas: np.ndarray, rng: np.random.Generator, stains: StainSet, x: float, y: float, radius: float
) -> None:
    """Add tumour diathesis around ``(x, y)``: granular necrotic debris, lysed blood and a dirty proteinaceous haze.

    Examples:
        >>> from papscreen.datasets.synthetic.stains import sample_stains
        >>> rng = np.random.default_rng(0)
        >>> canvas = new_canvas(200, 200)
        >>> draw_diathesis(canvas, rng, sample_stains(rng), 100.0, 100.0, 60.0)
        >>> bool(canvas[100, 100].sum() > 0)
        True
    """
    centre = np.array([[x, y]])
    box = _box(canvas, centre, 1.5 * radius)
    if box is None:
        return
    origin = np.array([box[0], box[1]], dtype=np.float64)
    height, width = box[3] - box[1], box[2] - box[0]
    local_centre = centre[0] - origin
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    falloff = np.exp(-((xs - local_centre[0]) ** 2 + (ys - local_centre[1]) ** 2) / np.float32(radius**2))
    haze = np.clip(smooth_noise(rng, height, width, 3.0) + 0.4, 0.0, None) * falloff
    local = _paint(haze * np.float32(rng.uniform(0.08, 0.2)), 0.5 * stains.eosin + 0.3 * stains.orange_g)

    granules = np.zeros((height, width), dtype=np.uint8)
    n_granules = int(rng.uniform(0.002, 0.008) * np.pi * radius**2)
    for gx, gy in rng.normal(0.0, radius * 0.6, (n_granules, 2)) + local_centre:
        cv2.circle(
            granules,
            (int(gx * _FIXED), int(gy * _FIXED)),
            int(rng.uniform(0.5, 1.9) * _FIXED),
            int(rng.uniform(90, 255)),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    granule_stain = 0.55 * stains.haematoxylin + 0.3 * stains.orange_g + 0.2 * stains.eosin
    local += _paint(granules.astype(np.float32) * np.float32(rng.uniform(0.5, 1.0) / 255.0), granule_stain)

    _add(canvas, box, cv2.GaussianBlur(local, (0, 0), 0.8))
    draw_blood(canvas, rng, stains, rng.normal(0.0, radius * 0.8, (int(rng.integers(0, 18)), 2)) + centre, lysed=True)


def draw_blood(
    canvas: np.ndarray, rng: np.random.Generator, stains: StainSet, centres: np.ndarray, *, lysed: bool = False
) -> None:
    """Add red blood cells at ``centres`` ``(N, 2)``: small pale-centred red discs (faint ghosts if ``lysed``).

    Examples:
        >>> from papscreen.datasets.synthetic.stains import sample_stains
        >>> rng = np.random.default_rng(0)
        >>> canvas = new_canvas(30, 30)
        >>> draw_blood(canvas, rng, sample_stains(rng), np.array([[15.0, 15.0]]))
        >>> bool(canvas[15, 12].sum() > 0)
        True
    """
    if len(centres) == 0:
        return
    box = _box(canvas, centres, 7.0)
    if box is None:
        return
    origin = np.array([box[0], box[1]], dtype=np.float64)
    layer = np.zeros((box[3] - box[1], box[2] - box[0]), dtype=np.uint8)
    for bx, by in centres - origin:
        radius = rng.uniform(3.3, 4.4)
        centre = (int(bx * _FIXED), int(by * _FIXED))
        cv2.circle(layer, centre, int(radius * _FIXED), 255, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(layer, centre, int(radius * 0.45 * _FIXED), 150, -1, cv2.LINE_AA, _SHIFT)
    strength = rng.uniform(0.1, 0.3) if lysed else rng.uniform(0.35, 0.6)
    density = cv2.GaussianBlur(layer.astype(np.float32) * np.float32(strength / 255.0), (0, 0), 0.6)
    _add(canvas, box, _paint(density, stains.blood))
