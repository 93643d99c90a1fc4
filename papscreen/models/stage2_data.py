"""Stage-2 training data: DB_4 crops decoded once, class balance, and the frozen-backbone feature cache.

On a CPU the expensive parts of training are decoding PNGs, resizing 250 px crops and running the backbone. Each is
done as few times as possible:

* :func:`load_crops` decodes every crop once and applies the deterministic geometry (centre crop to ``crop_size``,
  resize to ``input_size``) once, keeping small uint8 tensors in memory (3000 crops at 160 px are 230 MB);
  augmentation then runs on those small images every epoch (:class:`CropDataset`).
* Frozen-backbone training computes each crop's features **once** (:func:`compute_features`, eval mode,
  ``inference_mode``, bf16 autocast where asked) and trains only the head on them, so 100 epochs cost about one
  pass through the backbone instead of 100. :class:`FeatureCache` can keep those features on disk, keyed by what
  decides them (dataset fingerprint, architecture, backbone weights, sizes, views), so a second run with other
  head settings skips even that pass.
* Classes are imbalanced in real DB_4 (far more NILM than SCC): :func:`class_weights` for the loss, or
  :func:`balanced_sampler` to draw every class equally often.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from papscreen.datasets.layout import Sample
from papscreen.errors import DatasetError, ImageError
from papscreen.imaging.image_io import read_rgb
from papscreen.models.transforms import geometry_transform, to_uint8_batch

__all__ = [
    "CropDataset",
    "FeatureCache",
    "balanced_sampler",
    "class_weights",
    "compute_features",
    "load_crops",
    "state_dict_sha256",
]


def load_crops(
    samples: Sequence[Sample], crop_size: int, input_size: int, class_names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode crops once and bring them to the network's input: (N, 3, input_size, input_size) uint8 and labels.

    Args:
        samples: the split's samples (:class:`~papscreen.datasets.layout.Sample`).
        crop_size: the full-resolution window kept around the nucleus (centre crop; mirrored out if smaller).
        input_size: the side it is resized to.
        class_names: the model's output order; labels are indices into it (it may differ from the dataset's).

    Raises:
        DatasetError: an unreadable image (naming it), or a label the model has no class for.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from papscreen.imaging.image_io import write_rgb
        >>> path = Path(tempfile.mkdtemp()) / "a.png"
        >>> write_rgb(path, np.zeros((250, 250, 3), np.uint8))
        >>> images, labels = load_crops([Sample(path, 2, "HSIL")], 250, 64, ("NILM", "LSIL", "HSIL", "SCC"))
        >>> tuple(images.shape), images.dtype, labels.tolist()
        ((1, 3, 64, 64), torch.uint8, [2])
    """
    geometry = geometry_transform(crop_size, input_size)
    images = torch.empty((len(samples), 3, input_size, input_size), dtype=torch.uint8)
    labels = torch.empty(len(samples), dtype=torch.long)
    for k, sample in enumerate(samples):
        if sample.label not in class_names:
            raise DatasetError(sample.path, f"label {sample.label} is not a class of this model ({list(class_names)})")
        try:
            rgb = read_rgb(sample.path)
        except ImageError as e:
            raise DatasetError(sample.path, f"cannot read this crop ({e.reason}); fix or remove it") from e
        images[k] = geometry(to_uint8_batch([rgb], crop_size)[0])
        labels[k] = class_names.index(sample.label)
    return images, labels


class CropDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """In-memory uint8 crops (already at the input size) with a per-item transform applied on access.

    Examples:
        >>> images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
        >>> data = CropDataset(images, torch.tensor([0, 3]), v2.ToDtype(torch.float32))
        >>> len(data), data[1][0].dtype, int(data[1][1])
        (2, torch.float32, 3)
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: nn.Module | v2.Transform) -> None:
        """Keep references (no copy)."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        """Number of crops."""
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed crop and its label."""
        return self.transform(self.images[index]), self.labels[index]


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the present classes; an absent class gets 0 (nothing to weigh).

    Used as ``CrossEntropyLoss(weight=...)`` so a rare class (SCC) counts as much in total as a common one (NILM).

    Examples:
        >>> class_weights(torch.tensor([0, 0, 0, 1]), 3).tolist()
        [0.5, 1.5, 0.0]
    """
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = torch.where(counts > 0, counts.sum() / counts.clamp_min(1), torch.zeros_like(counts))
    present = int((counts > 0).sum())
    return (weights * present / weights.sum()).float() if present else weights.float()


def balanced_sampler(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> WeightedRandomSampler:
    """Draw crops with replacement so every present class is equally likely; one epoch is still ``len(labels)``.

    Examples:
        >>> sampler = balanced_sampler(torch.tensor([0] * 9 + [1]), 2, torch.Generator().manual_seed(0))
        >>> drawn = torch.tensor(list(sampler))
        >>> len(drawn), 2 <= int((drawn == 9).sum()) <= 8
        (10, True)
    """
    per_item = class_weights(labels, num_classes)[labels].double()
    return WeightedRandomSampler(per_item, num_samples=len(labels), replacement=True, generator=generator)


def compute_features(
    features: nn.Module,
    images: torch.Tensor,
    normalise: nn.Module | v2.Transform,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    augment: nn.Module | v2.Transform | None = None,
) -> torch.Tensor:
    """Backbone features of uint8 crops, computed once in eval mode: (N, D) float32 on the CPU.

    Args:
        features: the feature extractor (:func:`~papscreen.models.backbones.split_feature_extractor`).
        images: (N, 3, S, S) uint8 crops at the input size (:func:`load_crops`).
        normalise: uint8 to the normalised float input.
        batch_size: crops per pass.
        device: where the backbone runs.
        bf16: autocast to bfloat16 (about 3x faster on a CPU with AVX-512/AMX; features differ in the third digit,
            which a head trained on them does not notice).
        augment: an augmentation applied to each crop before normalising (for extra augmented views).

    Examples:
        >>> from papscreen.models.backbones import build_stage2_network, split_feature_extractor
        >>> from papscreen.models.transforms import normalise_transform
        >>> extractor, _ = split_feature_extractor(build_stage2_network("resnet18"))
        >>> norm = normalise_transform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        >>> compute_features(extractor, torch.zeros(3, 3, 32, 32, dtype=torch.uint8), norm, batch_size=2).shape
        torch.Size([3, 512])
    """
    device = torch.device(device)
    was_training = features.training
    features.eval().to(device)
    out = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    try:
        with torch.inference_mode(), autocast:
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                if augment is not None:
                    batch = torch.stack([augment(image) for image in batch])
                x = normalise(batch.to(device)).contiguous(memory_format=torch.channels_last)
                out.append(features(x).float().cpu())
    finally:
        features.train(was_training)
    if not out:
        return torch.zeros((0, 0))
    return torch.cat(out)


def state_dict_sha256(module: nn.Module) -> str:
    """A hash of a module's weights (names, shapes, bytes), to key cached features by the backbone that made them.

    Examples:
        >>> torch.manual_seed(0) is not None and len(state_dict_sha256(nn.Linear(2, 2)))
        64
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Frozen-backbone features on disk (safetensors), one file per key; a miss simply recomputes.

    The key is a hash of everything that decides the features, so a stale file can never be reused: dataset
    fingerprint, architecture, backbone weights hash, crop and input size, precision and augmented views.

    Examples:
        >>> import tempfile
        >>> cache = FeatureCache(Path(tempfile.mkdtemp()))
        >>> key = FeatureCache.key(dataset="d" * 64, architecture="resnet18", weights="w", crop_size=250, input_size=64)
        >>> cache.load(key) is None
        True
        >>> cache.save(key, {"train": torch.ones(2, 3)})
        >>> cache.load(key)["train"].shape
        torch.Size([2, 3])
    """

    def __init__(self, folder: Path) -> None:
        """Use ``folder`` (created when first written)."""
        self.folder = Path(folder)

    @staticmethod
    def key(**parts: object) -> str:
        """A short hex key from named parts (order does not matter)."""
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        """Where features of ``key`` live."""
        return self.folder / f"stage2-features-{key}.safetensors"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """Cached tensors of ``key``, or ``None`` when absent or unreadable (then they are recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            return None

    def save(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Write tensors of ``key`` (atomically: a partial file is never left under the final name)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.path(key)
        partial = final.with_suffix(".partial")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial))
        partial.replace(final)
