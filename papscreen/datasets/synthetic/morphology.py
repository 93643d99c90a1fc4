"""What a squamous cell of each Bethesda class looks like, as distributions of measurable traits.

Sizes are in pixels of a full-resolution field (about 2 px per micrometre, like a 40x liquid-based cytology
scan). Each class mixes a few *variants* so that every single trait overlaps with a neighbouring class:

* NILM: superficial cells (pyknotic, dense nucleus, pink), intermediate cells (vesicular nucleus, blue-green)
  and a few parabasal/metaplastic cells (small, dense cytoplasm, larger nucleus: the classic HSIL mimic).
* LSIL: koilocytes: large cells, a nucleus about three times the normal area, mildly irregular, a clear
  perinuclear halo with a condensed rim, sometimes two nuclei.
* HSIL: parabasal-size cells with a high nuclear-to-cytoplasmic ratio, hyperchromatic coarse chromatin and an
  irregular contour.
* SCC: pleomorphic (spindle, tadpole, bizarre) cells, often orange keratinised cytoplasm, very dark irregular
  nuclei of any size, sometimes several nuclei, with tumour diathesis around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from papscreen.bethesda import BETHESDA_CLASSES

__all__ = ["CellMorphology", "CellShape", "sample_morphology"]

CellShape = Literal["polygon", "oval", "spindle", "tadpole"]


@dataclass(frozen=True)
class CellMorphology:
    """The traits of one squamous cell, drawn by :func:`sample_morphology` and rendered by ``render``.

    Attributes:
        label: Bethesda class.
        variant: the kind of cell within its class (for example ``"superficial"`` or ``"koilocyte"``).
        shape: outline family of the cytoplasm.
        cell_radius: equivalent radius of the cytoplasm, px (for spindles and tadpoles, half the length).
        cell_aspect: minor/major axis ratio of the cytoplasm.
        cell_angle: orientation of the cell, radians.
        cytoplasm_mix: weights of (eosin, light green, orange G) in the cytoplasm colour.
        cytoplasm_density: optical density scale of the cytoplasm (thin superficial cells are pale).
        nucleus_offset: where the nucleus sits relative to the cell centre, as a fraction of ``cell_radius``.
        nucleus_radius: equivalent radius of the (first) nucleus, px.
        nucleus_aspect: minor/major axis ratio of the nucleus.
        nucleus_irregularity: relative wobble of the nuclear contour.
        nucleus_density: haematoxylin density of the nucleus (hyperchromasia).
        chromatin: relative amplitude of the chromatin texture (0 smooth, 0.5 coarse and clumped).
        n_nuclei: number of nuclei (2 for binucleate koilocytes, more for multinucleated tumour cells).
        halo: radius of the clear perinuclear halo as a multiple of the nucleus radius (0 for none).
        diathesis: whether tumour diathesis (necrotic debris, lysed blood) surrounds the cell.
        focus_sigma: extra blur of this cell, px: cells lie at different depths of the smear.
    """

    label: str
    variant: str
    shape: CellShape
    cell_radius: float
    cell_aspect: float
    cell_angle: float
    cytoplasm_mix: tuple[float, float, float]
    cytoplasm_density: float
    nucleus_offset: tuple[float, float]
    nucleus_radius: float
    nucleus_aspect: float
    nucleus_irregularity: float
    nucleus_density: float
    chromatin: float
    n_nuclei: int
    halo: float
    diathesis: bool
    focus_sigma: float

    @property
    def extent(self) -> float:
        """Upper bound of the distance from the nucleus to any part of the cell, px (for bounding boxes)."""
        stretch = 1.0 / np.sqrt(self.cell_aspect) if self.shape in {"polygon", "oval"} else 1.0
        return float(self.cell_radius * stretch * 1.7 + self.nucleus_radius * (2 + self.n_nuclei) + 8.0)


def _normal(rng: np.random.Generator, mean: float, sd: float, low: float, high: float) -> float:
    return float(np.clip(rng.normal(mean, sd), low, high))


def _stain_mix(rng: np.random.Generator, eosin: float, light_green: float, orange_g: float) -> tuple[float, ...]:
    """Pick a dominant cytoplasmic dye with the given probabilities, with a little of the others mixed in."""
    weights = np.array([eosin, light_green, orange_g], dtype=float)
    dominant = int(rng.choice(3, p=weights / weights.sum()))
    mix = rng.uniform(0.0, 0.25, 3)
    mix[dominant] = 1.0
    return tuple(float(v) for v in mix)


def _focus(rng: np.random.Generator) -> float:
    return float(rng.choice([0.0, 0.0, 0.0, rng.uniform(0.4, 1.0), rng.uniform(1.0, 1.8)]))


def _nilm(rng: np.random.Generator) -> CellMorphology:
    variant = str(rng.choice(["superficial", "intermediate", "parabasal"], p=[0.42, 0.46, 0.12]))
    if variant == "parabasal":
        cell_radius = rng.uniform(30.0, 48.0)
        nucleus_radius = _normal(rng, 10.0, 1.4, 7.0, 13.5)
        return CellMorphology(
            label="NILM",
            variant=variant,
            shape="oval",
            cell_radius=float(cell_radius),
            cell_aspect=float(rng.uniform(0.7, 1.0)),
            cell_angle=float(rng.uniform(0, np.pi)),
            cytoplasm_mix=_stain_mix(rng, 0.2, 0.8, 0.0),
            cytoplasm_density=float(rng.uniform(0.45, 0.8)),
            nucleus_offset=tuple(rng.uniform(-0.15, 0.15, 2).tolist()),
            nucleus_radius=nucleus_radius,
            nucleus_aspect=float(rng.uniform(0.8, 1.0)),
            nucleus_irregularity=float(rng.uniform(0.02, 0.05)),
            nucleus_density=_normal(rng, 1.15, 0.18, 0.7, 1.7),
            chromatin=float(rng.uniform(0.08, 0.18)),
            n_nuclei=1,
            halo=0.0,
            diathesis=False,
            focus_sigma=_focus(rng),
        )
    superficial = variant == "superficial"
    return CellMorphology(
        label="NILM",
        variant=variant,
        shape="polygon",
        cell_radius=float(rng.uniform(62.0, 125.0)),
        cell_aspect=float(rng.uniform(0.6, 1.0)),
        cell_angle=float(rng.uniform(0, np.pi)),
        cytoplasm_mix=_stain_mix(rng, 0.75, 0.25, 0.05) if superficial else _stain_mix(rng, 0.2, 0.8, 0.0),
        cytoplasm_density=float(rng.uniform(0.18, 0.4)),
        nucleus_offset=tuple(rng.uniform(-0.3, 0.3, 2).tolist()),
        nucleus_radius=_normal(rng, 6.3, 0.7, 5.0, 8.5) if superficial else _normal(rng, 8.0, 1.0, 6.0, 11.5),
        nucleus_aspect=float(rng.uniform(0.8, 1.0)),
        nucleus_irregularity=float(rng.uniform(0.01, 0.04)),
        nucleus_density=_normal(rng, 1.75, 0.25, 1.1, 2.4) if superficial else _normal(rng, 1.05, 0.2, 0.65, 1.6),
        chromatin=float(rng.uniform(0.02, 0.08)) if superficial else float(rng.uniform(0.08, 0.2)),
        n_nuclei=1,
        halo=0.0,
        diathesis=False,
        focus_sigma=_focus(rng),
    )


def _lsil(rng: np.random.Generator) -> CellMorphology:
    nucleus_radius = _normal(rng, 16.5, 2.6, 11.0, 23.0)
    return CellMorphology(
        label="LSIL",
        variant="koilocyte" if rng.random() < 0.8 else "dyskeratocyte",
        shape="polygon",
        cell_radius=float(rng.uniform(58.0, 112.0)),
        cell_aspect=float(rng.uniform(0.6, 1.0)),
        cell_angle=float(rng.uniform(0, np.pi)),
        cytoplasm_mix=_stain_mix(rng, 0.4, 0.5, 0.1),
        cytoplasm_density=float(rng.uniform(0.25, 0.5)),
        nucleus_offset=tuple(rng.uniform(-0.2, 0.2, 2).tolist()),
        nucleus_radius=nucleus_radius,
        nucleus_aspect=float(rng.uniform(0.7, 1.0)),
        nucleus_irregularity=float(rng.uniform(0.04, 0.09)),
        nucleus_density=_normal(rng, 1.2, 0.22, 0.75, 1.8),
        chromatin=float(rng.uniform(0.12, 0.25)),
        n_nuclei=2 if rng.random() < 0.3 else 1,
        halo=float(rng.uniform(1.7, 2.7)) if rng.random() < 0.8 else 0.0,
        diathesis=False,
        focus_sigma=_focus(rng),
    )


def _hsil(rng: np.random.Generator) -> CellMorphology:
    nucleus_radius = _normal(rng, 15.0, 2.6, 10.0, 21.0)
    # High N:C: the cytoplasm is a narrow rim, from 1.3 to 2.6 nucleus radii.
    cell_radius = float(np.clip(nucleus_radius * rng.uniform(1.35, 2.6), 28.0, 56.0))
    return CellMorphology(
        label="HSIL",
        variant="dysplastic",
        shape="oval" if rng.random() < 0.7 else "polygon",
        cell_radius=cell_radius,
        cell_aspect=float(rng.uniform(0.65, 1.0)),
        cell_angle=float(rng.uniform(0, np.pi)),
        cytoplasm_mix=_stain_mix(rng, 0.25, 0.75, 0.05),
        cytoplasm_density=float(rng.uniform(0.35, 0.7)),
        nucleus_offset=tuple(rng.uniform(-0.15, 0.15, 2).tolist()),
        nucleus_radius=nucleus_radius,
        nucleus_aspect=float(rng.uniform(0.65, 0.95)),
        nucleus_irregularity=float(rng.uniform(0.07, 0.15)),
        nucleus_density=_normal(rng, 1.55, 0.25, 0.95, 2.3),
        chromatin=float(rng.uniform(0.25, 0.45)),
        n_nuclei=2 if rng.random() < 0.08 else 1,
        halo=0.0,
        diathesis=False,
        focus_sigma=_focus(rng),
    )


def _scc(rng: np.random.Generator) -> CellMorphology:
    variant = str(rng.choice(["spindle", "tadpole", "pleomorphic", "round"], p=[0.32, 0.23, 0.3, 0.15]))
    keratinised = rng.random() < 0.6
    nucleus_radius = float(np.clip(rng.lognormal(np.log(14.0), 0.35), 7.0, 30.0))
    if variant == "spindle":
        shape, cell_radius, cell_aspect = "spindle", rng.uniform(55.0, 130.0), rng.uniform(0.18, 0.4)
        nucleus_aspect = rng.uniform(0.35, 0.7)
    elif variant == "tadpole":
        shape, cell_radius, cell_aspect = "tadpole", rng.uniform(60.0, 130.0), rng.uniform(0.25, 0.45)
        nucleus_aspect = rng.uniform(0.55, 0.9)
    elif variant == "pleomorphic":
        shape, cell_radius, cell_aspect = "polygon", rng.uniform(40.0, 95.0), rng.uniform(0.4, 0.8)
        nucleus_aspect = rng.uniform(0.5, 0.9)
    else:
        shape, cell_radius, cell_aspect = "oval", rng.uniform(32.0, 60.0), rng.uniform(0.7, 1.0)
        nucleus_aspect = rng.uniform(0.65, 0.95)
    # The nucleus must fit across the cell's narrow axis.
    narrow = cell_radius * cell_aspect if shape in {"spindle", "tadpole"} else cell_radius * np.sqrt(cell_aspect)
    nucleus_radius = float(min(nucleus_radius, 0.8 * narrow / np.sqrt(nucleus_aspect) + 2.0))
    return CellMorphology(
        label="SCC",
        variant=variant,
        shape=shape,
        cell_radius=float(cell_radius),
        cell_aspect=float(cell_aspect),
        cell_angle=float(rng.uniform(0, 2 * np.pi)),
        cytoplasm_mix=_stain_mix(rng, 0.15, 0.25, 0.6) if keratinised else _stain_mix(rng, 0.25, 0.7, 0.05),
        cytoplasm_density=float(rng.uniform(0.5, 0.95)) if keratinised else float(rng.uniform(0.35, 0.65)),
        nucleus_offset=(0.0, 0.0),
        nucleus_radius=max(nucleus_radius, 6.0),
        nucleus_aspect=float(nucleus_aspect),
        nucleus_irregularity=float(rng.uniform(0.1, 0.2)),
        nucleus_density=_normal(rng, 1.9, 0.32, 1.1, 2.8),
        chromatin=float(rng.uniform(0.15, 0.4)),
        n_nuclei=int(rng.choice([1, 2, 3], p=[0.75, 0.17, 0.08])),
        halo=0.0,
        diathesis=bool(rng.random() < 0.7),
        focus_sigma=_focus(rng),
    )


_SAMPLERS = {"NILM": _nilm, "LSIL": _lsil, "HSIL": _hsil, "SCC": _scc}


def sample_morphology(rng: np.random.Generator, label: str) -> CellMorphology:
    """Draw the traits of one cell of Bethesda class ``label``.

    Raises:
        ValueError: ``label`` is not one of ``BETHESDA_CLASSES``.

    Examples:
        >>> cell = sample_morphology(np.random.default_rng(0), "LSIL")
        >>> cell.label, 11.0 <= cell.nucleus_radius <= 23.0
        ('LSIL', True)
    """
    if label not in BETHESDA_CLASSES:
        raise ValueError(f"unknown Bethesda class {label!r}; expected one of {', '.join(BETHESDA_CLASSES)}")
    return _SAMPLERS[label](rng)
