"""Real-data accuracy of both stages on CRIC fields, beside two baselines, on this machine.

    python benchmarks/real_accuracy.py ../shared/data            # build, train both stages, measure
    python benchmarks/real_accuracy.py ../shared/data --stage1 MODEL --stage2 MODEL   # measure saved models

What it does, all in one run:

1. builds DB_3/DB_4 from the point-annotated fields (``DATA_DIR/cric-dev`` or ``DATA_DIR`` itself), split by
   image (no field contributes to both training and validation), ASC-US -> LSIL and ASC-H -> HSIL;
2. trains stage 1 on DB_3 and stage 2 on DB_4 with the given budget (or loads saved models);
3. stage 1: detects nuclei on every *validation field* and reports the recall of annotated nuclei within
   ``--radius`` px (15) and the mean detections per field (annotations are not exhaustive, so precision is only
   indicated by the detection count);
4. stage 2: accuracy, macro-F1, per-class sensitivity and ECE on the validation crops, beside the majority class
   and class-balanced logistic regression on hand-made nuclear features (area, darkness, N:C ratio, cell area).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.annotations import read_annotations
from papscreen.datasets.build import build_datasets
from papscreen.datasets.layout import read_dataset
from papscreen.imaging.image_io import read_rgb
from papscreen.models.baselines import NuclearFeatureBaseline, majority_class_probs
from papscreen.models.card import read_card
from papscreen.models.checkpoints import resolve_card_path
from papscreen.models.device import describe_machine, resolve_device
from papscreen.models.evaluation import DetectionMatch, detection_recall, evaluate_stage2
from papscreen.models.metrics import ClassificationMetrics, classification_report
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier
from papscreen.models.train_stage1 import train_stage1
from papscreen.models.train_stage2 import train_stage2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="folder holding cric-dev/ (or an annotated folder itself)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/papscreen-real-accuracy"), help="build/model folder")
    parser.add_argument("--stage1", type=Path, help="a saved stage-1 model (skips stage-1 training)")
    parser.add_argument("--stage2", type=Path, help="a saved stage-2 model (skips stage-2 training)")
    parser.add_argument("--stage1-scale", type=float, default=1 / 3, help="stage-1 working scale for CRIC fields")
    parser.add_argument("--stage1-arch", default="cnn20plus")
    parser.add_argument("--stage1-epochs", type=int, default=30)
    parser.add_argument("--stage2-arch", default="resnet18")
    parser.add_argument("--stage2-mode", default="finetune", choices=("frozen", "finetune"))
    parser.add_argument("--stage2-epochs", type=int, default=15)
    parser.add_argument("--stage2-input", type=int, default=112, help="stage-2 network input size, px")
    parser.add_argument("--stage2-crop", type=int, default=128, help="stage-2 crop side at full resolution, px")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"), help="stage-2 inference")
    parser.add_argument("--radius", type=float, default=15.0, help="stage-1 match distance, field px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every number here")
    return parser.parse_args()


def annotated_folder(data_dir: Path) -> Path:
    return data_dir / "cric-dev" if (data_dir / "cric-dev").is_dir() else data_dir


def build(args: argparse.Namespace) -> tuple[Path, Path, list[str]]:
    built = args.work / "built"
    manifest = built / "DB_4" / "manifest.json"
    if not manifest.exists():
        print(f"building DB_3/DB_4 into {built} ...", flush=True)
        build_datasets(
            annotated_folder(args.data_dir),
            built,
            crop_px=args.stage2_crop,
            stage1_scale=args.stage1_scale,
            seed=args.seed,
            overwrite=True,
        )
    split = json.loads(manifest.read_text())["split"]
    return built / "DB_3", built / "DB_4", list(split["validation"])


def stage1_model(args: argparse.Namespace, db3: Path, device: object) -> tuple[Stage1Detector, float]:
    if args.stage1 is not None:  # a saved model: its training time is on its card
        seconds = float(read_card(resolve_card_path(args.stage1)).training.get("seconds", 0.0))
        return Stage1Detector.from_checkpoint(args.stage1, device), seconds
    tick = time.perf_counter()
    result = train_stage1(
        read_dataset(db3),
        architecture=args.stage1_arch,
        epochs=args.stage1_epochs,
        seed=args.seed,
        device=device,
        progress=lambda row: print(f"  stage 1 epoch {int(row['epoch'])}: val F1 {row['val_f1']:.3f}", flush=True),
    )
    seconds = time.perf_counter() - tick
    folder = args.work / "models" / f"stage1-{args.stage1_arch}-{int(time.time())}"
    result.detector.to_checkpoint(folder, result.metrics, result.dataset_fingerprint, result.training)
    print(f"  saved {folder}")
    return result.detector, seconds


def stage2_model(args: argparse.Namespace, db4: Path, device: object) -> tuple[Stage2Classifier, float]:
    if args.stage2 is not None:
        classifier = Stage2Classifier.from_checkpoint(args.stage2, device, precision=args.precision)
        return classifier, float(classifier.card.training.get("seconds", 0.0))
    tick = time.perf_counter()
    result = train_stage2(
        read_dataset(db4),
        architecture=args.stage2_arch,
        mode=args.stage2_mode,
        epochs=args.stage2_epochs,
        input_size=args.stage2_input,
        crop_size=args.stage2_crop,
        seed=args.seed,
        device=device,
        progress=lambda row: print(
            f"  stage 2 epoch {int(row['epoch'])}: val macro-F1 {row['val_macro_f1']:.3f} ({row['seconds']:.0f} s)",
            flush=True,
        ),
    )
    seconds = time.perf_counter() - tick
    folder = args.work / "models" / f"stage2-{args.stage2_arch}-{int(time.time())}"
    result.save(folder)
    print(f"  saved {folder}")
    classifier = result.classifier
    if args.precision != "fp32":
        classifier = Stage2Classifier.from_checkpoint(folder, device, precision=args.precision)
    return classifier, seconds


def stage1_recall(
    detector: Stage1Detector, data_dir: Path, images: list[str], radius: float
) -> tuple[DetectionMatch, dict[str, DetectionMatch], float]:
    annotations = read_annotations(annotated_folder(data_dir))
    points: dict[str, list] = {}
    for point in (*annotations.points, *annotations.unlabelled_points):
        points.setdefault(point.image, []).append(point)
    total = DetectionMatch(0, 0, 0, 0)
    by_class: dict[str, DetectionMatch] = {}
    seconds = 0.0
    for image in images:
        rgb = read_rgb(annotations.images_dir / image)
        tick = time.perf_counter()
        found = detector.detect(rgb)
        seconds += time.perf_counter() - tick
        field = points.get(image, [])
        xy = np.array([[p.x, p.y] for p in field], np.float64).reshape(-1, 2)
        total = total + detection_recall(found.xy, xy, radius)
        for label in {p.label or p.source_label for p in field}:
            chosen = np.array([[p.x, p.y] for p in field if (p.label or p.source_label) == label]).reshape(-1, 2)
            match = detection_recall(found.xy, chosen, radius)
            match = DetectionMatch(match.points, match.found, 0, 0)
            by_class[label] = by_class.get(label, DetectionMatch(0, 0, 0, 0)) + match
    return total, by_class, seconds / max(len(images), 1)


def baselines(db4: Path, seed: int) -> dict[str, ClassificationMetrics]:
    index = read_dataset(db4)
    classes = list(index.class_names)
    train = index.splits["train"]
    val = index.splits["validation"]
    y_train = np.array([s.label_index for s in train])
    y_val = np.array([s.label_index for s in val])
    majority = majority_class_probs(y_train, len(val), len(classes))
    lr = NuclearFeatureBaseline(len(classes), seed).fit([read_rgb(s.path) for s in train], y_train)
    lr_probs = lr.predict_proba([read_rgb(s.path) for s in val])
    return {
        "majority class": classification_report(y_val, majority, classes),
        "nuclear-feature LR": classification_report(y_val, lr_probs, classes),
    }


def row(name: str, m: ClassificationMetrics) -> str:
    sens = " ".join(f"{(m.for_class(c).sensitivity or 0.0):6.3f}" for c in BETHESDA_CLASSES if c in m.class_names)
    return f"{name:<28} {m.accuracy:8.3f} {m.macro_f1:8.3f} {sens} {m.ece:6.3f}"


def main() -> int:
    args = parse_args()
    device = resolve_device("auto")
    print(f"machine: {describe_machine(device)}")
    db3, db4, val_images = build(args)
    counts = read_dataset(db4).counts()
    print(f"DB_4 crops per split and class: {counts}")

    detector, s1_seconds = stage1_model(args, db3, device)
    match, by_class, per_field = stage1_recall(detector, args.data_dir, val_images, args.radius)
    print(
        f"\nstage 1 ({detector.architecture}, working scale {detector.config.working_scale:.3f}), trained in "
        f"{s1_seconds:.0f} s, on {match.fields} validation fields:"
    )
    print(f"  recall of annotated nuclei within {args.radius:g} px: {match.recall:.3f} ({match.found}/{match.points})")
    print(f"  mean detections per field: {match.detections_per_field:.1f}; detection time {per_field:.2f} s/field")
    print("  recall by label: " + ", ".join(f"{k} {v.recall:.3f} (n={v.points})" for k, v in sorted(by_class.items())))

    classifier, s2_seconds = stage2_model(args, db4, device)
    evaluation = evaluate_stage2(classifier, read_dataset(db4), "validation")
    results = {f"stage 2 ({classifier.card.architecture})": evaluation.metrics, **baselines(db4, args.seed)}
    print(f"\nstage 2 trained in {s2_seconds:.0f} s; validation crops: {evaluation.metrics.n_samples}")
    header = " ".join(f"{c:>6}" for c in BETHESDA_CLASSES)
    print(f"{'method':<28} {'accuracy':>8} {'macro-F1':>8} {header} {'ECE':>6}   (per-class: sensitivity)")
    for name, metrics in results.items():
        print(row(name, metrics))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": describe_machine(device),
                    "stage1": {
                        "recall": match.recall,
                        "detections_per_field": match.detections_per_field,
                        "radius": args.radius,
                        "train_seconds": s1_seconds,
                    },
                    "stage2_train_seconds": s2_seconds,
                    "stage2": {k: v.to_dict() for k, v in results.items()},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
