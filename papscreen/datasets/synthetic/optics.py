"""Turn an optical-density canvas into the RGB image a slide scanner would record.

Beer-Lambert gives the transmitted light, ``exp(-OD)``; then the microscope adds what makes two fields of the
same slide differ: the glass and mounting medium's faint tint, uneven illumination (vignetting and a slow
gradient), a little defocus, white balance, and sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["FieldLook", "develop", "sample_look"]


@dataclass(frozen=True)
class FieldLook:
    """How one field is lit and focused.

    Attributes:
        background_od: OD of clear glass and mounting medium per channel (a faint tint).
        haze: amplitude of slow background OD variation (uneven mounting medium).
        gain: white balance, per channel multiplier of the lamp's 255.
        vignette: relative darkening at the corners.
        gradient: relative illumination change across the field, and its direction (radians).
        blur_sigma: defocus of the whole field, px.
        noise_sigma: sensor noise, grey levels.
    """

    background_od: tuple[float, float, float]
    haze: float
    gain: tuple[float, float, float]
    vignette: float
    gradient: tuple[float, float]
    blur_sigma: float
    noise_sigma: float


def sample_look(rng: np.random.Generator) -> FieldLook:
    """Draw the lighting and focus of one field.

    Examples:
        >>> look = sample_look(np.random.default_rng(0))
        >>> 0.0 <= look.blur_sigma < 1.5
        True
    """
    tint = rng.uniform(0.015, 0.05) + rng.normal(0.0, 0.008, 3)
    return FieldLook(
        background_od=tuple(float(v) for v in np.clip(tint, 0.0, None)),
        haze=float(rng.uniform(0.003, 0.012)),
        gain=tuple(float(v) for v in np.clip(1.0 + rng.normal(0.0, 0.015, 3), 0.9, 1.05)),
        vignette=float(rng.uniform(0.02, 0.1)),
        gradient=(float(rng.uniform(0.0, 0.06)), float(rng.uniform(0.0, 2.0 * np.pi))),
        blur_sigma=float(rng.choice([rng.uniform(0.3, 0.7), rng.uniform(0.7, 1.3)], p=[0.75, 0.25])),
        noise_sigma=float(rng.uniform(1.0, 2.5)),
    )


def _illumination(height: int, width: int, look: FieldLook) -> np.ndarray:
    """Relative lamp intensity over the field, HxW float32: vignetting times a linear gradient."""
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    vignette = np.outer(1.0 - look.vignette * ys**2, 1.0 - look.vignette * xs**2)
    strength, direction = look.gradient
    ramp = np.float32(strength / 2.0) * (
        np.float32(np.cos(direction)) * xs[None, :] + np.float32(np.sin(direction)) * ys[:, None]
    )
    return (vignette * (1.0 + ramp)).astype(np.float32)


def develop(rng: np.random.Generator, canvas: np.ndarray, look: FieldLook) -> np.ndarray:
    """The RGB uint8 image of an optical-density canvas under ``look`` (the canvas is modified in place).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> canvas = np.zeros((8, 8, 3), np.float32)
        >>> canvas[4, 4] = 3.0
        >>> rgb = develop(rng, canvas, sample_look(rng))
        >>> rgb.dtype.name, bool(rgb[4, 4].mean() < rgb[0, 0].mean())
        ('uint8', True)
    """
    height, width = canvas.shape[:2]
    # Uneven mounting medium: mostly a change of thickness (same tint), a little of colour.
    coarse = rng.standard_normal((height // 160 + 3, width // 160 + 3, 3), dtype=np.float32)
    coarse[..., 1:] = 0.8 * coarse[..., :1] + 0.2 * coarse[..., 1:]
    coarse[..., 0] = 0.8 * coarse[..., 0] + 0.2 * rng.standard_normal(coarse.shape[:2], dtype=np.float32)
    haze = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) * np.float32(look.haze)
    canvas += haze
    canvas += np.asarray(look.background_od, dtype=np.float32)
    np.clip(canvas, 0.0, None, out=canvas)
    np.negative(canvas, out=canvas)
    transmitted = np.exp(canvas, out=canvas)
    if look.blur_sigma > 0:
        transmitted = cv2.GaussianBlur(transmitted, (0, 0), look.blur_sigma)
    transmitted *= _illumination(height, width, look)[..., None]
    transmitted *= np.float32(255.0) * np.asarray(look.gain, np.float32)
    noise = rng.standard_normal(transmitted.shape, dtype=np.float32)
    noise *= np.float32(look.noise_sigma)
    transmitted += noise
    transmitted += np.float32(0.5)  # round half up on the truncating cast below
    np.clip(transmitted, 0.0, 255.0, out=transmitted)
    return transmitted.astype(np.uint8)
