"""Stage-2 inference throughput on this machine: the original's loop against papscreen's batched paths.

    python benchmarks/stage2_throughput.py                 # ResNet50 at 224 px, fp32 / bf16 / int8
    python benchmarks/stage2_throughput.py --precisions fp32,int8 --val-crops 400
    python benchmarks/stage2_throughput.py --model MODEL --data DB_4 --train-crops 512 --calibration-crops 512
    python benchmarks/stage2_throughput.py --model papscreen/models/shipped_models/stage2 --cric ../shared/data

Baseline (the original's loop): one crop per forward pass, fp32 ResNet50 at 224 px, each crop read from disk as
a PNG and transformed as the original did (PIL open, resize to 224, ``ToTensor``, ``Normalize``), under
``no_grad``. With ``--model``, the baseline is still the seed's ResNet50 loop (its weights do not change its
speed; a stand-in built as below), and the model's own one-crop loop is timed beside it; ``--cric DATA_DIR``
scores real crops: the annotated nuclei of the model's validation fields (named on its card) as validation
crops, and those of other fields to calibrate int8.

Candidates: :class:`~papscreen.models.stage2.Stage2Classifier` on the same PNG files, decoded with OpenCV in a
thread pool (decoding releases the GIL) into uint8 batches, resized once per batch, with ``inference_mode`` and
channels-last memory, at fp32, bf16 autocast and int8 (``torch.ao`` x86 post-training static quantization,
calibrated on training crops; 8-bit activations where the CPU has VNNI, 7-bit elsewhere; ``--keep-float`` leaves
more layers in float). Every path is timed end to end, from the files on disk to probabilities.

Accuracy of the faster precisions is measured too, because speed bought with wrong answers is no gain: the
fraction of validation crops on which each precision predicts the same class as fp32 (target >= 99%), and the
change in validation macro-F1 (target: a loss of at most 0.005). Those numbers need a model whose predictions
mean something, and no ImageNet weights are downloaded here, so the model is built in a minute on synthetic
DB_4-style crops (:func:`~papscreen.datasets.synthetic.render_cell_crop`): a randomly initialised ResNet50
whose batch-normalisation statistics are re-estimated on training crops (so activations have the scales of a
trained network, which is what int8 ranges must cover), with a linear head fitted on its 2048 features. Its
decisions have real margins, unlike a network with random weights throughout, whose four logits are nearly
equal so that "agreement" would measure noise; a fine-tuned network would have larger margins still.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from sklearn.metrics import f1_score
from torch import nn
from torchvision import transforms

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.layout import read_dataset
from papscreen.datasets.real import four_class, read_real_cells, write_cell_crops
from papscreen.datasets.synthetic import render_cell_crop
from papscreen.models.backbones import build_stage2_network, split_feature_extractor
from papscreen.models.card import read_card
from papscreen.models.checkpoints import resolve_card_path
from papscreen.models.device import bf16_supported, describe_machine
from papscreen.models.quantize import activation_bits, float_layers, int8_available, prediction_agreement
from papscreen.models.stage2 import Stage2Classifier, stage2_card


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="resnet50")
    parser.add_argument("--input-size", type=int, default=224, help="network input side (the original's: 224)")
    parser.add_argument("--crop-size", type=int, default=250, help="crop side on disk (the original's DB_4: 250)")
    parser.add_argument("--precisions", default="fp32,bf16,int8", help="comma-separated candidates")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4, help="decoding threads of the candidate pipeline")
    parser.add_argument("--baseline-crops", type=int, default=24, help="crops the one-at-a-time baseline runs")
    parser.add_argument("--train-crops", type=int, default=128, help="crops for the head (and BN statistics)")
    parser.add_argument("--calibration-crops", type=int, default=64, help="training crops for int8 calibration")
    parser.add_argument(
        "--val-crops", type=int, help="validation crops timed and scored (default: 160 synthetic, or all of --data's)"
    )
    parser.add_argument(
        "--keep-float",
        help="comma-separated modules int8 leaves in float (default: the first convolution and the last linear)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model", type=Path, help="a trained stage-2 model folder: timed and scored instead of the stand-in"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="a DB_4 folder: validation crops timed and scored, training crops calibrate",
    )
    parser.add_argument(
        "--cric",
        type=Path,
        help="folder holding cric-dev/: with --model, its card's validation fields give the validation crops",
    )
    return parser.parse_args()


def dataset_crops(
    folder: Path, n_train: int, n_val: int | None, seed: int
) -> tuple[list[Path], list[Path], np.ndarray]:
    """Training paths (for calibration) and up to ``n_val`` (default all) validation paths with labels, at random."""
    index = read_dataset(folder)
    rng = np.random.default_rng(seed)
    train = [index.splits["train"][i].path for i in rng.permutation(len(index.splits["train"]))[:n_train]]
    val_samples = [index.splits["validation"][i] for i in rng.permutation(len(index.splits["validation"]))[:n_val]]
    labels = np.array([BETHESDA_CLASSES.index(s.label) for s in val_samples])
    return train, [s.path for s in val_samples], labels


def cric_crops(
    data_dir: Path, card_training: dict, crop_size: int, folder: Path, n_train: int, n_val: int | None, seed: int
) -> tuple[list[Path], list[Path], np.ndarray]:
    """Real crops (PNG, field scale): the model's validation fields' nuclei, and other fields' for calibration."""
    validation_fields = set(card_training.get("data", {}).get("validation_fields", ()))
    if not validation_fields:
        raise SystemExit("--cric needs a model whose card names its validation fields (papscreen train real)")
    cells = read_real_cells(data_dir)
    chosen = [i for i, c in enumerate(cells.cells) if c.from_field]
    paths = write_cell_crops(dataclasses.replace(cells, cells=tuple(cells.cells[i] for i in chosen)), folder, crop_size)
    labels = [BETHESDA_CLASSES.index(four_class(cells.cells[i].label)) for i in chosen]
    in_val = np.array([cells.cells[i].group in validation_fields for i in chosen])
    rng = np.random.default_rng(seed)
    val_ids = rng.permutation(np.flatnonzero(in_val))[:n_val]
    train_ids = rng.permutation(np.flatnonzero(~in_val))[:n_train]
    return [paths[i] for i in train_ids], [paths[i] for i in val_ids], np.array([labels[i] for i in val_ids])


def write_crops(folder: Path, n: int, seed: int, crop_size: int) -> tuple[list[Path], np.ndarray]:
    """Render ``n`` synthetic crops, balanced over the four classes, as PNG files; return paths and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(n) % len(BETHESDA_CLASSES)
    rng.shuffle(labels)
    paths = []
    for i, label in enumerate(labels):
        crop = render_cell_crop(rng, BETHESDA_CLASSES[label], size=crop_size)
        path = folder / f"{i:05d}_{BETHESDA_CLASSES[label]}.png"
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths, labels


def read_rgb(path: Path) -> np.ndarray:
    """The candidate pipeline's decoder: OpenCV (releases the GIL, so threads decode in parallel)."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def build_model(args: argparse.Namespace, train: list[Path], labels: np.ndarray) -> nn.Module:
    """Random ResNet50, BN statistics re-estimated on training crops, linear head fitted on its features."""
    torch.manual_seed(args.seed)
    network = build_stage2_network(args.architecture, len(BETHESDA_CLASSES))
    card = stage2_card(args.architecture, input_size=args.input_size, crop_size=args.crop_size)
    preprocess = Stage2Classifier(network, card).preprocess
    crops = np.stack([read_rgb(p) for p in train])
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over every batch below
    features, head = split_feature_extractor(network)
    network.train()
    with torch.no_grad():
        for start in range(0, min(len(crops), 128), args.batch_size):
            network(preprocess(crops[start : start + args.batch_size]).contiguous())
    network.eval()
    with torch.inference_mode():
        feats = torch.cat(
            [features(preprocess(crops[s : s + args.batch_size])) for s in range(0, len(crops), args.batch_size)]
        )
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    standardised = (feats - mean) / std
    linear = nn.Linear(feats.shape[1], len(BETHESDA_CLASSES))
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=0.5, max_iter=200)
    target = torch.from_numpy(labels).long()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(linear(standardised), target) + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():  # fold the standardisation into the head: head(f) == linear((f - mean) / std)
        head.weight.copy_(linear.weight / std)
        head.bias.copy_(linear.bias - (linear.weight * (mean / std)).sum(1))
    return network.eval()


def original_loop(network: nn.Module, paths: list[Path], input_size: int) -> np.ndarray:
    """The original's inference: PIL, torchvision's classic transforms, one crop per forward pass, fp32."""
    transform = transforms.Compose(
        [
            transforms.Resize((input_size, input_size)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    out = []
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB")
            out.append(torch.softmax(network(transform(image).unsqueeze(0)), dim=1).numpy())
    return np.concatenate(out)


def batched_pipeline(classifier: Stage2Classifier, paths: list[Path], batch_size: int, workers: int) -> np.ndarray:
    """papscreen's path: threads decode PNGs into uint8 batches while the classifier runs the previous batch."""
    out = []
    with ThreadPoolExecutor(workers) as pool:
        decoded = pool.map(read_rgb, paths)  # decoding runs ahead of inference
        for start in range(0, len(paths), batch_size):
            batch = np.stack([next(decoded) for _ in range(min(batch_size, len(paths) - start))])
            out.append(classifier.predict_proba(batch, batch_size=batch_size))
    return np.concatenate(out)


def timed(run: Callable[[], np.ndarray], n: int) -> tuple[np.ndarray, float]:
    """Result and images per second."""
    start = time.perf_counter()
    result = run()
    return result, n / (time.perf_counter() - start)


def main() -> int:
    args = parse_args()
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")  # the reference for agreement and macro-F1
    if "int8" in precisions and not int8_available():
        print("int8: this torch build has no x86 quantized engine; skipped")
        precisions.remove("int8")
    if "bf16" in precisions and not bf16_supported(torch.device("cpu")):
        print("bf16: this CPU has no native bf16 (AVX-512 BF16/AMX); emulated bf16 is slower than fp32; skipped")
        precisions.remove("bf16")
    print(f"machine: {describe_machine()}")
    if args.model is None:
        print(f"model: {args.architecture}, input {args.input_size} px from {args.crop_size} px PNG crops")
    print(f"batch {args.batch_size}, {args.workers} decoding threads")
    total_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="papscreen-stage2-bench-") as tmp:
        if args.cric is not None and args.model is not None:
            model_card = read_card(resolve_card_path(args.model), stage="stage2")
            train, val, val_labels = cric_crops(
                args.cric,
                model_card.training,
                model_card.crop_size,  # type: ignore[arg-type]  # a stage-2 card has one
                Path(tmp) / "cric",
                args.calibration_crops,
                args.val_crops,
                args.seed,
            )
        elif args.data is not None:
            train, val, val_labels = dataset_crops(args.data, args.train_crops, args.val_crops, args.seed)
        else:
            train, train_labels = write_crops(Path(tmp) / "train", args.train_crops, args.seed, args.crop_size)
            val, val_labels = write_crops(Path(tmp) / "val", args.val_crops or 160, args.seed + 1, args.crop_size)
        if args.model is not None:
            trained = Stage2Classifier.from_checkpoint(args.model)
            network, card = trained.network, trained.card
            args.input_size, args.crop_size = card.input_size, trained.crop_size
            if tuple(card.classes) != BETHESDA_CLASSES:
                raise SystemExit(f"{args.model}: classes {card.classes}; this benchmark scores {BETHESDA_CLASSES}")
            print(f"model: {args.model} ({card.architecture}, input {card.input_size} px, crop {trained.crop_size} px)")
        else:
            network = build_model(args, train, train_labels)
            card = stage2_card(args.architecture, input_size=args.input_size, crop_size=args.crop_size)
        print(f"setup (crops, model): {time.perf_counter() - total_start:.0f} s")

        n_base = min(args.baseline_crops, len(val))
        if args.model is not None:  # the seed's loop: ResNet50 at 224 px (a stand-in: weights do not set speed)
            torch.manual_seed(args.seed)
            seed_network = build_stage2_network("resnet50", len(BETHESDA_CLASSES)).eval()
            original_loop(seed_network, val[:2], 224)  # warm-up
            _, baseline_rate = timed(lambda: original_loop(seed_network, val[:n_base], 224), n_base)
            print(f"\nbaseline  the seed's loop: ResNet50 at 224 px, one crop per forward, fp32, PIL: "
                  f"{baseline_rate:7.1f} img/s   (1.00x, {n_base} crops)")  # fmt: skip
            original_loop(network, val[:2], args.input_size)
            _, own_rate = timed(lambda: original_loop(network, val[:n_base], args.input_size), n_base)
            print(f"          this model in the same loop, fp32, PIL: {own_rate:7.1f} img/s   "
                  f"({own_rate / baseline_rate:.2f}x)")  # fmt: skip
        else:
            original_loop(network, val[:2], args.input_size)  # warm-up
            _, baseline_rate = timed(lambda: original_loop(network, val[:n_base], args.input_size), n_base)
            print(f"\nbaseline  one crop per forward, fp32, PIL: {baseline_rate:7.1f} img/s   (1.00x, {n_base} crops)")

        probs: dict[str, np.ndarray] = {}
        for precision in precisions:
            fp32 = Stage2Classifier(network, card, "cpu", "fp32")
            if precision == "int8":
                start = time.perf_counter()
                calibration = np.stack([read_rgb(p) for p in train[: args.calibration_crops]])
                keep = None if args.keep_float is None else tuple(n.strip() for n in args.keep_float.split(","))
                classifier = fp32.calibrate_int8(calibration, batch_size=args.batch_size, keep_float=keep)
                kept = ", ".join(keep or float_layers(network))
                print(
                    f"          (int8 calibration on {len(calibration)} crops: {time.perf_counter() - start:.0f} s; "
                    f"{activation_bits()}-bit activations; float: {kept})"
                )
            else:
                classifier = fp32.with_precision(precision)  # type: ignore[arg-type]
            batched_pipeline(classifier, val[: args.batch_size], args.batch_size, args.workers)  # warm-up
            probs[precision], rate = timed(
                lambda c=classifier: batched_pipeline(c, val, args.batch_size, args.workers), len(val)
            )
            print(
                f"papscreen batched {precision:>4}, channels_last, cv2 threads: {rate:7.1f} img/s   "
                f"({rate / baseline_rate:.2f}x, {len(val)} crops)"
            )

        print("\naccuracy on the validation crops (fp32 is the reference):")
        reference_f1 = f1_score(val_labels, probs["fp32"].argmax(1), average="macro")
        for precision, p in probs.items():
            f1 = f1_score(val_labels, p.argmax(1), average="macro")
            agreement = prediction_agreement(p, probs["fp32"])
            verdict = (
                ""
                if precision == "fp32"
                else ("  OK" if agreement >= 0.99 and reference_f1 - f1 <= 0.005 else "  below target")
            )
            print(
                f"  {precision:>4}: agreement with fp32 {agreement:6.1%}   macro-F1 {f1:.4f} "
                f"(change {f1 - reference_f1:+.4f}){verdict}"
            )
    print(f"\ntotal time: {time.perf_counter() - total_start:.0f} s")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    sys.exit(main())
