"""Frozen-backbone stage-2 training: features computed once (papscreen) versus the original's loop.

The original project trained its ResNet50 head with the backbone frozen, yet ran every crop of every epoch through
the whole backbone again. papscreen computes each crop's backbone features once (eval mode, no gradient) and
trains the head on the cached features. Both sides here use the same ResNet50 (random initialisation: ImageNet
weights do not change the cost), the same synthetic crops at the same input size, fp32, channels-last, the same
head, optimiser and number of epochs, and both validate after every epoch.

papscreen's side is the real :func:`~papscreen.models.train_stage2.train_stage2` call, including decoding the PNGs;
the baseline gets the crops already decoded and resized (an advantage to it). The baseline's epochs all cost the
same, so with ``--baseline-epochs`` below ``--epochs`` its time is measured over those epochs and extrapolated
linearly (the output says so).

Usage::

    .venv/bin/python benchmarks/frozen_training.py [--per-class 40] [--epochs 10] [--baseline-epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from papscreen.bethesda import BETHESDA_CLASSES, LEGACY_DB4_FOLDERS
from papscreen.datasets.layout import read_dataset
from papscreen.datasets.synthetic import render_cell_crop
from papscreen.imaging.image_io import write_rgb
from papscreen.models.backbones import build_stage2_network, split_feature_extractor
from papscreen.models.card import Normalisation
from papscreen.models.device import describe_machine
from papscreen.models.stage2_data import load_crops
from papscreen.models.train_stage2 import train_stage2
from papscreen.models.transforms import normalise_transform

FOLDER_OF = {label: folder for folder, label in LEGACY_DB4_FOLDERS.items()}


def write_db4(root: Path, per_class: dict[str, int], seed: int) -> None:
    """Synthetic DB_4 in the original's numbered folders, 250 px crops."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label in BETHESDA_CLASSES:
            for i in range(count):
                write_rgb(root / split / FOLDER_OF[label] / f"{i:05d}.png", render_cell_crop(rng, label))


def baseline(root: Path, *, input_size: int, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    """The original's loop: every epoch, every crop through the frozen ResNet50, then the head; seconds."""
    index = read_dataset(root)
    classes = tuple(BETHESDA_CLASSES)
    train_x, train_y = load_crops(index.splits["train"], 250, input_size, classes)
    val_x, val_y = load_crops(index.splits["validation"], 250, input_size, classes)
    norm = Normalisation()
    normalise = normalise_transform(norm.mean, norm.std)
    torch.manual_seed(seed)
    network = build_stage2_network("resnet50").to(memory_format=torch.channels_last)
    backbone, head = split_feature_extractor(network)
    backbone.eval()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    started = time.perf_counter()
    for epoch in range(epochs):
        tick = time.perf_counter()
        head.train()
        for idx in torch.randperm(len(train_y)).split(batch_size):
            x = normalise(train_x[idx]).contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                features = backbone(x)
            loss = F.cross_entropy(head(features), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        head.eval()
        with torch.inference_mode():
            for start in range(0, len(val_y), 64):
                network(normalise(val_x[start : start + 64]).contiguous(memory_format=torch.channels_last))
        print(f"  baseline epoch {epoch + 1}: {time.perf_counter() - tick:.1f} s", flush=True)
    return time.perf_counter() - started


def main() -> None:
    """Run both sides and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=40, help="training crops per class (validation: a quarter)")
    parser.add_argument("--input-size", type=int, default=224, help="network input side (the original: 224/250)")
    parser.add_argument("--epochs", type=int, default=10, help="head-training epochs on each side")
    parser.add_argument("--baseline-epochs", type=int, default=2, help="baseline epochs actually timed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {describe_machine()}")
    per_class = {"train": args.per_class, "validation": max(1, args.per_class // 4)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "DB_4"
        tick = time.perf_counter()
        write_db4(root, per_class, seed=0)
        n_train, n_val = 4 * per_class["train"], 4 * per_class["validation"]
        seconds = time.perf_counter() - tick
        print(f"data: {n_train} training + {n_val} validation synthetic 250 px crops ({seconds:.0f} s)")
        print(f"model: ResNet50, random init, input {args.input_size} px, fp32, {args.epochs} head-training epochs")

        tick = time.perf_counter()
        result = train_stage2(
            read_dataset(root),
            architecture="resnet50",
            mode="frozen",
            epochs=args.epochs,
            patience=args.epochs,
            batch_size=args.batch_size,
            input_size=args.input_size,
            seed=0,
        )
        ours = time.perf_counter() - tick
        print(
            f"papscreen (features once): {ours:.1f} s for {len(result.history)} epochs "
            f"(feature pass {result.training['feature_seconds']} s, including PNG decoding)"
        )

        timed = min(args.baseline_epochs, args.epochs)
        measured = baseline(root, input_size=args.input_size, epochs=timed, batch_size=args.batch_size, lr=1e-3, seed=0)
        total = measured * args.epochs / timed
        how = "measured" if timed == args.epochs else f"extrapolated from {timed} timed epochs ({measured:.1f} s)"
        print(f"baseline (backbone every epoch): {total:.1f} s for {args.epochs} epochs, {how}")
        print(f"ratio: {total / ours:.1f}x faster (target >= 8x)")


if __name__ == "__main__":
    main()
