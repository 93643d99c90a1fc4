"""Cross-validation of the whole method on a tiny CRIC-like folder: it runs, and no held-out field is trained on."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from papscreen.datasets.build import plan_build
from papscreen.datasets.real import read_real_cells, write_cell_crops
from papscreen.models import real_cv
from papscreen.models.real_cv import FieldRecipe, Stage1Recipe, Stage2Recipe, default_build_options, prepare
from papscreen.models.real_cv_report import write_report
from tests.models.cric_like import cric_like


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = cric_like(tmp_path_factory.mktemp("cric"))
    work = tmp_path_factory.mktemp("work")
    cells = read_real_cells(root)
    crops = write_cell_crops(cells, work / "cells", 32)
    plan = plan_build(root / "cric-dev", default_build_options(seed=0))
    data = prepare(cells, plan, crops, k=3, seed=0)
    trained_on: list[str] = []
    original = real_cv.train_stage2

    def recording_train_stage2(index: Any, **kwargs: Any) -> Any:
        trained_on.extend(s.path.name.split("__")[0] for split in index.splits.values() for s in split)
        return original(index, **kwargs)

    real_cv.train_stage2 = recording_train_stage2  # type: ignore[assignment]  # a recording wrapper, restored below
    try:
        result = real_cv.run_fold(
            data,
            data.folds[0],
            Stage1Recipe(working_scale=0.5, epochs=2, patience=2, snap_radius_px=8),
            Stage2Recipe(architecture="resnet18_half", input_size=16, crop_size=32, epochs=1, batch_size=8),
            FieldRecipe(top_k=2, min_sensitivity=1.0),
            work,
            "cpu",
            log=lambda _: None,
        )
    finally:
        real_cv.train_stage2 = original  # type: ignore[assignment]
    return {"data": data, "result": result, "work": work, "trained_on": trained_on}


def test_no_held_out_field_is_trained_on(fold_run: dict[str, Any]) -> None:
    fold = fold_run["data"].folds[0]
    held_out = set(fold.validation_groups)
    assert held_out
    assert not held_out & set(fold_run["trained_on"])
    manifest = json.loads((fold_run["work"] / "fold0" / "DB_3" / "manifest.json").read_text())
    db3_fields = {Path(name).stem for images in manifest["split"].values() for name in images}
    assert db3_fields
    assert not held_out & db3_fields


def test_fold_reports_every_figure_of_the_measuring_stick(fold_run: dict[str, Any]) -> None:
    figures = fold_run["result"].figures
    for key in ("stage1_recall_all", "stage1_recall_HSIL", "stage1_detections_per_field", "stage2_macro_f1",
                "stage2_sensitivity_SCC", "stage2_lsil_plus_auc", "stage2_ece", "six_ASC-H_called_hsil_plus",
                "e2e_macro_f1", "detections_called_lsil_plus", "field_sensitivity", "field_threshold"):  # fmt: skip
        assert key in figures
    assert 0.0 <= figures["stage1_recall_all"] <= 1.0
    assert (
        len(fold_run["result"].cell_truth)
        == len(fold_run["result"].cell_probs)
        == 3 * len(fold_run["data"].folds[0].validation_groups)
    )


def test_report_writes_json_markdown_and_figures(fold_run: dict[str, Any], tmp_path: Path) -> None:
    results = [fold_run["result"]]
    summary = real_cv.summarise(results)
    written = write_report(tmp_path, results, summary, {"stage2": Stage2Recipe()}, "test machine", 1.0)
    assert {"results.json", "report.md", "confusion_stage2.png", "roc_lsil_plus.png"} <= set(written)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["recipes"]["stage2"]["architecture"] == "resnet18"
    assert "| stage 2 | macro-F1 |" in (tmp_path / "report.md").read_text()


def test_end_to_end_counts_a_missed_nucleus_as_nilm() -> None:
    analysis = real_cv.FieldAnalysis(
        xy=np.array([[10.0, 10.0]]), scores=np.array([0.9]), probs=np.array([[0.1, 0.1, 0.7, 0.1]], np.float32)
    )
    probs = real_cv.end_to_end_probs(analysis, np.array([[12.0, 11.0], [90.0, 90.0]]), radius=15)
    assert probs.argmax(axis=1).tolist() == [2, 0]


def test_detection_calls_split_annotated_unannotated_and_normal_fields() -> None:
    lsil, nilm = [0.1, 0.8, 0.05, 0.05], [0.9, 0.05, 0.03, 0.02]
    abnormal_field = real_cv.FieldAnalysis(
        xy=np.array([[10.0, 10.0], [100.0, 100.0]]), scores=np.ones(2), probs=np.array([lsil, lsil], np.float32)
    )
    normal_field = real_cv.FieldAnalysis(
        xy=np.array([[10.0, 10.0], [50.0, 50.0], [80.0, 80.0], [120.0, 120.0]]),
        scores=np.ones(4),
        probs=np.array([nilm, lsil, nilm, nilm], np.float32),
    )
    figures = real_cv.detection_call_figures(
        {"a": abnormal_field, "n": normal_field},
        {"a": np.array([[12.0, 10.0]]), "n": np.array([[10.0, 10.0]])},
        field_truth=np.array([True, False]),
        radius=15,
    )
    assert figures["detections_called_lsil_plus"] == 3 / 6
    assert figures["unannotated_detections_called_lsil_plus"] == 2 / 4  # (100,100) and (50,50) of four far ones
    assert figures["normal_field_detections_called_lsil_plus"] == 1 / 4


class _EveryCorner:
    """A stand-in detector that finds the four corners of any field (far from every annotated nucleus)."""

    def detect(self, rgb: np.ndarray) -> Any:
        h, w = rgb.shape[:2]
        return SimpleNamespace(xy=np.array([[5.0, 5.0], [w - 5.0, 5.0], [5.0, h - 5.0], [w - 5.0, h - 5.0]]))


@pytest.mark.parametrize(("source", "expected_fields"), [("all", 12), ("normal", 2)])
def test_hard_negatives_come_only_from_normal_fields_when_asked(
    tmp_path: Path, source: str, expected_fields: int
) -> None:
    cells = read_real_cells(cric_like(tmp_path / "cric"))  # fields f00 and f01 hold only NILM nuclei
    recipe = Stage2Recipe(crop_size=16, hard_negatives_per_field=3, hard_negative_source=source)  # type: ignore[arg-type]  # parametrised literal

    paths = real_cv.hard_negative_crops(_EveryCorner(), cells, sorted(cells.fields), recipe, tmp_path / "neg", seed=0)  # type: ignore[arg-type]  # duck-typed detector

    fields = {p.name.split("__")[0] for p in paths}
    assert len(fields) == expected_fields
    assert len(paths) == 3 * expected_fields
    if source == "normal":
        assert fields == {"f00", "f01"}
