"""Stage-1 training data: DB_3 patches held in memory, with the augmentation recipe of stage 1.

DB_3 patches are 20x20 pixels: a few thousand of them fit in a few megabytes, so they are decoded once into one
uint8 tensor and every epoch reads from memory. Augmentation uses what does not change what a patch shows: flips
and quarter turns (a nucleus has no up or down) and a little colour jitter (stain and scanner vary from slide to
slide). Patches are normalised with the same mean and standard deviation the detector applies to a field.

Augmentation works on a whole batch at once (:func:`augment_batch`), each patch with its own random draw: on 20x20
patches, per-sample ``torchvision`` transforms cost about a millisecond a patch (the hue jitter most of it), far more
than the network's own step; batched, the same recipe costs microseconds a patch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from papscreen.datasets.conventions import MANIFEST_NAME, STAGE1_INPUT_PX
from papscreen.datasets.layout import DatasetIndex, Sample
from papscreen.errors import DatasetError, ImageError
from papscreen.imaging.image_io import read_rgb
from papscreen.models.card import Normalisation

__all__ = [
    "BRIGHTNESS",
    "CONTRAST",
    "HUE",
    "SATURATION",
    "PatchBatches",
    "augment_batch",
    "dataset_working_scale",
    "load_patches",
    "normalise_batch",
]

BRIGHTNESS = 0.1
"""Brightness factors are drawn uniformly from ``1 +- BRIGHTNESS`` (as ``ColorJitter(brightness=0.1)``)."""
CONTRAST = 0.1
"""Contrast factors: ``1 +- CONTRAST``, blending with the patch's mean grey level."""
SATURATION = 0.1
"""Saturation factors: ``1 +- SATURATION``, blending with each pixel's grey level."""
HUE = 0.02
"""Hue shifts: up to ``HUE`` of a turn either way (a rotation of the chroma plane in YIQ space)."""

_GREY = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _uniform(n: int, spread: float, generator: torch.Generator | None) -> torch.Tensor:
    return 1.0 + spread * (2.0 * torch.rand(n, generator=generator) - 1.0)


def _grey(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_GREY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def augment_batch(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip, quarter-turn and colour-jitter each patch of a uint8 batch (N, 3, S, S); returns float in [0, 1].

    Each patch draws its own horizontal and vertical flip (each with probability 1/2), its number of quarter turns
    (0-3, equally likely) and its brightness, contrast, saturation and hue factors (``BRIGHTNESS`` ...). Geometry
    is exact (no interpolation); colour changes are clamped to [0, 1]. Random numbers come from ``generator``
    (on the CPU), so a seeded generator gives the same batch.

    Examples:
        >>> x = torch.randint(0, 256, (8, 3, 20, 20), dtype=torch.uint8)
        >>> out = augment_batch(x, torch.Generator().manual_seed(0))
        >>> out.shape, out.dtype, bool(out.min() >= 0) and bool(out.max() <= 1)
        (torch.Size([8, 3, 20, 20]), torch.float32, True)
        >>> bool(torch.equal(out, augment_batch(x, torch.Generator().manual_seed(0))))
        True
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"augment_batch needs square RGB patches (N, 3, S, S), got shape {tuple(images.shape)}")
    n, device = images.shape[0], images.device
    x = images.float().div_(255.0)
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(4, (n,), generator=generator)
    x = torch.where(flip_h.to(device).view(-1, 1, 1, 1), x.flip(-1), x)
    x = torch.where(flip_v.to(device).view(-1, 1, 1, 1), x.flip(-2), x)
    for k in (1, 2, 3):
        chosen = (turns == k).to(device)
        x = torch.where(chosen.view(-1, 1, 1, 1), torch.rot90(x, k, dims=(-2, -1)), x)

    brightness = _uniform(n, BRIGHTNESS, generator).to(device).view(-1, 1, 1, 1)
    contrast = _uniform(n, CONTRAST, generator).to(device).view(-1, 1, 1, 1)
    saturation = _uniform(n, SATURATION, generator).to(device).view(-1, 1, 1, 1)
    angle = (HUE * 2.0 * math.pi) * (2.0 * torch.rand(n, generator=generator) - 1.0)
    x = (x * brightness).clamp_(0.0, 1.0)
    mean = _grey(x).mean(dim=(-2, -1), keepdim=True)
    x = (contrast * x + (1.0 - contrast) * mean).clamp_(0.0, 1.0)
    x = (saturation * x + (1.0 - saturation) * _grey(x)).clamp_(0.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(n, 3, 3)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    hue = (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).to(device)
    return torch.einsum("nij,njhw->nihw", hue, x).clamp_(0.0, 1.0)


def normalise_batch(x: torch.Tensor, normalisation: Normalisation | None = None) -> torch.Tensor:
    """Per-channel normalisation of RGB in [0, 1] (N, 3, H, W), as the detector normalises a field.

    Examples:
        >>> normalise_batch(torch.full((1, 3, 2, 2), 0.485))[0, 0, 0, 0].abs().item() < 1e-6
        True
    """
    normalisation = normalisation or Normalisation()
    mean = torch.tensor(normalisation.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(normalisation.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class PatchBatches:
    """Mini-batches of in-memory patches, (shuffled, augmented and) normalised a whole batch at a time.

    Iterating gives ``(images, labels)``: float32 (B, 3, 20, 20) on ``device`` and int64 (B,). Each iteration is a
    new epoch: a new order and new augmentation, drawn from ``generator``.

    Examples:
        >>> images = torch.zeros(5, 3, 20, 20, dtype=torch.uint8)
        >>> batches = PatchBatches(images, torch.tensor([0, 1, 0, 1, 1]), batch_size=2)
        >>> len(batches), [tuple(x.shape) for x, _ in batches][-1]
        (3, (1, 3, 20, 20))
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        normalisation: Normalisation | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.normalisation = normalisation or Normalisation()
        self.generator = generator
        self.device = torch.device(device)

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of batches."""
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for first in range(0, n, self.batch_size):
            chosen = order[first : first + self.batch_size]
            images = self.images[chosen].to(self.device)
            x = augment_batch(images, self.generator) if self.augment else images.float().div_(255.0)
            yield normalise_batch(x, self.normalisation), self.labels[chosen]


def load_patches(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode DB_3 samples into memory: images (N, 3, 20, 20) uint8 and labels (N,) int64 (1 = cell).

    Raises:
        DatasetError: a patch cannot be decoded or is not 20x20 (the message names the file).

    Examples:
        >>> import tempfile
        >>> from papscreen.imaging.image_io import write_rgb
        >>> path = Path(tempfile.mkdtemp()) / "a.png"
        >>> write_rgb(path, np.zeros((20, 20, 3), np.uint8))
        >>> images, labels = load_patches([Sample(path=path, label_index=1, label="cell")])
        >>> images.shape, labels.tolist()
        (torch.Size([1, 3, 20, 20]), [1])
    """
    images = np.empty((len(samples), STAGE1_INPUT_PX, STAGE1_INPUT_PX, 3), np.uint8)
    for i, sample in enumerate(samples):
        try:
            rgb = read_rgb(sample.path)
        except ImageError as e:
            raise DatasetError(sample.path, f"cannot read this DB_3 patch ({e.reason})") from e
        if rgb.shape[:2] != (STAGE1_INPUT_PX, STAGE1_INPUT_PX):
            raise DatasetError(
                sample.path,
                f"a DB_3 patch must be {STAGE1_INPUT_PX} px square, this one is {rgb.shape[1]}x{rgb.shape[0]}",
            )
        images[i] = rgb
    labels = torch.tensor([s.label_index for s in samples], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def dataset_working_scale(index: DatasetIndex) -> float | None:
    """The working scale a DB_3 was cut at, from its ``manifest.json`` (built or synthetic); None if unknown.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "manifest.json").write_text('{"stage1_scale": 0.3333}')
        >>> index = DatasetIndex(kind="DB_3", root=root, class_names=("background", "cell"), scheme="db3", splits={})
        >>> dataset_working_scale(index)
        0.3333
    """
    path = Path(index.root) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    scale = manifest.get("stage1_scale")
    if scale is None and isinstance(manifest.get("stage1"), dict):
        scale = manifest["stage1"].get("working_scale")
    return float(scale) if isinstance(scale, int | float) and 0 < scale <= 1 else None
