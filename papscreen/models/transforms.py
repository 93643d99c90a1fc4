"""Every stage-2 transform recipe, in one place, with ``torchvision.transforms.v2``.

A recipe is built from three parts, so training, evaluation and inference can never drift apart:

* :func:`geometry_transform`: uint8 in, uint8 out: centre crop to the card's ``crop_size`` (the full-resolution
  window around the nucleus) and resize to the network's ``input_size``. Deterministic, so datasets cache its
  output once instead of decoding and resizing every epoch.
* :func:`augmentation_transform`: the original project's flips, rotation and blur, plus colour jitter and a
  stain jitter (:class:`StainJitter`) for the slide-to-slide variation of Papanicolaou staining. It runs
  *after* the resize, on the small image, so it costs little on a CPU. Output is float in [0, 1].
* :func:`robust_augmentation_transform`: the same, wider, for models that must work beyond the lab they were
  trained in: scale +-20% (another objective or scanner), stronger defocus, JPEG re-compression (quality 40-95),
  grayscale (a monochrome scanner) and stronger colour and stain jitter.
* :func:`normalise_transform`: to float in [0, 1] and per-channel normalisation.

``eval_transform`` is geometry + normalise; ``train_transform`` is geometry + augmentation + normalise. Every
recipe accepts an HxWx3 uint8 numpy crop, a 3xHxW uint8 tensor or a batch Nx3xHxW uint8 tensor (on any
device: inference runs the eval recipe on the GPU when there is one). Random choices come from torch's
generator, so ``torch.manual_seed`` makes an augmented view reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from papscreen.imaging.crops import reflect_indices

__all__ = [
    "ROBUST",
    "AugmentationStrength",
    "RandomJpeg",
    "RandomQuarterTurn",
    "StainJitter",
    "augmentation_transform",
    "dihedral_transform",
    "eval_transform",
    "geometry_transform",
    "normalise_transform",
    "robust_augmentation_transform",
    "to_uint8_batch",
    "train_transform",
]

# Ruifrok & Johnston's stain vectors (rows: haematoxylin, eosin, DAB) as optical density per RGB channel;
# the same matrix scikit-image uses for rgb2hed.
_RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64)
_RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)
_MIN_INTENSITY = 1.0 / 255.0


class StainJitter(v2.Transform):
    """Perturb the haematoxylin and eosin concentrations of an RGB image (Tellez et al., 2018).

    The image is converted to optical density, unmixed into haematoxylin, eosin and a residual channel, each
    of the first two is scaled by ``1 + U(-sigma, sigma)`` and shifted by ``U(-bias, bias)``, and the result is
    mixed back. Unlike a hue jitter, this changes the colours the way a darker or paler stain does, nucleus and
    cytoplasm independently. Works on float images in [0, 1]; uint8 images are converted and rounded back.

    Args:
        sigma: relative range of the concentration scaling.
        bias: range of the additive concentration shift (optical density units).
        p: probability of applying it at all.
        generator: a torch generator; ``None`` uses torch's global one, like every v2 transform.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> image = torch.rand(3, 8, 8)
        >>> out = StainJitter(sigma=0.1, bias=0.05)(image)
        >>> out.shape, bool((out - image).abs().max() > 0), bool(out.min() >= 0 and out.max() <= 1)
        (torch.Size([3, 8, 8]), True, True)
        >>> bool(torch.equal(StainJitter(sigma=0.0, bias=0.0)(image), image))
        True
    """

    def __init__(
        self, sigma: float = 0.05, bias: float = 0.03, p: float = 1.0, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if sigma < 0 or bias < 0 or not 0 <= p <= 1:
            raise ValueError(f"need sigma >= 0, bias >= 0 and 0 <= p <= 1; got {sigma}, {bias}, {p}")
        self.sigma = sigma
        self.bias = bias
        self.p = p
        self.generator = generator

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Draw one scaling and one shift per stain (haematoxylin, eosin) for this call."""
        draws = torch.rand(5, generator=self.generator, dtype=torch.float64)
        apply = bool(draws[0] < self.p)
        scale = torch.ones(3, dtype=torch.float64)
        shift = torch.zeros(3, dtype=torch.float64)
        scale[:2] = 1.0 + (2.0 * draws[1:3] - 1.0) * self.sigma
        shift[:2] = (2.0 * draws[3:5] - 1.0) * self.bias
        return {"apply": apply, "scale": scale, "shift": shift}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Apply the drawn perturbation to one image tensor (or a batch sharing it)."""
        if not params["apply"] or not isinstance(inpt, torch.Tensor):
            return inpt
        is_uint8 = inpt.dtype == torch.uint8
        image = inpt.float() / 255.0 if is_uint8 else inpt
        hed_from_rgb = _HED_FROM_RGB.to(image.device, torch.float32)
        rgb_from_hed = _RGB_FROM_HED.to(image.device, torch.float32)
        od = -torch.log(image.clamp_min(_MIN_INTENSITY))
        concentrations = torch.einsum("...chw,cs->...shw", od, hed_from_rgb)
        scale = params["scale"].to(image.device, torch.float32)[:, None, None]
        shift = params["shift"].to(image.device, torch.float32)[:, None, None]
        delta = torch.einsum("...shw,sc->...chw", concentrations * (scale - 1.0) + shift, rgb_from_hed)
        out = (image * torch.exp(-delta)).clamp(0.0, 1.0)
        if is_uint8:
            out = (out * 255.0).round().to(torch.uint8)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


class RandomQuarterTurn(v2.Transform):
    """Rotate by 0, 90, 180 or 270 degrees, equally likely: exact (no interpolation) and nearly free.

    With both flips it gives the eight symmetries of the square, which a cell (having no up) does not change.

    Examples:
        >>> image = torch.arange(4).reshape(1, 2, 2)
        >>> _ = torch.manual_seed(0)
        >>> sorted({tuple(RandomQuarterTurn()(image).flatten().tolist()) for _ in range(40)})
        [(0, 1, 2, 3), (1, 3, 0, 2), (2, 0, 3, 1), (3, 2, 1, 0)]
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Draw the number of quarter turns."""
        return {"turns": int(torch.randint(4, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Rotate an image tensor (or a batch sharing the draw) by the drawn quarter turns."""
        if not isinstance(inpt, torch.Tensor) or params["turns"] == 0:
            return inpt
        out = torch.rot90(inpt, params["turns"], dims=(-2, -1))
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


class RandomJpeg(v2.Transform):
    """Re-compress a uint8 RGB image as JPEG at a random quality, with OpenCV (scanners and PACS store JPEG).

    OpenCV rather than ``v2.JPEG``: torchvision's image encoders are deprecated in the pinned version.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> out = RandomJpeg((40, 60))(torch.full((3, 16, 16), 128, dtype=torch.uint8))
        >>> out.shape, out.dtype
        (torch.Size([3, 16, 16]), torch.uint8)
    """

    def __init__(self, quality: tuple[int, int] = (40, 95)) -> None:
        """``quality`` is the inclusive range the JPEG quality is drawn from."""
        super().__init__()
        if not 1 <= quality[0] <= quality[1] <= 100:
            raise ValueError(f"quality must be a range within 1..100, got {quality}")
        self.quality = quality

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Draw the quality."""
        return {"quality": int(torch.randint(self.quality[0], self.quality[1] + 1, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Encode and decode one 3xHxW uint8 image; anything else passes unchanged."""
        if not isinstance(inpt, torch.Tensor) or inpt.dtype != torch.uint8 or inpt.ndim != 3:
            return inpt
        rgb = np.ascontiguousarray(inpt.permute(1, 2, 0).cpu().numpy())
        ok, encoded = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, params["quality"]])
        if not ok:
            return inpt
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
        out = torch.from_numpy(np.ascontiguousarray(decoded)).permute(2, 0, 1).to(inpt.device)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def dihedral_transform() -> v2.Compose:
    """Random flips and quarter turns only: the light augmentation for short CPU runs; uint8 in and out.

    Examples:
        >>> dihedral_transform()(torch.zeros(3, 8, 8, dtype=torch.uint8)).dtype
        torch.uint8
    """
    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomQuarterTurn()])


def geometry_transform(crop_size: int, input_size: int) -> v2.Compose:
    """Centre crop to ``crop_size`` and resize to ``input_size`` (antialiased); uint8 in and out.

    Examples:
        >>> geometry_transform(250, 64)(np.zeros((260, 250, 3), np.uint8)).shape
        torch.Size([3, 64, 64])
    """
    return v2.Compose([v2.ToImage(), v2.CenterCrop(crop_size), v2.Resize((input_size, input_size), antialias=True)])


def normalise_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """To float32 in [0, 1] (uint8 is scaled, float is kept) and per-channel ``(x - mean) / std``.

    Examples:
        >>> out = normalise_transform((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(torch.full((3, 2, 2), 255, dtype=torch.uint8))
        >>> out.dtype, float(out.max())
        (torch.float32, 1.0)
    """
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


@dataclass(frozen=True)
class AugmentationStrength:
    """How far the training views of a crop may stray from it; the two recipes below are two settings of it.

    Attributes:
        scale: range of the random zoom.
        blur_sigma: the largest defocus blur (Gaussian sigma, px at the network's input).
        blur_p: share of views blurred.
        blur_kernel_divisor: the blur kernel is about ``input_size / blur_kernel_divisor`` px (odd, at least 3).
        jitter: brightness, contrast, saturation and hue jitter.
        stain_sigma: spread of the stain jitter's scale.
        stain_bias: spread of the stain jitter's shift.
        jpeg_p: share of views re-compressed as JPEG at quality 40-95 (0: the step is left out).
        grey_p: share of views turned grey (0: the step is left out).
    """

    scale: tuple[float, float] = (0.9, 1.1)
    blur_sigma: float = 1.2
    blur_p: float = 0.25
    blur_kernel_divisor: int = 32
    jitter: tuple[float, float, float, float] = (0.15, 0.15, 0.1, 0.02)
    stain_sigma: float = 0.05
    stain_bias: float = 0.03
    jpeg_p: float = 0.0
    grey_p: float = 0.0


ROBUST = AugmentationStrength(
    scale=(0.8, 1.2),
    blur_sigma=2.0,
    blur_p=0.33,
    blur_kernel_divisor=16,
    jitter=(0.25, 0.25, 0.25, 0.04),
    stain_sigma=0.08,
    stain_bias=0.05,
    jpeg_p=0.5,
    grey_p=0.1,
)
"""Wider views for generalising beyond one lab's stain, scale, focus and camera."""


def augmentation_transform(
    input_size: int,
    *,
    stain_sigma: float = 0.05,
    stain_bias: float = 0.03,
    strength: AugmentationStrength | None = None,
) -> v2.Compose:
    """Random views of an ``input_size`` uint8 crop; float in [0, 1] out.

    Flips and a full-circle rotation (cells have no up), reflect padding first so the rotated corners show
    plausible surroundings instead of black, a small scale change, an occasional slight defocus blur,
    brightness/contrast/saturation jitter and the stain jitter; with a ``strength`` (e.g. :data:`ROBUST`), its
    settings instead, JPEG re-compression and grayscale included when it asks for them.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> out = augmentation_transform(32)(torch.zeros(3, 32, 32, dtype=torch.uint8))
        >>> out.shape, out.dtype
        (torch.Size([3, 32, 32]), torch.float32)
    """
    s = strength or AugmentationStrength(stain_sigma=stain_sigma, stain_bias=stain_bias)
    pad = math.ceil(0.3 * input_size)
    kernel = max(3, (input_size // s.blur_kernel_divisor) | 1)
    brightness, contrast, saturation, hue = s.jitter
    steps: list[Any] = [
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.Pad(pad, padding_mode="reflect"),
        v2.RandomAffine(degrees=180.0, scale=s.scale, interpolation=v2.InterpolationMode.BILINEAR),
        v2.CenterCrop(input_size),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, s.blur_sigma))], p=s.blur_p),
    ]
    if s.jpeg_p > 0:
        steps.append(v2.RandomApply([RandomJpeg((40, 95))], p=s.jpeg_p))
    steps.append(v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue))
    if s.grey_p > 0:
        steps.append(v2.RandomGrayscale(p=s.grey_p))
    steps += [v2.ToDtype(torch.float32, scale=True), StainJitter(sigma=s.stain_sigma, bias=s.stain_bias, p=0.8)]
    return v2.Compose(steps)


def robust_augmentation_transform(input_size: int) -> v2.Compose:
    """:func:`augmentation_transform` at :data:`ROBUST` strength, for models used beyond the training lab.

    Scale 0.8-1.2, defocus up to sigma 2 on a third of the views, JPEG at quality 40-95 on half, grayscale on a
    tenth (kept as three channels), wider colour and stain jitter.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> out = robust_augmentation_transform(32)(torch.zeros(3, 32, 32, dtype=torch.uint8))
        >>> out.shape, out.dtype
        (torch.Size([3, 32, 32]), torch.float32)
    """
    return augmentation_transform(input_size, strength=ROBUST)


def eval_transform(crop_size: int, input_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """The inference recipe: geometry then normalisation; the same for one crop or a batch.

    Examples:
        >>> recipe = eval_transform(250, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        >>> recipe(torch.zeros(5, 3, 250, 250, dtype=torch.uint8)).shape
        torch.Size([5, 3, 64, 64])
    """
    return v2.Compose([geometry_transform(crop_size, input_size), normalise_transform(mean, std)])


def train_transform(crop_size: int, input_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """The training recipe: geometry, augmentation, normalisation.

    Examples:
        >>> recipe = train_transform(250, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        >>> crop = np.full((250, 250, 3), 200, np.uint8)
        >>> _ = torch.manual_seed(1); first = recipe(crop)
        >>> _ = torch.manual_seed(1); again = recipe(crop)
        >>> first.shape, bool(torch.equal(first, again))
        (torch.Size([3, 64, 64]), True)
    """
    return v2.Compose(
        [
            geometry_transform(crop_size, input_size),
            augmentation_transform(input_size),
            normalise_transform(mean, std),
        ]
    )


def to_uint8_batch(
    crops: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor], crop_size: int
) -> torch.Tensor:
    """Stack crops into one Nx3xHxW uint8 tensor of at least ``crop_size``, each fitted to it when sizes differ.

    A numpy batch NxHxWx3 becomes a channels-last view without copying. Crops of different sizes are centre
    cropped to ``crop_size``. A crop smaller than ``crop_size`` (a nucleus cut at the edge of a scan, or a
    dataset cut smaller) is mirrored outwards to ``crop_size`` around its centre, as
    :func:`~papscreen.imaging.crops.cut_crops` does at a field's border, so the network still sees its
    window at the scale it was trained at (never stretched).

    Raises:
        ValueError: not uint8 RGB.

    Examples:
        >>> to_uint8_batch(np.zeros((2, 250, 250, 3), np.uint8), 250).shape
        torch.Size([2, 3, 250, 250])
        >>> to_uint8_batch([np.zeros((260, 250, 3), np.uint8), np.zeros((200, 255, 3), np.uint8)], 250).shape
        torch.Size([2, 3, 250, 250])
        >>> to_uint8_batch(np.zeros((1, 10, 12, 3), np.uint8), 16).shape
        torch.Size([1, 3, 16, 16])
    """
    if isinstance(crops, np.ndarray) and crops.ndim == 4:
        array = np.ascontiguousarray(crops)
        batch = torch.from_numpy(array if array.flags.writeable else array.copy()).permute(0, 3, 1, 2)
    elif isinstance(crops, torch.Tensor) and crops.ndim == 4:
        batch = crops
    else:
        items = [_chw(c) for c in crops]
        if not items:
            return torch.empty((0, 3, crop_size, crop_size), dtype=torch.uint8)
        if len({tuple(i.shape) for i in items}) > 1:
            items = [v2.functional.center_crop(_reflect_pad(i, crop_size), [crop_size, crop_size]) for i in items]
        batch = torch.stack(items)
    if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"crops must be uint8 RGB (N x H x W x 3 arrays); got {batch.dtype} {tuple(batch.shape)}")
    return _reflect_pad(batch, crop_size)


def _chw(crop: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(crop, np.ndarray):
        if crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"a crop must be an H x W x 3 RGB array, not {crop.shape}")
        array = np.ascontiguousarray(crop)
        return torch.from_numpy(array if array.flags.writeable else array.copy()).permute(2, 0, 1)
    return crop


def _reflect_pad(image: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror the last two axes outwards (edge pixel not repeated) until each is at least ``size``; centred."""
    for axis in (-2, -1):
        length = image.shape[axis]
        if length >= size:
            continue
        before = (size - length) // 2
        positions = reflect_indices(np.arange(-before, size - before), length)
        image = image.index_select(axis, torch.from_numpy(positions).to(image.device))
    return image
