"""Papanicolaou stain colours as optical-density vectors, and their slide-to-slide variation.

Light passing through a stained cell is attenuated per channel (Beer-Lambert): ``I = I0 * exp(-OD)``, and the
optical density (OD) of stacked objects adds. Each dye is therefore one OD vector per unit of density, and an
object is ``density(x, y) * vector``. Working in OD, not RGB, is what makes overlapping cells darken the way
they do under a microscope instead of painting over each other.

The base vectors were tuned by eye against real Pap smear fields: haematoxylin absorbs red and green (blue-purple
nuclei), eosin absorbs green and blue (pink cytoplasm of superficial cells), light green SF absorbs red
(blue-green cyanophilic cytoplasm), orange G absorbs blue (orange keratinised cytoplasm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLOOD",
    "EOSIN",
    "HAEMATOXYLIN",
    "LIGHT_GREEN",
    "ORANGE_G",
    "StainSet",
    "sample_stains",
]

HAEMATOXYLIN: tuple[float, float, float] = (0.60, 0.72, 0.30)
"""Nuclear stain: blue-purple."""

EOSIN: tuple[float, float, float] = (0.08, 0.42, 0.48)
"""Eosinophilic cytoplasm (superficial cells): pink-orange."""

LIGHT_GREEN: tuple[float, float, float] = (0.50, 0.30, 0.24)
"""Cyanophilic cytoplasm (intermediate, parabasal, metaplastic cells): blue-green."""

ORANGE_G: tuple[float, float, float] = (0.05, 0.42, 0.95)
"""Keratin: orange cytoplasm of keratinised (often malignant) cells."""

BLOOD: tuple[float, float, float] = (0.12, 0.95, 0.80)
"""Red blood cells and their lysed remnants."""


@dataclass(frozen=True)
class StainSet:
    """The dye colours of one slide: the base vectors scaled and shifted a little, as staining batches differ.

    Attributes:
        haematoxylin: nuclear OD vector.
        eosin: eosinophilic cytoplasm OD vector.
        light_green: cyanophilic cytoplasm OD vector.
        orange_g: keratin OD vector.
        blood: red blood cell OD vector.
    """

    haematoxylin: np.ndarray
    eosin: np.ndarray
    light_green: np.ndarray
    orange_g: np.ndarray
    blood: np.ndarray

    def cytoplasm(self, eosin: float, light_green: float, orange_g: float) -> np.ndarray:
        """A cytoplasm colour mixed from the three cytoplasmic dyes (weights need not sum to one)."""
        return (eosin * self.eosin + light_green * self.light_green + orange_g * self.orange_g).astype(np.float32)


def _jitter(rng: np.random.Generator, vector: tuple[float, float, float], strength: float, hue: float) -> np.ndarray:
    base = np.asarray(vector, dtype=np.float32)
    scaled = base * np.float32(strength) * (1.0 + hue * rng.standard_normal(3)).astype(np.float32)
    return np.clip(scaled, 0.01, None).astype(np.float32)


def sample_stains(rng: np.random.Generator, variation: float = 1.0) -> StainSet:
    """Draw the stain colours of one slide.

    Staining intensity varies between slides by roughly ±15 % and the hue a little; ``variation`` scales that
    spread (0 gives the base vectors exactly), so a field's colours differ from the next field's the way real
    slides do.

    Examples:
        >>> stains = sample_stains(np.random.default_rng(0), variation=0.0)
        >>> stains.haematoxylin.tolist() == list(np.float32(HAEMATOXYLIN))
        True
    """

    def strength(spread: float) -> float:
        return float(1.0 + variation * spread * rng.uniform(-1.0, 1.0))

    hue = 0.06 * variation
    return StainSet(
        haematoxylin=_jitter(rng, HAEMATOXYLIN, strength(0.15), hue),
        eosin=_jitter(rng, EOSIN, strength(0.2), hue),
        light_green=_jitter(rng, LIGHT_GREEN, strength(0.2), hue),
        orange_g=_jitter(rng, ORANGE_G, strength(0.15), hue),
        blood=_jitter(rng, BLOOD, strength(0.15), hue),
    )
