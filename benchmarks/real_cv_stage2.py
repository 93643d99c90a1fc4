"""Stage 2 on real CRIC cells, grouped k-fold cross-validation: one recipe, every fold, figures with 95% CIs.

    python benchmarks/real_cv_stage2.py ../shared/data --folds 5 --arch resnet18 --input 64 --crop 96 --epochs 20

Each outer fold holds out whole fields (cells of ``cric-dev`` plus crops grouped by ``source_image``). Inside the
remaining fields an inner grouped split gives the trainer its validation set (early stopping and the softmax
temperature), so the held-out fold is never looked at before it is scored. Figures are computed on the held-out
*field* cells (the annotated points of ``cric-dev``): most loose crops are not centred on their cell (measured:
60-73% of the crops from fields outside ``cric-dev`` show glass at their centre), so their labels cannot be
trusted for scoring. ``--crops`` says whether they join the training set (``none``, ``centred``, ``all``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.layout import DatasetIndex, Sample
from papscreen.datasets.real import RealCells, read_real_cells, write_cell_crops
from papscreen.imaging.image_io import read_rgb
from papscreen.models.crossval import grouped_folds, mean_ci
from papscreen.models.device import describe_machine, resolve_device
from papscreen.models.metrics import classification_report
from papscreen.models.train_stage2 import train_stage2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/papscreen-real-cv"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, default=None, help="run the first N folds only (quick look)")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--input", type=int, default=64)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--balance", default="loss", choices=("loss", "sampler", "none"))
    parser.add_argument("--augment", default="full", choices=("full", "robust", "dihedral", "none"))
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--crops", default="none", choices=("none", "centred", "all"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="label for this recipe in the JSON")
    return parser.parse_args()


def centred(path: Path) -> bool:
    """Whether a crop shows stained material at its centre (its middle fifth is not mostly glass)."""
    rgb = read_rgb(path)
    h, w = rgb.shape[:2]
    middle = rgb[2 * h // 5 : 3 * h // 5, 2 * w // 5 : 3 * w // 5].astype(np.float32)
    return float(middle.min(axis=2).mean()) < 170.0


def index_of(paths: list[Path], labels: np.ndarray, train: np.ndarray, val: np.ndarray, root: Path) -> DatasetIndex:
    classes = BETHESDA_CLASSES

    def samples(ids: np.ndarray) -> tuple[Sample, ...]:
        return tuple(Sample(paths[i], classes.index(labels[i]), labels[i]) for i in ids)

    return DatasetIndex("DB_4", root, classes, "named", {"train": samples(train), "validation": samples(val)})


def fold_figures(y: np.ndarray, probs: np.ndarray, six: np.ndarray) -> dict[str, float | None]:
    metrics = classification_report(y, probs, BETHESDA_CLASSES)
    abnormal = (y > 0).astype(int)
    out: dict[str, float | None] = {
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "ece": metrics.ece,
        "lsil_plus_auc": float(roc_auc_score(abnormal, 1 - probs[:, 0])) if 0 < abnormal.sum() < len(y) else None,
    }
    for c in metrics.per_class:
        out[f"sensitivity_{c.name}"] = c.sensitivity
        out[f"specificity_{c.name}"] = c.specificity
    predicted = probs.argmax(1)
    for label in ("ASC-US", "ASC-H"):
        chosen = six == label
        out[f"{label}_called_abnormal"] = float((predicted[chosen] > 0).mean()) if chosen.any() else None
    return out


def main() -> int:
    args = parse_args()
    device = resolve_device("auto")
    print(f"machine: {describe_machine(device)}", flush=True)
    cells: RealCells = read_real_cells(args.data_dir)
    crops_dir = args.work / f"cells{args.crop}"
    paths = write_cell_crops(cells, crops_dir, args.crop)
    labels = cells.labels()
    six = np.array([c.label for c in cells.cells])
    groups = cells.groups
    from_field = np.array([c.from_field for c in cells.cells])
    usable = from_field.copy()
    if args.crops == "all":
        usable[:] = True
    elif args.crops == "centred":
        usable |= np.array([(not f) and centred(p) for f, p in zip(from_field, paths, strict=True)])
    print(f"cells: {len(cells.cells)} ({from_field.sum()} field points); used for training: {usable.sum()}")
    folds = grouped_folds(groups, labels, args.folds, args.seed)
    rows, pooled = [], []
    started = time.perf_counter()
    for fold in folds[: args.only_folds or len(folds)]:
        outer_train = fold.train[usable[fold.train]]
        inner = grouped_folds(groups[outer_train], labels[outer_train], 6, args.seed + 1 + fold.number)[0]
        train_ids, val_ids = outer_train[inner.train], outer_train[inner.validation]
        test_ids = fold.validation[from_field[fold.validation]]
        index = index_of(paths, labels, train_ids, val_ids, crops_dir)
        tick = time.perf_counter()
        result = train_stage2(
            index,
            architecture=args.arch,
            mode="finetune",
            epochs=args.epochs,
            batch_size=args.batch,
            lr=args.lr,
            seed=args.seed,
            device=device,
            input_size=args.input,
            crop_size=args.crop,
            patience=args.patience,
            balance=args.balance,
            augment=args.augment,
            bf16=args.bf16,
            progress=lambda r, fold=fold: print(
                f"  fold {fold.number} epoch {int(r['epoch'])}: val macro-F1 {r['val_macro_f1']:.3f} "
                f"({r['seconds']:.0f} s)",
                flush=True,
            ),
        )
        seconds = time.perf_counter() - tick
        probs = result.classifier.predict_proba([read_rgb(paths[i]) for i in test_ids], batch_size=128)
        y = np.array([BETHESDA_CLASSES.index(labels[i]) for i in test_ids])
        figures = fold_figures(y, probs, six[test_ids]) | {"train_seconds": seconds, "test_cells": len(test_ids)}
        rows.append(figures)
        pooled.append({"fold": fold.number, "ids": test_ids.tolist(), "probs": probs.tolist()})
        print(f"fold {fold.number}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if v is not None))
    summary = {key: mean_ci([r[key] for r in rows]).to_dict() for key in rows[0]}
    print(f"\n{args.name or args.arch}: {len(rows)} folds, {time.perf_counter() - started:.0f} s")
    for key, _value in summary.items():
        print(f"  {key:<28} {mean_ci([r[key] for r in rows])}")
    out = args.work / "results" / f"{args.name or args.arch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "machine": describe_machine(device),
                "folds": rows,
                "summary": summary,
                "predictions": pooled,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
