"""Train a stage-2 Bethesda classifier on a DB_4 dataset, in one of two modes.

* ``frozen`` (the original project's recipe): the backbone is not trained. Its features of every crop are computed
  **once** (eval mode, no gradient) and only the head is trained on them, so 100 epochs cost about one pass through
  the backbone; the original ran the frozen backbone again on every crop of every epoch. This is meant for
  ImageNet-pretrained backbones. With a randomly initialised backbone it still runs (features of random
  convolutions carry some colour and texture information) but is weak: a warning says so.
* ``finetune``: the whole network trains, with augmentation (flips, full rotation, slight scale change and blur as
  the original, plus colour and stain jitter) on crops decoded and resized once.

Both modes balance classes (loss weights by default, or a balanced sampler), validate after every epoch, stop
early when the validation macro-F1 has not improved for ``patience`` epochs and keep the best epoch's weights. A
temperature is then fitted on the validation logits (:mod:`papscreen.models.calibration`) and stored on the card,
with the validation metrics (:mod:`papscreen.models.metrics`) computed on the calibrated probabilities.

Runs are deterministic for a seed on the CPU: initialisation, shuffling, sampling and augmentation draw from torch's
generator inside :func:`torch.random.fork_rng`, so nothing outside the call changes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from papscreen.datasets.conventions import DEFAULT_CROP_PX
from papscreen.datasets.fingerprint import fingerprint_index
from papscreen.datasets.layout import DatasetIndex, Sample
from papscreen.datasets.provenance import dataset_provenance
from papscreen.errors import DatasetError
from papscreen.imaging.image_io import read_rgb
from papscreen.models.backbones import build_stage2_network, split_feature_extractor
from papscreen.models.calibration import apply_temperature, fit_temperature
from papscreen.models.card import ModelCard
from papscreen.models.metrics import ClassificationMetrics, classification_report, save_metrics
from papscreen.models.plots import write_evaluation_plots
from papscreen.models.stage2 import DEFAULT_INPUT_SIZE, Stage2Classifier, stage2_card
from papscreen.models.stage2_data import (
    CropDataset,
    FeatureCache,
    balanced_sampler,
    class_weights,
    compute_features,
    load_crops,
    state_dict_sha256,
)
from papscreen.models.transforms import (
    augmentation_transform,
    dihedral_transform,
    normalise_transform,
    robust_augmentation_transform,
)

__all__ = ["EpochCallback", "Mode", "Stage2TrainingResult", "evaluate_stage2", "train_stage2"]

logger = logging.getLogger(__name__)

Mode = Literal["frozen", "finetune"]
Balance = Literal["loss", "sampler", "none"]
Augmentation = Literal["full", "robust", "dihedral", "none"]
EpochCallback = Callable[[dict[str, float]], None]
"""Called after every epoch with that epoch's row of the history."""

_DEFAULT_LR: dict[str, float] = {"frozen": 1e-3, "finetune": 3e-3}


@dataclass(frozen=True)
class Stage2TrainingResult:
    """What :func:`train_stage2` produced.

    Attributes:
        classifier: the best epoch's network with its card (temperature, metrics, training, fingerprint filled in).
        history: one row per epoch: ``epoch``, ``lr``, ``train_loss``, ``val_loss``, ``val_accuracy``,
            ``val_macro_f1``, ``seconds``.
        metrics: validation metrics of the best epoch, on temperature-scaled probabilities.
        dataset_fingerprint: fingerprint of the DB_4 it was trained on.
        training: how it was trained (on the card too).
        validation_labels: true class indices of the validation crops (in the classifier's class order).
        validation_probs: their calibrated probabilities; with ``validation_labels``, what the plots draw.
    """

    classifier: Stage2Classifier
    history: list[dict[str, float]]
    metrics: ClassificationMetrics
    dataset_fingerprint: str
    training: dict[str, Any] = field(default_factory=dict)
    validation_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    validation_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32), repr=False)

    def save(self, folder: str | Path) -> ModelCard:
        """Write the model (weights and card), ``metrics.json`` and the PNG plots into a new folder.

        Returns:
            The card as saved.
        """
        folder = Path(folder)
        card = self.classifier.to_checkpoint(folder)
        save_metrics(self.metrics, folder)
        if len(self.validation_labels):
            write_evaluation_plots(
                folder, self.validation_labels, self.validation_probs, self.metrics, history=self.history
            )
        return card


def _check_index(index: DatasetIndex, classes: tuple[str, ...]) -> None:
    if index.kind != "DB_4":
        raise DatasetError(index.root, f"stage 2 trains on a DB_4 dataset (Bethesda classes), this is a {index.kind}")
    for split in ("train", "validation"):
        present = {s.label for s in index.splits.get(split, ())}
        if len(present) < 2:
            raise DatasetError(index.root, f"the {split} split needs crops of at least two classes, has {present}")
        missing = [name for name in classes if name not in present]
        if missing:
            logger.warning("the %s split has no %s crops", split, ", ".join(missing))


def _macro_f1(labels: torch.Tensor, logits: torch.Tensor, num_classes: int) -> float:
    """Macro-F1 over the classes present in ``labels`` or predicted (a class absent from both is left out)."""
    y, p = labels.numpy(), logits.argmax(dim=1).numpy()
    present = sorted(set(y.tolist()) | set(p.tolist()))
    return float(f1_score(y, p, labels=present, average="macro", zero_division=0.0)) if num_classes else 0.0


def _validation_row(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None) -> dict[str, float]:
    return {
        "val_loss": float(F.cross_entropy(logits, labels, weight=weight)),
        "val_accuracy": float((logits.argmax(dim=1) == labels).float().mean()),
        "val_macro_f1": _macro_f1(labels, logits, logits.shape[1]),
    }


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on ``device`` when asked for (weights, gradients and the optimizer stay fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _logits_of(
    model: nn.Module, inputs: torch.Tensor, batch_size: int, device: torch.device, bf16: bool = False
) -> torch.Tensor:
    model.eval()
    out = []
    with torch.inference_mode(), _autocast(device, bf16):
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size].to(device)
            if x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(model(x).float().cpu())
    return torch.cat(out)


def _train_epoch(
    model: nn.Module,
    batches: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    device: torch.device,
    bf16: bool = False,
) -> float:
    """One pass in training mode; returns the mean loss per sample."""
    model.train()
    total, count = 0.0, 0
    for inputs, labels in batches:
        x = inputs.to(device)
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, bf16):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * len(y)
        count += len(y)
    return total / max(count, 1)


def _feature_batches(
    features: torch.Tensor, labels: torch.Tensor, batch_size: int, order: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:  # batch norm cannot train on one sample: fold it in
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return [(features[idx], labels[idx]) for idx in chunks]


def train_stage2(
    index: DatasetIndex,
    *,
    architecture: str = "resnet50",
    mode: Mode = "frozen",
    epochs: int = 100,
    batch_size: int = 32,
    lr: float | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    input_size: int = DEFAULT_INPUT_SIZE,
    crop_size: int = DEFAULT_CROP_PX,
    pretrained: Path | Literal["auto"] | None = None,
    patience: int = 10,
    progress: EpochCallback | None = None,
    weight_decay: float = 1e-4,
    head_hidden: int | None = None,
    dropout: float = 0.0,
    balance: Balance = "loss",
    augment: Augmentation = "full",
    bf16_features: bool = False,
    bf16: bool = False,
    feature_views: int = 1,
    feature_cache: Path | None = None,
) -> Stage2TrainingResult:
    """Train a stage-2 classifier on a DB_4 dataset and wrap the best epoch in a calibrated :class:`Stage2Classifier`.

    Args:
        index: the DB_4 dataset (:func:`~papscreen.datasets.layout.read_dataset`).
        architecture: ``resnet50`` (the original), ``resnet18``, ``mobilenet_v3_large`` or ``efficientnet_b0``.
        mode: ``frozen`` (head only, on features computed once) or ``finetune`` (the whole network).
        epochs: the most epochs to run.
        batch_size: crops (or feature vectors) per step.
        lr: AdamW's peak learning rate (one-cycle schedule: warm-up then cosine decay); by default 1e-3 frozen,
            3e-3 finetune.
        seed: seeds initialisation, shuffling, sampling and augmentation.
        device: where to train (``cpu``, ``cuda``).
        input_size: side the crops are resized to (recorded on the card); 160 by default for CPUs, 224 for the
            resolution ImageNet weights were trained at.
        crop_size: the full-resolution window around each nucleus (centre crop of the DB_4 crops), pixels.
        pretrained: ``None`` (random initialisation), a path to torchvision ImageNet weights, or ``"auto"`` (torch
            hub's cache). Never downloads.
        patience: stop after this many epochs without a better validation macro-F1.
        progress: called after each epoch with its history row.
        weight_decay: AdamW's decoupled weight decay.
        head_hidden: width of a hidden layer in the head (``None``: one linear layer).
        dropout: dropout in the head.
        balance: ``loss`` (inverse-frequency class weights), ``sampler`` (draw classes equally often) or ``none``.
        augment: finetune mode: ``full`` (flips, rotation, scale, blur, colour and stain jitter), ``robust`` (the
            same, wider, plus JPEG re-compression and grayscale: for use beyond the training lab), ``dihedral``
            (flips and quarter turns only: cheap, for short CPU runs) or ``none``.
        bf16_features: frozen mode: compute the features under bfloat16 autocast (faster on recent CPUs).
        bf16: train and validate under bfloat16 autocast (weights, gradients and optimizer stay fp32): about 2.5x
            faster for a ResNet50 on a CPU with AMX, and on GPUs; slower where bf16 is emulated. Implies
            ``bf16_features`` in frozen mode.
        feature_views: frozen mode: features of this many views of each training crop (the first plain, the others
            augmented); gives the head augmentation at the cost of one backbone pass per view.
        feature_cache: frozen mode: a folder keeping features between runs (keyed by dataset fingerprint,
            architecture, weights and sizes).

    Raises:
        DatasetError: not a DB_4, a split with fewer than two classes, or an unreadable crop.
        PretrainedWeightsMissingError: ImageNet weights asked for but not on this machine.
        ValueError: bad numbers or an unknown architecture or mode.

    Examples:
        >>> import tempfile
        >>> from papscreen.datasets.layout import read_dataset
        >>> from papscreen.imaging.image_io import write_rgb
        >>> root = Path(tempfile.mkdtemp())
        >>> for split in ("train", "validation"):
        ...     for folder, value in (("1", 40), ("3", 220)):
        ...         for i in range(4):
        ...             write_rgb(root / split / folder / f"{i}.png", np.full((64, 64, 3), value + i, np.uint8))
        >>> result = train_stage2(read_dataset(root), architecture="resnet18", epochs=3, input_size=32,
        ...                       crop_size=64, mode="finetune", augment="none")
        >>> len(result.history) <= 3, result.classifier.card.stage, result.metrics.n_samples
        (True, 'stage2', 8)
    """
    if mode not in ("frozen", "finetune"):
        raise ValueError(f"mode must be 'frozen' or 'finetune', not {mode!r}")
    if augment not in ("full", "robust", "dihedral", "none"):
        raise ValueError(f"augment must be 'full', 'robust', 'dihedral' or 'none', not {augment!r}")
    if balance not in ("loss", "sampler", "none"):
        raise ValueError(f"balance must be 'loss', 'sampler' or 'none', not {balance!r}")
    lr = _DEFAULT_LR[mode] if lr is None else lr
    if epochs < 1 or batch_size < 1 or patience < 1 or feature_views < 1 or not lr > 0:
        raise ValueError(
            "need epochs, batch_size, patience, feature_views >= 1 and lr > 0; "
            f"got {epochs}, {batch_size}, {patience}, {feature_views}, {lr}"
        )
    card = stage2_card(
        architecture, input_size=input_size, crop_size=crop_size, head_hidden=head_hidden, dropout=dropout
    )
    classes = tuple(card.classes)
    _check_index(index, classes)
    if mode == "frozen" and pretrained is None:
        message = (
            "frozen mode with a randomly initialised backbone trains only a head on random features: it runs, but is "
            "weak; give ImageNet weights (pretrained='auto' or a path) for the original recipe, or use mode='finetune'"
        )
        warnings.warn(message, UserWarning, stacklevel=2)
        logger.warning(message)
    started = time.perf_counter()
    device = torch.device(device)
    fingerprint = fingerprint_index(index)
    train_images, train_labels = load_crops(index.splits["train"], crop_size, input_size, classes)
    val_images, val_labels = load_crops(index.splits["validation"], crop_size, input_size, classes)
    normalise = normalise_transform(card.normalisation.mean, card.normalisation.std)
    num_classes = len(classes)
    weight = class_weights(train_labels, num_classes) if balance == "loss" else None
    loss_fn = nn.CrossEntropyLoss(weight=None if weight is None else weight.to(device))
    history: list[dict[str, float]] = []
    devices = [device.index or 0] if device.type == "cuda" else []
    feature_seconds = 0.0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        network = build_stage2_network(
            architecture, num_classes, pretrained=pretrained, head_hidden=head_hidden, dropout=dropout
        )
        network = network.to(device, memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(seed)
        if mode == "frozen":
            extractor, trained = split_feature_extractor(network)
            tick = time.perf_counter()
            train_x, train_y, val_x = _frozen_features(
                extractor,
                train_images,
                train_labels,
                val_images,
                normalise,
                device=device,
                bf16=bf16_features or bf16,
                views=feature_views,
                cache=FeatureCache(feature_cache) if feature_cache is not None else None,
                cache_parts={
                    "dataset": fingerprint,
                    "architecture": architecture,
                    "weights": state_dict_sha256(extractor) if feature_cache is not None else None,
                    "crop_size": crop_size,
                    "input_size": input_size,
                    "bf16": bf16_features or bf16,
                    "views": feature_views,
                    "seed": seed if feature_views > 1 else None,
                },
                input_size=input_size,
            )
            feature_seconds = time.perf_counter() - tick
            val_inputs = val_x
            n_train = len(train_y)

            def batches() -> Any:
                if balance == "sampler":
                    order = torch.tensor(list(balanced_sampler(train_y, num_classes, generator)))
                else:
                    order = torch.randperm(n_train, generator=generator)
                return _feature_batches(train_x, train_y, batch_size, order)

        else:
            trained = network
            augmentation = {
                "full": augmentation_transform(input_size),
                "robust": robust_augmentation_transform(input_size),
                "dihedral": dihedral_transform(),
            }.get(augment)
            steps = [normalise] if augmentation is None else [augmentation, normalise]
            train_data = CropDataset(train_images, train_labels, nn.Sequential(*steps))
            sampler = balanced_sampler(train_labels, num_classes, generator) if balance == "sampler" else None
            n_train = len(train_labels)
            loader = DataLoader(
                train_data,
                batch_size=batch_size,
                shuffle=sampler is None,
                sampler=sampler,
                generator=generator,
                drop_last=n_train % batch_size == 1 and n_train > 1,  # batch norm cannot train on one crop
            )
            val_inputs = normalise(val_images)

            def batches() -> Any:
                return loader

        steps_per_epoch = max(
            1, n_train // batch_size if n_train % batch_size == 1 else math.ceil(n_train / batch_size)
        )
        optimizer = torch.optim.AdamW(
            [p for p in trained.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
        )
        best_f1, best_loss, best_epoch, stale = -1.0, math.inf, 0, 0
        best_state = copy.deepcopy(trained.state_dict())
        for epoch in range(1, epochs + 1):
            tick = time.perf_counter()
            lr_now = optimizer.param_groups[0]["lr"]
            train_loss = _train_epoch(trained, batches(), optimizer, scheduler, loss_fn, device, bf16)
            val_logits = _logits_of(trained, val_inputs, max(batch_size, 64), device, bf16)
            row = {"epoch": float(epoch), "lr": lr_now, "train_loss": train_loss}
            row |= _validation_row(val_logits, val_labels, weight)
            row["seconds"] = time.perf_counter() - tick
            history.append(row)
            if progress is not None:
                progress(row)
            if row["val_macro_f1"] > best_f1 or (row["val_macro_f1"] == best_f1 and row["val_loss"] < best_loss):
                best_f1, best_loss, best_epoch, stale = row["val_macro_f1"], row["val_loss"], epoch, 0
                best_state = copy.deepcopy(trained.state_dict())
            else:
                stale += 1
                if stale >= patience:
                    break
    trained.load_state_dict(best_state)
    val_logits = _logits_of(trained, val_inputs, max(batch_size, 64), device, bf16)
    network = network.cpu().eval().to(memory_format=torch.contiguous_format)
    temperature = fit_temperature(val_logits, val_labels)
    probs = apply_temperature(val_logits, temperature).numpy()
    y_true = val_labels.numpy()
    metrics = classification_report(y_true, probs, classes)
    training = {
        "mode": mode,
        "pretrained": "none" if pretrained is None else str(pretrained),
        "epochs_run": len(history),
        "epochs_max": epochs,
        "best_epoch": best_epoch,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "optimizer": "AdamW, one-cycle schedule",
        "patience": patience,
        "seed": seed,
        "balance": balance,
        "bf16": bf16,
        "augment": augment if mode == "finetune" else "none",
        "feature_views": feature_views if mode == "frozen" else None,
        "bf16_features": bf16_features if mode == "frozen" else None,
        "feature_seconds": round(feature_seconds, 1),
        "device": str(device),
        "data_provenance": dataset_provenance(index.root),
        "train_crops": len(train_labels),
        "validation_crops": len(val_labels),
        "seconds": round(time.perf_counter() - started, 1),
    }
    final_card = card.model_copy(
        update={
            "temperature": temperature,
            "dataset_fingerprint": fingerprint,
            "metrics": {**metrics.to_dict(), "best_epoch": best_epoch, "split": "validation"},
            "training": training,
        }
    )
    return Stage2TrainingResult(
        classifier=Stage2Classifier(network, final_card),
        history=history,
        metrics=metrics,
        dataset_fingerprint=fingerprint,
        training=training,
        validation_labels=y_true,
        validation_probs=probs,
    )


def _frozen_features(
    extractor: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    val_images: torch.Tensor,
    normalise: nn.Module,
    *,
    device: torch.device,
    bf16: bool,
    views: int,
    cache: FeatureCache | None,
    cache_parts: dict[str, Any],
    input_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training features (all views stacked), their labels and validation features: one backbone pass each."""
    key = FeatureCache.key(**cache_parts) if cache is not None else ""
    cached = cache.load(key) if cache is not None else None
    if cached is not None and {"train", "validation"} <= set(cached):
        logger.info("frozen features read from the cache (%s)", cache.path(key) if cache else "")
        train_x, val_x = cached["train"], cached["validation"]
    else:
        augment = augmentation_transform(input_size)
        parts = [
            compute_features(
                extractor, train_images, normalise, device=device, bf16=bf16, augment=augment if view else None
            )
            for view in range(views)
        ]
        train_x = torch.cat(parts)
        val_x = compute_features(extractor, val_images, normalise, device=device, bf16=bf16)
        if cache is not None:
            cache.save(key, {"train": train_x, "validation": val_x})
    return train_x.to(device), train_labels.repeat(views).to(device), val_x.to(device)


def evaluate_stage2(
    classifier: Stage2Classifier, index: DatasetIndex, split: str = "validation", *, batch_size: int = 32
) -> tuple[ClassificationMetrics, np.ndarray, np.ndarray]:
    """Measure a classifier on one split of a DB_4 dataset, through its own inference path (card, precision).

    Labels are mapped to the classifier's class order (so a model imported in the original's order is measured
    correctly); crops are decoded a batch at a time.

    Returns:
        The metrics, the true class indices (N,) and the calibrated probabilities (N, C).

    Raises:
        DatasetError: no such split, an unreadable crop, or a label the classifier has no class for.
    """
    samples: tuple[Sample, ...] = tuple(index.splits.get(split, ()))
    if not samples:
        raise DatasetError(index.root, f"no {split} crops to evaluate on")
    classes = classifier.classes
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise DatasetError(index.root, f"labels {unknown} are not classes of this model ({list(classes)})")
    y_true = np.array([classes.index(s.label) for s in samples], np.int64)
    probs = []
    for start in range(0, len(samples), batch_size):
        crops = [read_rgb(s.path) for s in samples[start : start + batch_size]]
        probs.append(classifier.predict_proba(crops, batch_size))
    p = np.concatenate(probs)
    return classification_report(y_true, p, classes), y_true, p
