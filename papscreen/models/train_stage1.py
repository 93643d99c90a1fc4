"""Train a stage-1 detector (cells versus background) on a DB_3 dataset.

Plain functions with explicit arguments: :func:`train_one_epoch` and :func:`evaluate` do one thing each, and
:func:`train_stage1` ties them together: patches are read once into memory, the network is trained with AdamW and a
cosine schedule, validated after every epoch, and stopped early when the validation loss has not improved for
``patience`` epochs; the best epoch's weights are kept (the last epoch is rarely the best one). The loss, not the
F1 of the *cell* class, picks the epoch: on a few hundred validation patches F1 reaches 1.0 within a few epochs and
then cannot tell epochs apart, while the loss keeps rewarding confident, well-separated outputs, which is what
sharp peaks on a field's dense map need.

Patches are augmented and normalised a whole batch at a time (:class:`~papscreen.models.stage1_data.PatchBatches`):
per-patch transforms would cost more than the tiny network's own training step.

Runs are deterministic for a seed: the network's initialisation and dropout draw from torch's generator inside
:func:`torch.random.fork_rng` (so nothing outside the call changes), shuffling and augmentation from a generator of
their own seeded the same; the same seed gives the same model (on CPU; GPU kernels may differ in the last bits).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from torch import nn

from papscreen.datasets.conventions import DEFAULT_STAGE1_SCALE
from papscreen.datasets.fingerprint import fingerprint_index
from papscreen.datasets.layout import DatasetIndex
from papscreen.datasets.provenance import dataset_provenance
from papscreen.errors import DatasetError
from papscreen.models.card import Normalisation
from papscreen.models.stage1 import Stage1Config, Stage1Detector
from papscreen.models.stage1_data import PatchBatches, dataset_working_scale, load_patches
from papscreen.models.stage1_net import build_stage1_network

__all__ = ["EpochCallback", "Stage1TrainingResult", "evaluate", "train_one_epoch", "train_stage1"]

EpochCallback = Callable[[dict[str, float]], None]
"""Called after every epoch with that epoch's row of the history."""


@dataclass(frozen=True)
class Stage1TrainingResult:
    """What :func:`train_stage1` produced.

    Attributes:
        detector: the detector with the best epoch's weights, ready to use or save.
        history: one row per epoch: ``epoch``, ``lr``, ``train_loss``, ``val_loss``, ``val_accuracy``,
            ``val_precision``, ``val_recall``, ``val_f1``, ``seconds``.
        metrics: the best epoch's validation metrics (``accuracy``, ``precision``, ``recall``, ``f1`` of the
            cell class, ``loss``) and ``best_epoch``.
        dataset_fingerprint: fingerprint of the DB_3 it was trained on.
        training: how it was trained (for the model card).
    """

    detector: Stage1Detector
    history: list[dict[str, float]]
    metrics: dict[str, float]
    dataset_fingerprint: str
    training: dict[str, Any] = field(default_factory=dict)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device | str,
) -> float:
    """One pass over ``loader`` in training mode; returns the mean loss per sample.

    Examples:
        >>> from papscreen.models.stage1_net import Stage1Net
        >>> data = [(torch.zeros(4, 3, 20, 20), torch.tensor([0, 1, 0, 1]))]
        >>> net = Stage1Net()
        >>> loss = train_one_epoch(net, data, torch.optim.SGD(net.parameters(), lr=0.1), nn.CrossEntropyLoss(), "cpu")
        >>> loss > 0
        True
    """
    model.train()
    total, count = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(labels)
        count += len(labels)
    return total / max(count, 1)


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str,
    loss_fn: nn.Module | None = None,
) -> dict[str, float]:
    """Accuracy, and precision, recall and F1 of the *cell* class (scikit-learn), plus the mean loss if asked.

    Examples:
        >>> from papscreen.models.stage1_net import Stage1Net
        >>> data = [(torch.zeros(4, 3, 20, 20), torch.tensor([0, 1, 0, 1]))]
        >>> sorted(evaluate(Stage1Net(), data, "cpu", nn.CrossEntropyLoss()))
        ['accuracy', 'f1', 'loss', 'precision', 'recall']
    """
    model.eval()
    truth: list[torch.Tensor] = []
    predicted: list[torch.Tensor] = []
    total = 0.0
    with torch.inference_mode():
        for images, labels in loader:
            logits = model(images.to(device))
            if loss_fn is not None:
                total += float(loss_fn(logits, labels.to(device))) * len(labels)
            truth.append(labels.cpu())
            predicted.append(logits.argmax(dim=1).cpu())
    y_true = torch.cat(truth).numpy() if truth else []
    y_pred = torch.cat(predicted).numpy() if predicted else []
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=1, zero_division=0
    )
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
    if loss_fn is not None:
        metrics["loss"] = total / max(len(y_true), 1)
    return metrics


def _check_index(index: DatasetIndex) -> None:
    if index.kind != "DB_3":
        raise DatasetError(index.root, f"stage 1 trains on a DB_3 dataset (cell/background), this is a {index.kind}")
    for split in ("train", "validation"):
        labels = {s.label for s in index.splits.get(split, ())}
        missing = [name for name in index.class_names if name not in labels]
        if missing:
            raise DatasetError(index.root, f"the {split} split has no {' and no '.join(missing)} patches")


def train_stage1(
    index: DatasetIndex,
    *,
    architecture: str = "cnn20plus",
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    augment: bool = True,
    progress: EpochCallback | None = None,
    working_scale: float | None = None,
    patience: int = 6,
    weight_decay: float = 1e-4,
    architecture_options: Mapping[str, Any] | None = None,
    config: Stage1Config | None = None,
) -> Stage1TrainingResult:
    """Train a stage-1 network on a DB_3 dataset and wrap the best epoch in a :class:`Stage1Detector`.

    Args:
        index: the DB_3 dataset (:func:`~papscreen.datasets.layout.read_dataset`).
        architecture: ``cnn20plus`` (default: on synthetic fields it mistakes far fewer inflammatory cells for
            nuclei) or ``cnn20`` (the original).
        epochs: the most epochs to run.
        batch_size: patches per step.
        lr: AdamW's peak learning rate (cosine decay over ``epochs``).
        seed: seeds initialisation, shuffling and augmentation.
        device: where to train (``cpu``, ``cuda``).
        augment: flips, quarter turns and colour jitter on training patches.
        progress: called after each epoch with its history row.
        working_scale: the scale DB_3 was cut at; by default read from its manifest (else 0.5).
        patience: stop after this many epochs without a lower validation loss.
        weight_decay: AdamW's decoupled weight decay.
        architecture_options: keyword arguments of the network (e.g. ``dense_activation``).
        config: detector settings for the result (its working scale is replaced by the dataset's).

    Raises:
        DatasetError: not a DB_3, a split without one of the classes, or an unreadable patch.
        ValueError: bad numbers (epochs, batch size, learning rate) or an unknown architecture.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from papscreen.datasets.layout import read_dataset
        >>> from papscreen.imaging.image_io import write_rgb
        >>> root = Path(tempfile.mkdtemp())
        >>> for split in ("train", "validation"):
        ...     for label, value in (("cell", 60), ("background", 230)):
        ...         for i in range(4):
        ...             write_rgb(root / split / label / f"{i}.png", np.full((20, 20, 3), value, np.uint8))
        >>> result = train_stage1(read_dataset(root), epochs=3, batch_size=4, lr=1e-2)
        >>> len(result.history) <= 3, result.metrics["f1"] >= 0.0
        (True, True)
    """
    if epochs < 1 or batch_size < 1 or not lr > 0 or patience < 1:
        raise ValueError(
            f"need epochs, batch_size, patience >= 1 and lr > 0; got {epochs}, {batch_size}, {patience}, {lr}"
        )
    _check_index(index)
    started = time.perf_counter()
    device = torch.device(device)
    scale = working_scale or dataset_working_scale(index) or DEFAULT_STAGE1_SCALE
    normalisation = Normalisation()
    train_images, train_labels = load_patches(index.splits["train"])
    val_images, val_labels = load_patches(index.splits["validation"])
    history: list[dict[str, float]] = []
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        network = build_stage1_network(architecture, **dict(architecture_options or {})).to(device)
        shuffler = torch.Generator().manual_seed(seed)
        train_loader = PatchBatches(
            train_images,
            train_labels,
            batch_size,
            shuffle=True,
            augment=augment,
            normalisation=normalisation,
            generator=shuffler,
            device=device,
        )
        val_loader = PatchBatches(
            val_images, val_labels, max(batch_size, 256), normalisation=normalisation, device=device
        )
        optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        loss_fn = nn.CrossEntropyLoss()
        best: dict[str, float] = {"f1": -1.0, "loss": float("inf")}
        best_state = copy.deepcopy(network.state_dict())
        best_epoch, stale = 0, 0
        for epoch in range(1, epochs + 1):
            tick = time.perf_counter()
            lr_now = optimizer.param_groups[0]["lr"]
            train_loss = train_one_epoch(network, train_loader, optimizer, loss_fn, device)
            scheduler.step()
            val = evaluate(network, val_loader, device, loss_fn)
            row = {"epoch": float(epoch), "lr": lr_now, "train_loss": train_loss}
            row |= {f"val_{k}": v for k, v in val.items()}
            row["seconds"] = time.perf_counter() - tick
            history.append(row)
            if progress is not None:
                progress(row)
            if val["loss"] < best["loss"]:
                best, best_epoch, stale = val, epoch, 0
                best_state = copy.deepcopy(network.state_dict())
            else:
                stale += 1
                if stale >= patience:
                    break
    network.load_state_dict(best_state)
    network = network.cpu().eval()
    base = config or Stage1Config(working_scale=scale)
    detector_config = replace(base, working_scale=scale)
    training = {
        "epochs_run": len(history),
        "epochs_max": epochs,
        "best_epoch": best_epoch,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "optimizer": "AdamW, cosine schedule",
        "patience": patience,
        "seed": seed,
        "augment": augment,
        "device": str(device),
        "data_provenance": dataset_provenance(index.root),
        "train_patches": len(train_labels),
        "validation_patches": len(val_labels),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return Stage1TrainingResult(
        detector=Stage1Detector(network, detector_config, normalisation, device),
        history=history,
        metrics={**best, "best_epoch": float(best_epoch)},
        dataset_fingerprint=fingerprint_index(index),
        training=training,
    )
