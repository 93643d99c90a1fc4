"""How a model pair holds up when a real field looks as another lab's would: stain, grayscale, scale, focus, JPEG.

    python benchmarks/real_robustness.py ../shared/data --stage1 S1 --stage2 S2            # e.g. the shipped models
    python benchmarks/real_robustness.py ../shared/data --stage1 S1 --stage2 S2 --fields 20

Only one lab's images are at hand (CRIC), so a shift to another lab's stain, camera or scanner is simulated on
the model's own validation fields (named on its stage-2 card by ``papscreen train real``; never trained on):
each field is altered as a whole, then both stages run on it as they would on a lab's scan. Per alteration it
prints stage-1 recall of the annotated nuclei (within 15 px, scaled with the field) and detections per field,
and stage 2 on the annotated nuclei: accuracy, macro-F1, LSIL-or-worse against NILM AUC; then the field verdict
over all detections: the share of detections called LSIL or worse, and the field scorer's (from the card) AUC,
sensitivity and specificity over the fields (a field is abnormal when any annotated nucleus is). Run it on two models
trained on the same split with different augmentation (``papscreen train real --augment full`` and ``robust``)
to see what the augmentation buys on each shift.

The alterations: a warmer and a colder stain (the haematoxylin and eosin optical densities scaled apart, by
colour deconvolution), grayscale (a monochrome camera), 0.8x and 1.2x scale (another objective or camera),
defocus (Gaussian blur, sigma 2 px) and heavy JPEG (quality 30).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.metrics import f1_score, roc_auc_score

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.real import four_class, read_real_cells
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.image_io import read_rgb
from papscreen.models.device import describe_machine
from papscreen.models.evaluation import detection_recall
from papscreen.models.field_score import FieldScorer, field_scores
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier

_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_RGB_FROM_HED = _RGB_FROM_HED / np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)


def restain(rgb: np.ndarray, haematoxylin: float, eosin: float) -> np.ndarray:
    """Scale the haematoxylin and eosin optical densities (colour deconvolution, Ruifrok & Johnston)."""
    od = -np.log(np.clip(rgb.astype(np.float64), 1, 255) / 255.0)
    stains = od.reshape(-1, 3) @ _HED_FROM_RGB
    stains[:, 0] *= haematoxylin
    stains[:, 1] *= eosin
    out = np.exp(-(stains @ _RGB_FROM_HED)).reshape(rgb.shape) * 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


Alteration = Callable[[np.ndarray], np.ndarray]
ALTERATIONS: dict[str, tuple[Alteration, float]] = {
    "none": (lambda rgb: rgb, 1.0),
    "warmer stain (H x0.7, E x1.4)": (lambda rgb: restain(rgb, 0.7, 1.4), 1.0),
    "colder stain (H x1.4, E x0.7)": (lambda rgb: restain(rgb, 1.4, 0.7), 1.0),
    "grayscale": (grayscale, 1.0),
    "scale 0.8x": (lambda rgb: cv2.resize(rgb, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA), 0.8),
    "scale 1.2x": (lambda rgb: cv2.resize(rgb, None, fx=1.2, fy=1.2, interpolation=cv2.INTER_LINEAR), 1.2),
    "defocus (sigma 2 px)": (lambda rgb: cv2.GaussianBlur(rgb, (0, 0), 2.0), 1.0),
    "JPEG quality 30": (lambda rgb: jpeg(rgb, 30), 1.0),
}
"""Name -> (alteration of the whole field, the scale it applies to coordinates)."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="folder holding cric-dev/")
    parser.add_argument("--stage1", type=Path, required=True, help="stage-1 model folder")
    parser.add_argument("--stage2", type=Path, required=True, help="stage-2 model folder (its card names its fields)")
    parser.add_argument("--fields", type=int, default=None, help="use only the first N validation fields")
    parser.add_argument("--radius", type=float, default=15.0, help="stage-1 match distance at field scale, px")
    parser.add_argument("--only", action="append", help="run only this alteration (repeatable), e.g. --only none")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    detector = Stage1Detector.from_checkpoint(args.stage1)
    classifier = Stage2Classifier.from_checkpoint(args.stage2)
    fields = sorted(classifier.card.training.get("data", {}).get("validation_fields", ()))[: args.fields]
    if not fields:
        raise SystemExit(f"{args.stage2}: its card names no validation fields (train it with papscreen train real)")
    cells = read_real_cells(args.data_dir)
    by_field = cells.points_by_field()
    print(f"machine: {describe_machine()}")
    print(f"models: {args.stage1}, {classifier.card.name}; {len(fields)} validation fields, "
          f"{sum(len(by_field[f]) for f in fields)} annotated nuclei")  # fmt: skip
    card_scorer = classifier.card.field_scorer
    scorer = FieldScorer.from_dict(card_scorer) if card_scorer else FieldScorer(5, 0.5)
    header = (
        f"{'alteration':32} {'recall':>7} {'det/field':>9} {'accuracy':>8} {'macro-F1':>8} {'LSIL+ AUC':>9} "
        f"{'LSIL+ calls':>11} {'field AUC':>9} {'field sens':>10} {'field spec':>10}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    abnormal_field = np.array([any(c.label != "NILM" for c in by_field[f]) for f in fields])
    print(f"{abnormal_field.sum()} abnormal and {(~abnormal_field).sum()} normal fields; verdict: top {scorer.top_k}, "
          f"threshold {scorer.threshold:.3f}")  # fmt: skip
    started = time.perf_counter()
    for name, (alter, scale) in ALTERATIONS.items():
        if args.only and name not in args.only:
            continue
        found = points = detections = 0
        truth, probs, suspicion, calls = [], [], [], 0
        for group in fields:
            rgb = alter(read_rgb(cells.fields[group]))
            xy = np.array([(c.x, c.y) for c in by_field[group]], np.float64) * scale
            found_xy = detector.detect(rgb).xy
            every = classifier.predict_proba(cut_crops(rgb, found_xy, classifier.crop_size), batch_size=128)
            suspicion.append(1.0 - every[:, 0])
            calls += int((every.argmax(1) > 0).sum())
            match = detection_recall(found_xy, xy, args.radius * scale)
            found, points, detections = found + match.found, points + match.points, detections + match.detections
            # stage 2 sees the crop a field of this scale gives (its card's crop size, in the altered field's px)
            probs.append(classifier.predict_proba(cut_crops(rgb, xy, classifier.crop_size), batch_size=128))
            truth.extend(BETHESDA_CLASSES.index(four_class(c.label)) for c in by_field[group])
        p, t = np.concatenate(probs), np.array(truth)
        auc = roc_auc_score(t > 0, 1 - p[:, 0]) if 0 < (t > 0).sum() < len(t) else float("nan")
        scores = field_scores(suspicion, scorer.top_k)
        flagged = scores >= scorer.threshold
        field_auc = roc_auc_score(abnormal_field, scores) if 0 < abnormal_field.sum() < len(fields) else float("nan")
        print(
            f"{name:32} {found / points:7.3f} {detections / len(fields):9.0f} {(p.argmax(1) == t).mean():8.3f} "
            f"{f1_score(t, p.argmax(1), average='macro', labels=range(4)):8.3f} {auc:9.3f} "
            f"{calls / max(detections, 1):11.3f} {field_auc:9.3f} {flagged[abnormal_field].mean():10.3f} "
            f"{(~flagged[~abnormal_field]).mean():10.3f}",
            flush=True,
        )
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    sys.exit(main())
