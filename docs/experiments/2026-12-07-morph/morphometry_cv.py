"""One-off experiment (issue 15): can hand-made nuclear morphometry grade CRIC nuclei, alone or beside the CNN?

Features of each annotated nucleus, measured in a window of the field around its point: the nucleus (segmented
by Otsu on the haematoxylin density of the central region, the component under the point): area, perimeter,
circularity, solidity, elongation, mean and spread of its haematoxylin density and grey level (hyperchromasia,
chromatin), its contrast with a ring around it; the cell (the non-glass component holding the nucleus): area,
N/C ratio, cytoplasm colour (eosinophilic, keratinised against cyanophilic); crowding (dark blobs nearby);
colour statistics in windows of 16, 32 and 64 px. A gradient-boosted classifier (scikit-learn's
HistGradientBoosting, balanced class weights) is scored in the same five folds over fields as
``benchmarks/real_accuracy.py`` (seed 0); the folds' held-out cells are never used to fit.

    python docs/experiments/2026-12-07-morph/morphometry_cv.py ../shared/data --out docs/experiments/2026-12-07-morph
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score, roc_auc_score

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.real import read_real_cells
from papscreen.datasets.stain import haematoxylin_density
from papscreen.models.metrics import classification_report
from papscreen.models.real_cv import field_folds

WINDOW = 96  # half-size of the window read around a nucleus, field px


def _component_at(mask: np.ndarray, centre: tuple[int, int], reach: int) -> np.ndarray:
    """The connected component of ``mask`` nearest to ``centre`` (within ``reach`` px), or an empty mask."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    cy, cx = centre
    box = labels[max(cy - reach, 0) : cy + reach + 1, max(cx - reach, 0) : cx + reach + 1]
    ids, hits = np.unique(box[box > 0], return_counts=True)
    if not len(ids):
        return np.zeros_like(mask, bool)
    if labels[cy, cx] > 0:
        return labels == labels[cy, cx]
    return labels == ids[hits.argmax()]


def _shape(mask: np.ndarray) -> list[float]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return [0.0] * 5
    contour = max(contours, key=cv2.contourArea)
    area = float(mask.sum())
    perimeter = cv2.arcLength(contour, True) + 1e-6
    hull = cv2.contourArea(cv2.convexHull(contour)) + 1e-6
    if len(contour) >= 5:
        (_, _), (a, b), _ = cv2.fitEllipse(contour)
        elongation = max(a, b) / max(min(a, b), 1e-3)
    else:
        elongation = 1.0
    return [area, perimeter, 4 * np.pi * area / perimeter**2, min(cv2.contourArea(contour) / hull, 1.0), elongation]


def nucleus_features(rgb: np.ndarray, x: float, y: float) -> np.ndarray:
    """The feature vector of the nucleus at (x, y) of a field (see the module doc)."""
    cx, cy = round(x), round(y)
    pad = cv2.copyMakeBorder(rgb, WINDOW, WINDOW, WINDOW, WINDOW, cv2.BORDER_REFLECT)
    win = pad[cy : cy + 2 * WINDOW, cx : cx + 2 * WINDOW]
    c = WINDOW
    haem = cv2.GaussianBlur(haematoxylin_density(win), (0, 0), 1.0)
    grey = cv2.cvtColor(win, cv2.COLOR_RGB2GRAY).astype(np.float32)
    hsv = cv2.cvtColor(win, cv2.COLOR_RGB2HSV).astype(np.float32)

    centre = haem[c - 32 : c + 32, c - 32 : c + 32]
    scaled = np.clip(centre / max(float(centre.max()), 1e-3) * 255, 0, 255).astype(np.uint8)
    level, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    cut = level / 255 * max(float(centre.max()), 1e-3)
    nucleus = _component_at(cv2.morphologyEx((haem > cut).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3))), (c, c), 8)
    if nucleus.sum() > 60 * 60:
        nucleus = np.zeros_like(nucleus)
        cv2.circle(nucleus.view(np.uint8), (c, c), 6, 1, -1)
    if not nucleus.any():
        nucleus[c - 3 : c + 4, c - 3 : c + 4] = True
    ring = cv2.dilate(nucleus.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~nucleus

    glass = (grey > 215) & (hsv[..., 1] < 30)
    cell = _component_at(cv2.morphologyEx((~glass).astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5))), (c, c), 10)
    cell |= nucleus
    cytoplasm = cell & ~cv2.dilate(nucleus.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    cyto = win[cytoplasm] if cytoplasm.sum() > 20 else win[ring]

    blobs = haem > max(cut, 0.3)
    n_blobs, _ = cv2.connectedComponents(cv2.morphologyEx(blobs.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3))))

    feats = _shape(nucleus)
    feats += [
        float(haem[nucleus].mean()),
        float(haem[nucleus].std()),
        float(np.percentile(haem[nucleus], 90)),
        float(grey[nucleus].mean()),
        float(grey[nucleus].std()),
        float(grey[ring].mean() - grey[nucleus].mean()),
        float(haem[nucleus].mean() - haem[ring].mean()),
        float(cell.sum()),
        float(nucleus.sum() / max(cell.sum(), 1)),
        float(cell[0].any() or cell[-1].any() or cell[:, 0].any() or cell[:, -1].any()),
        *[float(v) for v in cyto.mean(axis=0)],
        float(cv2.cvtColor(cyto.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV)[..., 0].mean()),
        float(n_blobs),
        cut,
    ]
    for half in (8, 16, 32):
        part = win[c - half : c + half, c - half : c + half].reshape(-1, 3).astype(np.float32)
        feats += [*part.mean(axis=0), *part.std(axis=0), float(haem[c - half : c + half, c - half : c + half].mean())]
    return np.asarray(feats, np.float32)


def main() -> None:
    """Measure the features, then the grader in each fold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    cells = read_real_cells(args.data_dir)
    folds = field_folds(cells, args.folds, 0)
    groups = np.array(sorted({c.group for c in cells.cells}))
    field = [i for i, c in enumerate(cells.cells) if c.from_field]
    labels4 = cells.labels()
    class_index = {name: i for i, name in enumerate(BETHESDA_CLASSES)}
    images: dict[Path, np.ndarray] = {}
    rows = []
    for i in field:
        cell = cells.cells[i]
        if cell.path not in images:
            images[cell.path] = cv2.cvtColor(cv2.imread(str(cell.path)), cv2.COLOR_BGR2RGB)
        rows.append(nucleus_features(images[cell.path], cell.x, cell.y))
    features = np.stack(rows)
    truth = np.array([class_index[labels4[i]] for i in field])
    cell_groups = np.array([cells.cells[i].group for i in field])
    print(f"features {features.shape} in {time.perf_counter() - started:.0f} s")
    np.savez_compressed(args.out / "features.npz", features=features, truth=truth, groups=cell_groups)

    per_fold = []
    for fold in folds:
        held = set(groups[fold.validation])
        test = np.array([g in held for g in cell_groups])
        model = HistGradientBoostingClassifier(
            max_iter=300,
            learning_rate=0.05,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            class_weight="balanced",
            random_state=0,
        )
        model.fit(features[~test], truth[~test])
        probs = model.predict_proba(features[test])
        report = classification_report(truth[test], probs, BETHESDA_CLASSES)
        figures = {
            "accuracy": report.accuracy,
            "macro_f1": float(f1_score(truth[test], probs.argmax(1), average="macro")),
            "lsil_plus_auc": float(roc_auc_score(truth[test] > 0, 1 - probs[:, 0])),
            "ece": report.ece,
            **{f"sensitivity_{c.name}": c.sensitivity for c in report.per_class},
        }
        print(fold.number, {k: round(v, 3) for k, v in figures.items()})
        per_fold.append(figures)
    summary = {k: [f[k] for f in per_fold] for k in per_fold[0]}
    report = {"folds": summary, "seconds": time.perf_counter() - started}
    (args.out / "morphometry_cv.json").write_text(json.dumps(report, indent=1))
    for k, v in summary.items():
        print(f"{k}: {np.mean(v):.3f} (folds {', '.join(f'{x:.3f}' for x in v)})")


if __name__ == "__main__":
    main()
