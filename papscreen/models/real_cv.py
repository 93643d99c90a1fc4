"""Cross-validated accuracy of the whole two-stage method on real, point-annotated fields.

One fold (:func:`run_fold`) holds out whole fields. On the others it cuts DB_3 and trains stage 1, cuts nucleus
crops and trains stage 2 (each with an inner split by field for early stopping and calibration), and picks the
field verdict's operating point on those inner validation fields. Only then does it look at the held-out
fields, and measures:

* **stage 1**: recall of annotated nuclei within ``radius`` px, overall and by label, and detections per field;
* **stage 2** on the annotated nuclei: accuracy, macro-F1, per-class sensitivity and specificity, LSIL-or-worse
  against NILM AUC, ECE, and the six-label view (where ASC-US and ASC-H cells go);
* **end to end**: every detection classified; an annotated nucleus takes the class of the nearest detection
  within ``radius`` (a missed nucleus counts as NILM: nothing would flag it);
* **field verdict**: :class:`~papscreen.models.field_score.FieldScorer` over all detections of a field; a field
  is positive when any of its annotated nuclei is LSIL or worse.

:func:`summarise` turns the folds into means with 95% intervals; the recipes are frozen dataclasses, so a run is
described by data and can be written beside its figures.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from scipy.spatial import cKDTree
from sklearn.metrics import roc_auc_score

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.build import BuildOptions, BuildPlan, split_by_image, write_build
from papscreen.datasets.layout import DatasetIndex, Sample, read_dataset
from papscreen.datasets.real import SIX_LABELS, RealCells, four_class
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.image_io import read_rgb
from papscreen.models.crossval import Fold, grouped_folds, mean_ci
from papscreen.models.evaluation import detection_recall
from papscreen.models.field_score import FieldScorer, OperatingPoint, choose_threshold, field_scores
from papscreen.models.metrics import classification_report
from papscreen.models.proposals import ProposalConfig
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage2 import Stage2Classifier
from papscreen.models.train_stage1 import Stage1TrainingResult, train_stage1
from papscreen.models.train_stage2 import Stage2TrainingResult, train_stage2

__all__ = [
    "LABEL_GROUPS",
    "FieldAnalysis",
    "FieldRecipe",
    "FoldData",
    "FoldResult",
    "Stage1Recipe",
    "Stage2Recipe",
    "analyse_field",
    "choose_scorer",
    "detection_call_figures",
    "field_cell_ids",
    "field_folds",
    "field_operating_point",
    "fold_fields",
    "hard_negative_crops",
    "inner_split",
    "run_fold",
    "summarise",
    "train_classifier",
    "train_detector",
    "worst_label",
]

LABEL_GROUPS: Mapping[str, tuple[str, ...]] = {
    "all": SIX_LABELS,
    "NILM": ("NILM",),
    "LSIL": ("ASC-US", "LSIL"),
    "HSIL": ("ASC-H", "HSIL"),
    "SCC": ("SCC",),
}
"""Stage-1 recall is reported for each four-class group (ASC-US with LSIL, ASC-H with HSIL) and each label."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class Stage1Recipe:
    """How stage 1 is cut and trained in each fold, and the detector settings it is measured with."""

    architecture: str = "cnn20plus"
    working_scale: float = 1 / 3
    epochs: int = 30
    patience: int = 6
    abnormal_repeat: int = 1
    hard_background: float = 0.0
    threshold: float = 0.5
    min_distance_px: float = 16.0
    use_proposals: bool = False
    proposals_first: bool = False
    snap_radius_px: float = 0.0
    snap_sigma_px: float = 4.0
    proposal_min_score: float = 0.3
    proposal_min_diameter_px: float = 8.0


@dataclass(frozen=True)
class Stage2Recipe:
    """How stage 2 is trained in each fold: crops cut at field scale (``crop_size`` px), resized to ``input_size``.

    ``hard_negatives_per_field`` adds, from each training field, that many stage-1 detections lying farther than
    ``hard_negative_min_distance_px`` from every annotated nucleus, as NILM: in a field, stage 2 grades every
    detection (debris, inflammatory cells, cell edges), not only the annotated nuclei it was shown, and CRIC leaves
    inflammatory cells and many normal cells unannotated. ``hard_negative_source="normal"`` takes them only from
    fields whose every annotated nucleus is NILM: an abnormal field's unannotated detections may be abnormal cells,
    which taught as NILM pull real LSIL towards NILM (run 3 of the experiments ledger).
    """

    architecture: str = "resnet18"
    input_size: int = 64
    crop_size: int = 96
    epochs: int = 20
    patience: int = 8
    lr: float | None = None
    batch_size: int = 64
    balance: Literal["loss", "sampler", "none"] = "loss"
    augment: Literal["full", "robust", "dihedral", "none"] = "full"
    bf16: bool = False
    hard_negatives_per_field: int = 0
    hard_negative_min_distance_px: float = 20.0
    hard_negative_source: Literal["all", "normal"] = "all"


@dataclass(frozen=True)
class FieldRecipe:
    """The field verdict: top-k cells, and the sensitivity its threshold must reach on inner validation fields.

    With ``top_k_choices``, ``top_k`` is chosen among them on the same fields: the one whose threshold keeps the
    most normal fields unflagged (then the highest AUC). A field of 200 detections holds a few false-positive
    cells, so a small k can flag every field.
    """

    top_k: int = 5
    min_sensitivity: float = 0.95
    top_k_choices: tuple[int, ...] = ()


@dataclass
class FoldResult:
    """Everything one fold measured (figures) and the raw predictions behind them (for pooled plots)."""

    number: int
    figures: dict[str, float | None]
    cell_truth: np.ndarray  # four-class index of each held-out annotated nucleus
    cell_probs: np.ndarray  # stage 2 on the annotated nuclei
    cell_six: np.ndarray  # their six-label names
    e2e_probs: np.ndarray  # end to end (a missed nucleus is NILM)
    field_truth: np.ndarray
    field_score: np.ndarray
    field_threshold: float
    recall_curve: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def worst_label(labels: Sequence[str]) -> str:
    """The most severe Bethesda term among ``labels``."""
    return max(labels, key=SIX_LABELS.index)


def field_folds(cells: RealCells, k: int, seed: int) -> list[Fold]:
    """Folds over the groups (fields), stratified by each field's worst label; indices refer to ``sorted groups``."""
    by_group: dict[str, list[str]] = {}
    for cell in cells.cells:
        by_group.setdefault(cell.group, []).append(cell.label)
    groups = sorted(by_group)
    return grouped_folds(np.array(groups), np.array([worst_label(by_group[g]) for g in groups]), k, seed)


def inner_split(
    cells: RealCells, groups: Sequence[str], seed: int, fraction: float = 1 / 6
) -> tuple[list[str], list[str]]:
    """Training groups split once more by group, for early stopping, calibration and the verdict's threshold.

    Each of the four classes gets about ``fraction`` of its cells in validation and, wherever two groups hold it,
    some on each side (:func:`~papscreen.datasets.build.split_by_image`): a validation set without HSIL could
    neither stop training nor calibrate it.
    """
    wanted = set(groups)
    counts: dict[str, dict[str, int]] = {g: {} for g in wanted}
    for cell, label in zip(cells.cells, cells.labels(), strict=True):
        if cell.group in wanted:
            counts[cell.group][label] = counts[cell.group].get(label, 0) + 1
    split = split_by_image(counts, fraction, seed)
    return list(split["train"]), list(split["validation"])


def train_detector(
    plan: BuildPlan, train: Sequence[str], validation: Sequence[str], recipe: Stage1Recipe, work: Path, device: Any
) -> Stage1TrainingResult:
    """Cut DB_3 from the given fields only (with the recipe's options) and train stage 1 on it.

    The result's detector carries the recipe's detector settings (threshold, snapping, proposals).
    """
    image_of = {Path(name).stem: name for name in plan.points}
    options = dataclasses.replace(
        plan.options,
        stage1_scale=recipe.working_scale,
        abnormal_repeat=recipe.abnormal_repeat,
        hard_background_fraction=recipe.hard_background,
    )
    split = {
        "train": tuple(sorted(image_of[g] for g in train if g in image_of)),
        "validation": tuple(sorted(image_of[g] for g in validation if g in image_of)),
    }
    write_build(dataclasses.replace(plan, options=options, split=split), work, overwrite=True)
    result = train_stage1(
        read_dataset(work / "DB_3"),
        architecture=recipe.architecture,
        epochs=recipe.epochs,
        patience=recipe.patience,
        seed=plan.options.seed,
        device=device,
    )
    detector = result.detector.with_config(
        threshold=recipe.threshold,
        min_distance_px=recipe.min_distance_px,
        use_proposals=recipe.use_proposals,
        proposals_first=recipe.proposals_first,
        snap_radius_px=recipe.snap_radius_px,
        snap_sigma_px=recipe.snap_sigma_px,
        proposal_min_score=recipe.proposal_min_score,
        proposals=ProposalConfig(min_diameter_px=recipe.proposal_min_diameter_px),
    )
    return dataclasses.replace(result, detector=detector)


def train_classifier(
    crops: Sequence[Path],
    labels: Sequence[str],
    train: np.ndarray,
    validation: np.ndarray,
    recipe: Stage2Recipe,
    seed: int,
    device: Any,
    log: Log,
    negatives: Mapping[str, Sequence[Path]] | None = None,
) -> Stage2TrainingResult:
    """Train stage 2 on the crops ``train`` (validating on ``validation``), field-scale crops already on disk.

    ``negatives`` (``{"train": [...], "validation": [...]}``) are extra crops taught as NILM (hard negatives).
    """
    nilm = BETHESDA_CLASSES.index("NILM")

    def samples(ids: np.ndarray, split: str) -> tuple[Sample, ...]:
        extra = tuple(Sample(Path(p), nilm, "NILM") for p in (negatives or {}).get(split, ()))
        return tuple(Sample(crops[i], BETHESDA_CLASSES.index(labels[i]), labels[i]) for i in ids) + extra

    splits = {"train": samples(train, "train"), "validation": samples(validation, "validation")}
    files = [str(s.path.parent) for split in splits.values() for s in split]
    root = Path(os.path.commonpath(files)) if files else Path(".")  # the fingerprint names files under it
    index = DatasetIndex("DB_4", root, BETHESDA_CLASSES, "named", splits)
    return train_stage2(
        index,
        architecture=recipe.architecture,
        mode="finetune",
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        seed=seed,
        device=device,
        input_size=recipe.input_size,
        crop_size=recipe.crop_size,
        patience=recipe.patience,
        balance=recipe.balance,
        augment=recipe.augment,
        bf16=recipe.bf16,
        progress=lambda r: log(f"    stage 2 epoch {int(r['epoch'])}: val macro-F1 {r['val_macro_f1']:.3f}"),
    )


def hard_negative_crops(
    detector: Stage1Detector,
    cells: RealCells,
    groups: Sequence[str],
    recipe: Stage2Recipe,
    out_dir: Path,
    seed: int,
) -> list[Path]:
    """Up to ``recipe.hard_negatives_per_field`` detections per field far from every annotated nucleus, as crops.

    The detections are drawn at random (seeded by ``seed``) among those farther than the recipe's distance from
    each annotated point, and cut at the recipe's crop size, as the pipeline cuts them. With the recipe's
    ``hard_negative_source`` at ``"normal"``, fields holding an abnormal annotation give none. Written as PNG under
    ``out_dir`` (replaced: it is a cache), named after their field.
    """
    if recipe.hard_negatives_per_field <= 0:
        return []
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    by_field = cells.points_by_field()
    for group in groups:
        if group not in cells.fields:
            continue
        if recipe.hard_negative_source == "normal" and any(c.label != "NILM" for c in by_field.get(group, ())):
            continue
        rgb = read_rgb(cells.fields[group])
        xy = detector.detect(rgb).xy
        annotated = _points(cells, group)
        if len(xy) and len(annotated):
            distance, _ = cKDTree(annotated).query(xy, k=1)
            xy = xy[distance > recipe.hard_negative_min_distance_px]
        chosen = rng.permutation(len(xy))[: recipe.hard_negatives_per_field]
        for n, crop in enumerate(cut_crops(rgb, xy[np.sort(chosen)], recipe.crop_size)):
            path = out_dir / f"{group}__negative{n}.png"
            cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
            paths.append(path)
    return paths


@dataclass(frozen=True)
class FieldAnalysis:
    """One field through both stages: detections, their class probabilities, and the recall curve."""

    xy: np.ndarray
    scores: np.ndarray
    probs: np.ndarray


def analyse_field(detector: Stage1Detector, classifier: Stage2Classifier, rgb: np.ndarray) -> FieldAnalysis:
    """Detect at the detector's threshold and classify every detection."""
    found = detector.detect(rgb)
    crops = cut_crops(rgb, found.xy, classifier.crop_size)
    probs = classifier.predict_proba(crops, batch_size=128) if len(crops) else np.zeros((0, 4), np.float32)
    return FieldAnalysis(found.xy, found.scores, probs)


def _abnormal(probs: np.ndarray) -> np.ndarray:
    return 1.0 - probs[:, 0] if len(probs) else np.zeros(0)


def _auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    truth = np.asarray(truth, bool)
    return float(roc_auc_score(truth, score)) if 0 < truth.sum() < len(truth) else None


def cell_figures(truth: np.ndarray, probs: np.ndarray, prefix: str) -> dict[str, float | None]:
    """Four-class figures of cells, keys prefixed (``stage2_``, ``e2e_``)."""
    metrics = classification_report(truth, probs, BETHESDA_CLASSES)
    out: dict[str, float | None] = {
        f"{prefix}accuracy": metrics.accuracy,
        f"{prefix}macro_f1": metrics.macro_f1,
        f"{prefix}ece": metrics.ece,
        f"{prefix}lsil_plus_auc": _auc(truth > 0, _abnormal(probs)),
    }
    for c in metrics.per_class:
        out[f"{prefix}sensitivity_{c.name}"] = c.sensitivity
        out[f"{prefix}specificity_{c.name}"] = c.specificity
    return out


def six_label_figures(six: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """For each Bethesda term: the share of its cells called LSIL or worse, and called HSIL or worse."""
    predicted = probs.argmax(axis=1)
    out: dict[str, float | None] = {}
    for label in SIX_LABELS:
        chosen = six == label
        out[f"six_{label}_called_lsil_plus"] = float((predicted[chosen] >= 1).mean()) if chosen.any() else None
        out[f"six_{label}_called_hsil_plus"] = float((predicted[chosen] >= 2).mean()) if chosen.any() else None
    return out


def end_to_end_probs(analysis: FieldAnalysis, truth_xy: np.ndarray, radius: float) -> np.ndarray:
    """Class probabilities of each annotated nucleus as the pipeline sees it: its nearest detection's, else NILM."""
    out = np.tile(np.eye(len(BETHESDA_CLASSES), dtype=np.float32)[0], (len(truth_xy), 1))
    if len(analysis.xy) and len(truth_xy):
        distance, nearest = cKDTree(analysis.xy).query(truth_xy, k=1)
        hit = distance <= radius
        out[hit] = analysis.probs[nearest[hit]]
    return out


@dataclass(frozen=True)
class FoldData:
    """What every fold shares: the cells, their crops on disk, the build plan of the fields, and the folds."""

    cells: RealCells
    crop_paths: tuple[Path, ...]
    plan: BuildPlan
    folds: tuple[Fold, ...]
    groups: tuple[str, ...]  # sorted: the folds' indices refer to it


def _points(cells: RealCells, group: str, labels: Sequence[str] = SIX_LABELS) -> np.ndarray:
    chosen = [(c.x, c.y) for c in cells.points_by_field().get(group, []) if c.label in labels]
    return np.array(chosen, np.float64).reshape(-1, 2)


def _recall_curve(analyses: Mapping[str, FieldAnalysis], cells: RealCells, radius: float) -> dict[str, list[float]]:
    """Recall (all labels) and detections per field at each stage-1 threshold from the detector's own upwards."""
    thresholds = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
    curve: dict[str, list[float]] = {"threshold": thresholds, "detections_per_field": [], "recall": []}
    for t in thresholds:
        found = points = detections = 0
        for group, analysis in analyses.items():
            match = detection_recall(analysis.xy[analysis.scores >= t], _points(cells, group), radius)
            found, points, detections = found + match.found, points + match.points, detections + match.detections
        curve["detections_per_field"].append(detections / max(len(analyses), 1))
        curve["recall"].append(found / max(points, 1))
    return curve


def field_cell_ids(cells: RealCells, groups: Sequence[str]) -> np.ndarray:
    """Indices of the annotated field nuclei of ``groups`` (loose crops are left out: they are not centred)."""
    wanted = set(groups)
    return np.array([i for i, c in enumerate(cells.cells) if c.from_field and c.group in wanted], dtype=np.int64)


def fold_fields(data: FoldData, fold: Fold) -> tuple[list[str], list[str], list[str]]:
    """A fold's training, inner validation and held-out fields (only groups with a field image; see module doc)."""
    cells = data.cells
    groups = np.array(data.groups)
    with_fields = [g for g in groups[fold.train] if g in cells.fields]
    train_groups, val_groups = inner_split(cells, with_fields, data.plan.options.seed + 1 + fold.number)
    return train_groups, val_groups, [g for g in fold.validation_groups if g in cells.fields]


def run_fold(
    data: FoldData,
    fold: Fold,
    stage1: Stage1Recipe,
    stage2: Stage2Recipe,
    verdict: FieldRecipe,
    work: Path,
    device: Any,
    *,
    radius: float = 15.0,
    log: Log = print,
) -> FoldResult:
    """Train both stages on the fold's training fields and measure them on its held-out fields."""
    cells, seed = data.cells, data.plan.options.seed
    train_groups, val_groups, test_groups = fold_fields(data, fold)
    seconds: dict[str, float] = {}

    tick = time.perf_counter()
    detector = train_detector(data.plan, train_groups, val_groups, stage1, work / f"fold{fold.number}", device).detector
    seconds["stage1_training"] = time.perf_counter() - tick
    log(f"  fold {fold.number}: stage 1 trained in {seconds['stage1_training']:.0f} s")

    train_ids, val_ids = field_cell_ids(cells, train_groups), field_cell_ids(cells, val_groups)
    tick = time.perf_counter()
    negatives = hard_negatives(detector, cells, train_groups, val_groups, stage2, work / f"fold{fold.number}", seed)
    classifier = train_classifier(
        data.crop_paths, cells.labels(), train_ids, val_ids, stage2, seed, device, log, negatives
    ).classifier
    seconds["stage2_training"] = time.perf_counter() - tick
    log(f"  fold {fold.number}: stage 2 trained in {seconds['stage2_training']:.0f} s")

    _save_models(work / f"fold{fold.number}" / "models", detector, classifier)
    tick = time.perf_counter()
    scorer, _ = field_operating_point(detector, classifier, cells, val_groups, verdict)
    analyses = {g: analyse_field(detector, classifier, read_rgb(cells.fields[g])) for g in test_groups}
    seconds["analysis"] = time.perf_counter() - tick
    return _measure(data, fold, analyses, detector, classifier, scorer, radius, seconds)


def hard_negatives(
    detector: Stage1Detector,
    cells: RealCells,
    train_groups: Sequence[str],
    val_groups: Sequence[str],
    recipe: Stage2Recipe,
    work: Path,
    seed: int,
) -> dict[str, list[Path]]:
    """The recipe's hard negatives of the training and of the validation fields (none when the recipe has none)."""
    return {
        split: hard_negative_crops(detector, cells, groups, recipe, work / "negatives" / split, seed + n)
        for n, (split, groups) in enumerate((("train", train_groups), ("validation", val_groups)))
    }


def field_operating_point(
    detector: Stage1Detector,
    classifier: Stage2Classifier,
    cells: RealCells,
    groups: Sequence[str],
    verdict: FieldRecipe,
) -> tuple[FieldScorer, OperatingPoint]:
    """The field scorer whose threshold flags ``verdict.min_sensitivity`` of the abnormal fields among ``groups``.

    Every field is analysed by both stages; a field is abnormal when any of its annotated nuclei is not NILM.
    """
    analysed = {g: analyse_field(detector, classifier, read_rgb(cells.fields[g])) for g in groups if g in cells.fields}
    return choose_scorer(analysed, cells, verdict)


def choose_scorer(
    analysed: Mapping[str, FieldAnalysis], cells: RealCells, verdict: FieldRecipe
) -> tuple[FieldScorer, OperatingPoint]:
    """Threshold (and, with ``top_k_choices``, k) of the field scorer, chosen on already analysed fields."""
    by_field = cells.points_by_field()
    truth = np.array([any(c.label != "NILM" for c in by_field.get(g, [])) for g in analysed])
    suspicion = [_abnormal(a.probs) for a in analysed.values()]
    candidates = []
    for k in verdict.top_k_choices or (verdict.top_k,):
        scores = field_scores(suspicion, k)
        point = choose_threshold(scores, truth, verdict.min_sensitivity)
        rank = (float(np.nan_to_num(point.specificity, nan=0.0)), _auc(truth, scores) or 0.0)
        candidates.append((rank, FieldScorer(k, point.threshold), point))
    _, scorer, point = max(candidates, key=lambda candidate: candidate[0])
    return scorer, point


def _save_models(folder: Path, detector: Stage1Detector, classifier: Stage2Classifier) -> None:
    """Keep a fold's two models (``stage1/``, ``stage2/``), so other settings can be measured without retraining."""
    if folder.exists():
        shutil.rmtree(folder)
    detector.to_checkpoint(folder / "stage1", {}, None, {})
    classifier.to_checkpoint(folder / "stage2")


def _measure(
    data: FoldData,
    fold: Fold,
    analyses: Mapping[str, FieldAnalysis],
    detector: Stage1Detector,
    classifier: Stage2Classifier,
    scorer: FieldScorer,
    radius: float,
    seconds: dict[str, float],
) -> FoldResult:
    cells = data.cells
    by_field = cells.points_by_field()
    figures: dict[str, float | None] = {}
    for name, labels in LABEL_GROUPS.items():
        found = points = 0
        for group in analyses:
            match = detection_recall(analyses[group].xy, _points(cells, group, labels), radius)
            found, points = found + match.found, points + match.points
        figures[f"stage1_recall_{name}"] = found / points if points else None
    figures["stage1_detections_per_field"] = float(np.mean([len(a.xy) for a in analyses.values()]))

    held = [c for g in analyses for c in by_field[g]]
    truth = np.array([BETHESDA_CLASSES.index(four_class(c.label)) for c in held])
    six = np.array([c.label for c in held])
    crops = [cut_crops(read_rgb(cells.fields[g]), _points(cells, g), classifier.crop_size) for g in analyses]
    probs = classifier.predict_proba(np.concatenate(crops), batch_size=128)
    e2e = np.concatenate([end_to_end_probs(analyses[g], _points(cells, g), radius) for g in analyses])
    figures |= cell_figures(truth, probs, "stage2_") | six_label_figures(six, probs) | cell_figures(truth, e2e, "e2e_")

    field_truth = np.array([any(c.label != "NILM" for c in by_field[g]) for g in analyses])
    figures |= detection_call_figures(analyses, {g: _points(cells, g) for g in analyses}, field_truth, radius)
    scores = field_scores([_abnormal(a.probs) for a in analyses.values()], scorer.top_k)
    flagged = scores >= scorer.threshold
    figures["field_sensitivity"] = float(flagged[field_truth].mean()) if field_truth.any() else None
    figures["field_specificity"] = float((~flagged[~field_truth]).mean()) if (~field_truth).any() else None
    figures["field_auc"] = _auc(field_truth, scores)
    figures["field_threshold"] = scorer.threshold
    return FoldResult(
        number=fold.number,
        figures=figures,
        cell_truth=truth,
        cell_probs=probs,
        cell_six=six,
        e2e_probs=e2e,
        field_truth=field_truth,
        field_score=scores,
        field_threshold=scorer.threshold,
        recall_curve=_recall_curve(analyses, cells, radius),
        seconds=seconds,
    )


def detection_call_figures(
    analyses: Mapping[str, FieldAnalysis], truth_xy: Mapping[str, np.ndarray], field_truth: np.ndarray, radius: float
) -> dict[str, float | None]:
    """Share of detections called LSIL or worse: all, those far from every annotated nucleus, those of normal fields.

    The field verdict's specificity rests on these: stage 2 grades every detection, not only annotated nuclei.
    """
    called = {g: a.probs.argmax(1) > 0 if len(a.probs) else np.zeros(0, bool) for g, a in analyses.items()}
    far = {g: _far_from(a.xy, truth_xy[g], radius) for g, a in analyses.items()}
    normal = [g for g, positive in zip(analyses, field_truth, strict=True) if not positive]

    def share(parts: list[np.ndarray]) -> float | None:
        pooled = np.concatenate(parts) if parts else np.zeros(0, bool)
        return float(pooled.mean()) if len(pooled) else None

    return {
        "detections_called_lsil_plus": share(list(called.values())),
        "unannotated_detections_called_lsil_plus": share([called[g][far[g]] for g in analyses]),
        "normal_field_detections_called_lsil_plus": share([called[g] for g in normal]),
    }


def _far_from(xy: np.ndarray, truth_xy: np.ndarray, radius: float) -> np.ndarray:
    if len(xy) == 0 or len(truth_xy) == 0:
        return np.ones(len(xy), bool)
    distances, _ = cKDTree(truth_xy).query(xy, k=1)
    return distances > radius


def summarise(results: Sequence[FoldResult]) -> dict[str, dict[str, float | int]]:
    """Mean and 95% interval over folds of every figure."""
    keys = list(results[0].figures)
    return {k: mean_ci([r.figures.get(k) for r in results]).to_dict() for k in keys}


def prepare(cells: RealCells, plan: BuildPlan, crop_paths: Sequence[Path], k: int, seed: int) -> FoldData:
    """Bundle what every fold needs; the folds are over fields (and loose crops' source fields)."""
    groups = tuple(sorted({c.group for c in cells.cells}))
    return FoldData(cells, tuple(crop_paths), plan, tuple(field_folds(cells, k, seed)), groups)


def default_build_options(seed: int) -> BuildOptions:
    """Build options for cutting each fold's DB_3 (DB_4 crops are cut separately, at field scale)."""
    return BuildOptions(crop_px=8, seed=seed)
