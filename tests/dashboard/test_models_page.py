"""The models page in AppTest against a seeded registry (SQLite and PostgreSQL), and its table helpers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from papscreen.dashboard.pages.models import (
    compare_versions,
    confusion_frame,
    key_metrics,
    metrics_of,
    per_class_frame,
    plot_files,
    training_curves,
)
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries.registry_view import ModelVersionView
from papscreen.db.schema import Decision, ModelStage, ModelStatus, TrainingStatus
from papscreen.models.plots import CONFUSION_PNG, ROC_PNG
from tests.dashboard.apptest_helpers import (
    PREFECT_UI,
    database_url,
    fresh_streamlit_caches,  # noqa: F401 (an autouse fixture)
    page_app,
    run_ok,
)
from tests.db.test_registry_intake_views import CLASSES, add_model, seed_registry, stage2_metrics


def _run_page(monkeypatch: pytest.MonkeyPatch, url: str) -> AppTest:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", url)
    return run_ok(page_app("models", url))


def test_seeded_page_shows_champions_history_runs_validation(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = seed_registry(database, tmp_path / "models")
    app = _run_page(monkeypatch, database_url(database))

    assert not app.error
    assert [t.label for t in app.tabs] == [
        "Stage 1 (cells)",
        "Stage 2 (grades)",
        "Training runs",
        "Validation",
        "Compare versions",
    ]
    stage1, stage2, training, validation, compare = app.tabs

    # stage 1: a champion whose saved metrics have no headline metric shows its numbers as saved
    assert "**Champion: s1-base** (cnn20plus)" in stage1.markdown[0].value
    assert {m.label: m.value for m in stage1.metric} == {"loss": "0.210", "f1": "0.880", "best_epoch": "4.000"}

    # stage 2: champion, history, key metrics, confusion matrix, per-class table, saved plots, training curve
    assert "**Champion: s2-night-2** (resnet18)" in stage2.markdown[0].value
    history = stage2.dataframe[0].value
    assert list(history["name"]) == ["s2-night-3", "s2-night-2", "s2-base"]
    assert list(history["status"]) == ["rejected", "champion", "retired"]
    champion_metrics = stage2_metrics(3)
    labels = {m.label: m.value for m in stage2.metric}
    assert labels["Macro-F1"] == f"{champion_metrics['macro_f1']:.3f}"
    assert set(labels) == {"Macro-F1", "Balanced accuracy", "Accuracy", "Macro ROC AUC", "ECE (calibration error)"}
    confusion = stage2.dataframe[1].value
    assert list(confusion.columns) == [f"pred {c}" for c in CLASSES]
    assert confusion.to_numpy().tolist() == champion_metrics["confusion"]
    per_class = stage2.dataframe[2].value
    assert list(per_class.index) == CLASSES
    assert per_class.loc["HSIL", "sensitivity"] == champion_metrics["per_class"]["HSIL"]["sensitivity"]
    captions = [caption for image in stage2.image for caption in image.captions]
    assert captions == ["Confusion matrix", "ROC curves"]  # the PNGs in the champion's folder
    assert any(f"training run {seeded.promoted_run}" in m.value for m in stage2.markdown)
    assert stage2.get("vega_lite_chart")

    # training runs: decisions with reasons, challenger and baseline, link to the flow run
    runs = training.dataframe[0].value
    assert list(runs["decision"]) == ["rejected", "promoted"]
    assert runs["reason"][0].startswith("HSIL sensitivity dropped from 0.900")
    assert list(runs["challenger"]) == [f"#{seeded.rejected} s2-night-3", f"#{seeded.second} s2-night-2"]
    assert list(runs["baseline"]) == [f"#{seeded.second} s2-night-2", f"#{seeded.first} s2-base"]
    assert runs["flow run"][0] == f"{PREFECT_UI}/runs/flow-run/retrain-run-3"

    # validation: macro-F1 over time with the drift flag, and the runs newest first
    assert validation.get("vega_lite_chart")
    assert {m.label: m.value for m in validation.metric} == {"Runs with drift flagged": "1 of 2"}
    table = validation.dataframe[0].value
    assert list(table["drift"]) == ["flagged", "no"]
    assert list(table["DB_4 macro-F1"]) == [0.69, 0.74]
    assert table["flow run"][0] == f"{PREFECT_UI}/runs/flow-run/validate-run-2"

    # compare: the stage-2 champion against another stage-2 version by default
    assert compare.selectbox(key="models_compare_a").value == seeded.second
    assert compare.selectbox(key="models_compare_b").value == seeded.rejected
    diff = compare.dataframe[0].value.set_index("metric")
    expected = stage2_metrics(1)["macro_f1"] - champion_metrics["macro_f1"]
    assert diff.loc["macro_f1", "B - A"] == pytest.approx(expected)
    assert "HSIL sensitivity" in diff.index


def test_inspecting_and_comparing_other_versions(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = seed_registry(database, tmp_path / "models")
    app = _run_page(monkeypatch, database_url(database))

    app.selectbox(key="models_stage2_inspect").select(seeded.first)
    app.selectbox(key="models_compare_a").select(seeded.first)
    app.selectbox(key="models_compare_b").select(seeded.s1)
    app.run()

    assert not app.exception
    stage2, compare = app.tabs[1], app.tabs[4]
    assert {m.label: m.value for m in stage2.metric}["Macro-F1"] == f"{stage2_metrics(0)['macro_f1']:.3f}"
    assert not stage2.get("vega_lite_chart")  # s2-base came from no training run with a history
    assert any(f"No evaluation plots in {tmp_path / 'models' / 's2-base'}" in c.value for c in stage2.caption)
    assert "different stages" in compare.warning[0].value
    diff = compare.dataframe[0].value.set_index("metric")
    assert math.isnan(diff.loc["loss", "A"])
    assert diff.loc["loss", "B"] == 0.21


def test_empty_registry_says_what_to_do(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _run_page(monkeypatch, database_url(database))

    assert not app.error
    infos = [i.value for i in app.info]
    assert "No stage1 model yet: train or import one (`papscreen models --help`)." in infos
    assert "No stage2 model yet: train or import one (`papscreen models --help`)." in infos
    assert any(i.startswith("No training run yet") for i in infos)
    assert any(i.startswith("No validation run yet") for i in infos)
    assert "Two model versions are needed for a comparison." in infos
    assert not app.dataframe


def test_unmigrated_database_shows_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _run_page(monkeypatch, f"sqlite:///{tmp_path / 'never-migrated.db'}")

    assert "papscreen db upgrade" in app.error[0].value
    assert not app.tabs


def _version(file_path: str, metrics: dict) -> ModelVersionView:
    return ModelVersionView(
        1, "stage2", "m", "resnet18", "champion", datetime.now(UTC), None, None, file_path, None, metrics
    )


def test_metrics_fall_back_to_the_folders_metrics_json(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps(stage2_metrics(2)))

    assert metrics_of(_version(str(tmp_path), {}))["class_names"] == CLASSES
    assert metrics_of(_version(str(tmp_path / "none"), {})) == {}
    assert metrics_of(_version(str(tmp_path), {"macro_f1": 0.5})) == {"macro_f1": 0.5}


def test_table_helpers_on_real_metrics(tmp_path: Path) -> None:
    metrics = stage2_metrics(2)

    assert list(key_metrics(metrics)) == [
        "Macro-F1",
        "Balanced accuracy",
        "Accuracy",
        "Macro ROC AUC",
        "ECE (calibration error)",
    ]
    assert confusion_frame(metrics).to_numpy().sum() == metrics["n_samples"]  # type: ignore[union-attr]
    assert confusion_frame({"class_names": ["a"], "confusion": [[1, 2]]}) is None
    assert per_class_frame(metrics)["support"].tolist() == [10, 10, 10, 10]  # type: ignore[index]
    assert per_class_frame({}) is None
    same = compare_versions(metrics, metrics)
    assert (same["B - A"] == 0).all()
    assert training_curves([{"seconds": 1.0}]) is None
    assert training_curves([]) is None
    (tmp_path / ROC_PNG).write_bytes(b"png")
    (tmp_path / CONFUSION_PNG).write_bytes(b"png")
    assert [caption for caption, _ in plot_files(tmp_path)] == ["Confusion matrix", "ROC curves"]


def _pending(database: Database, models_dir: Path) -> int:
    """The seeded registry plus a challenger that passed the gate and waits for approval; its version id."""
    seeded = seed_registry(database, models_dir)
    with database.session() as s:
        waiting = add_model(
            s, ModelStage.STAGE2, "s2-night-4", "resnet18", models_dir / "s2-night-4", "5", stage2_metrics(4),
            auto_champion=False,
        )  # fmt: skip
        run = queries.start_training_run(s, stage=ModelStage.STAGE2, parameters={})
        queries.finish_training_run(
            s, run.id, status=TrainingStatus.SUCCEEDED, model_version_id=waiting.id,
            baseline_model_version_id=seeded.second, decision=Decision.PENDING_APPROVAL,
            reason="macro-F1 0.95 >= 0.90; waits for an admin to approve it on the Models page",
            metrics={"challenger": stage2_metrics(4), "champion": stage2_metrics(3)},
        )  # fmt: skip
        return waiting.id


def test_an_admin_approves_a_waiting_challenger_and_it_becomes_champion(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = _pending(database, tmp_path / "models")
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", database_url(database))
    screener = run_ok(page_app("models", database_url(database), user="ann", role="cytotechnologist"))
    assert "Waiting for approval (1)" in [h.value for h in screener.subheader]
    assert all(b.disabled for b in screener.button if b.key and b.key.startswith("models_approve_"))
    admin = run_ok(page_app("models", database_url(database), user="root", role="admin"))
    (approve,) = [b for b in admin.button if b.key and b.key.startswith("models_approve_")]
    assert not approve.disabled
    approve.click().run()
    assert admin.success[0].value == "s2-night-4 is now the champion of stage2, approved by root."
    assert "Waiting for approval (1)" not in [h.value for h in admin.subheader]
    with database.session() as s:
        assert queries.get_champion(s, ModelStage.STAGE2).id == waiting  # type: ignore[union-attr]


def test_a_declined_challenger_is_rejected_and_the_champion_stays(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = _pending(database, tmp_path / "models")
    with database.session() as s:
        champion = queries.get_champion(s, ModelStage.STAGE2).id  # type: ignore[union-attr]
        queries.decline_candidate(s, waiting, actor="root", reason="validation set from one site only")
    with database.session() as s:
        assert queries.get_champion(s, ModelStage.STAGE2).id == champion  # type: ignore[union-attr]
        assert queries.get_model_version(s, waiting).status == ModelStatus.REJECTED  # type: ignore[union-attr]
        assert not queries.pending_approvals(s)
        with pytest.raises(ValueError, match="not waiting for approval"):
            queries.approve_candidate(s, waiting, actor="root")
