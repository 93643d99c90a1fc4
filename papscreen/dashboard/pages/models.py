"""Models page: each stage's champion and history, its evaluation, the promotion decisions, and comparisons.

What a lab lead checks before trusting a model: the champion's key validation metrics, its confusion matrix and
per-class sensitivity and specificity, the PNG plots saved in its folder (confusion, ROC, calibration, training
curves), the retraining runs with the validation gate's decision and reason, the nightly validation runs over
time (macro-F1 per dataset and the drift flag), and any two versions side by side with the differences.

Reads go through :mod:`papscreen.db.queries.registry_view`, cached for ``dashboard.cache_ttl_seconds``; the
helpers that turn saved metrics into tables are plain functions, testable without Streamlit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from papscreen.dashboard.context import DashboardContext
from papscreen.dashboard.widgets import flow_run_link, utc_times
from papscreen.dashboard.writes import show_flash, store
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.queries import registry_view
from papscreen.db.queries.registry_view import ModelVersionView, RegistryView, TrainingRunView
from papscreen.db.queries.report import trained_on
from papscreen.db.schema import Decision, ModelStage
from papscreen.models.metrics import METRICS_NAME
from papscreen.models.plots import CALIBRATION_PNG, CONFUSION_PNG, ROC_PNG, TRAINING_CURVES_PNG

__all__ = [
    "KEY_METRICS",
    "compare_versions",
    "confusion_frame",
    "cross_validation_frame",
    "flatten_metrics",
    "key_metrics",
    "load_registry",
    "metrics_of",
    "per_class_frame",
    "plot_files",
    "render",
    "training_curves",
]

KEY_METRICS: dict[str, str] = {
    "macro_f1": "Macro-F1",
    "balanced_accuracy": "Balanced accuracy",
    "accuracy": "Accuracy",
    "macro_auc": "Macro ROC AUC",
    "ece": "ECE (calibration error)",
}
"""The headline metrics, in the order shown, and their labels."""

PLOTS: tuple[tuple[str, str], ...] = (
    (CONFUSION_PNG, "Confusion matrix"),
    (ROC_PNG, "ROC curves"),
    (CALIBRATION_PNG, "Calibration (reliability diagram)"),
    (TRAINING_CURVES_PNG, "Training curves"),
)
PER_CLASS_COLUMNS = ("sensitivity", "specificity", "precision", "f1", "auc", "support")
CURVE_COLUMNS = ("train_loss", "val_loss", "val_accuracy", "val_f1", "val_macro_f1")

T = TypeVar("T")


def load_registry(_database: Database, url: str) -> RegistryView:
    """Read the registry, training and validation history (``url`` keys the cache)."""
    with _database.session() as session:
        return registry_view.registry_view(session)


def _cached(ctx: DashboardContext, read: Callable[..., T]) -> T:
    """``read(database, url)`` through ``st.cache_data`` with the configured TTL, keyed by the database URL."""
    cached = st.cache_data(ttl=ctx.settings.dashboard.cache_ttl_seconds, show_spinner=False)(read)
    return cached(ctx.database, ctx.database.url.render_as_string(hide_password=False))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def metrics_of(version: ModelVersionView) -> dict[str, Any]:
    """The version's saved metrics; the folder's ``metrics.json`` fills in when the registry holds none.

    Examples:
        >>> from datetime import UTC, datetime
        >>> v = ModelVersionView(1, "stage2", "m", "resnet18", "champion", datetime.now(UTC), None, None,
        ...                      "/nowhere", None, metrics={"macro_f1": 0.8})
        >>> metrics_of(v)
        {'macro_f1': 0.8}
    """
    if version.metrics:
        return version.metrics
    path = Path(version.file_path) / METRICS_NAME
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def key_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline metrics present in ``metrics`` (see :data:`KEY_METRICS`), by label.

    Stage-1 models saved other scalars (validation loss, F1 ...); without any headline metric, every top-level
    number is shown instead.

    Examples:
        >>> key_metrics({"macro_f1": 0.81, "ece": 0.03, "confusion": [[1]]})
        {'Macro-F1': 0.81, 'ECE (calibration error)': 0.03}
        >>> key_metrics({"loss": 0.2, "f1": 0.9})
        {'loss': 0.2, 'f1': 0.9}
    """
    found = {label: v for key, label in KEY_METRICS.items() if (v := _number(metrics.get(key))) is not None}
    if found:
        return found
    return {key: v for key, value in metrics.items() if (v := _number(value)) is not None}


def _per_class(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Per-class metrics in class order (PostgreSQL's JSONB does not keep the order keys were saved in)."""
    per_class = metrics.get("per_class")
    if not isinstance(per_class, Mapping):
        return {}
    names = [n for n in metrics.get("class_names") or [] if n in per_class]
    names += sorted(n for n in per_class if n not in names)
    return {n: per_class[n] for n in names if isinstance(per_class[n], Mapping)}


def flatten_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Every number in the metrics: the headline ones first, then the others by name, then ``CLASS sensitivity`` etc.

    Examples:
        >>> flatten_metrics({"macro_f1": 0.8, "per_class": {"HSIL": {"sensitivity": 0.9, "support": 12}}})
        {'macro_f1': 0.8, 'HSIL sensitivity': 0.9, 'HSIL support': 12.0}
    """
    keys = [k for k in KEY_METRICS if k in metrics] + sorted(k for k in metrics if k not in KEY_METRICS)
    flat = {key: v for key in keys if (v := _number(metrics[key])) is not None}
    for name, values in _per_class(metrics).items():
        flat |= {f"{name} {key}": v for key in PER_CLASS_COLUMNS if (v := _number(values.get(key))) is not None}
    return flat


def compare_versions(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """Two versions' metrics side by side: one row per metric either has, with ``B - A``.

    Examples:
        >>> compare_versions({"macro_f1": 0.8}, {"macro_f1": 0.85, "ece": 0.02}).round(3).to_dict("list")
        {'metric': ['macro_f1', 'ece'], 'A': [0.8, nan], 'B': [0.85, 0.02], 'B - A': [0.05, nan]}
    """
    left, right = flatten_metrics(a), flatten_metrics(b)
    names = list(left) + [name for name in right if name not in left]
    frame = pd.DataFrame(
        {
            "metric": names,
            "A": [left.get(n, math.nan) for n in names],
            "B": [right.get(n, math.nan) for n in names],
        }
    )
    frame["B - A"] = frame["B"] - frame["A"]
    return frame


def confusion_frame(metrics: Mapping[str, Any]) -> pd.DataFrame | None:
    """The confusion matrix (rows: true class, columns: predicted), or ``None`` when it was not saved.

    Examples:
        >>> confusion_frame({"class_names": ["a", "b"], "confusion": [[3, 1], [0, 4]]}).loc["true a", "pred b"]
        np.int64(1)
    """
    matrix, names = metrics.get("confusion"), metrics.get("class_names")
    if not matrix or not names or len(matrix) != len(names) or any(len(row) != len(names) for row in matrix):
        return None
    return pd.DataFrame(matrix, index=[f"true {n}" for n in names], columns=[f"pred {n}" for n in names])


def per_class_frame(metrics: Mapping[str, Any]) -> pd.DataFrame | None:
    """Per-class sensitivity, specificity, precision, F1, AUC and support, or ``None`` when not saved.

    Examples:
        >>> per_class_frame({"per_class": {"HSIL": {"sensitivity": 0.9, "specificity": 0.95}}})["sensitivity"].tolist()
        [0.9]
    """
    per_class = _per_class(metrics)
    if not per_class:
        return None
    rows = {name: {c: values.get(c) for c in PER_CLASS_COLUMNS} for name, values in per_class.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("class")


CROSS_VALIDATION_FIGURES = {
    "stage1_recall_all": "stage 1: annotated nuclei found (within 15 px)",
    "stage1_recall_HSIL": "stage 1: HSIL (with ASC-H) nuclei found",
    "stage1_detections_per_field": "stage 1: detections per field",
    "stage2_macro_f1": "stage 2: macro-F1",
    "stage2_sensitivity_HSIL": "stage 2: HSIL sensitivity",
    "stage2_sensitivity_SCC": "stage 2: SCC sensitivity",
    "stage2_lsil_plus_auc": "stage 2: LSIL-or-worse vs NILM AUC",
    "stage2_ece": "stage 2: ECE (calibration error)",
    "e2e_macro_f1": "end to end: macro-F1",
    "field_sensitivity": "field verdict: LSIL+ sensitivity",
    "field_specificity": "field verdict: specificity",
}
"""The cross-validated figures a model card may carry (``metrics.cross_validation.summary``), in the order shown."""


def cross_validation_frame(metrics: Mapping[str, Any]) -> pd.DataFrame | None:
    """The recipe's cross-validated figures on real fields (mean and 95% interval), or ``None`` when not saved.

    Examples:
        >>> cv = {"summary": {"stage2_macro_f1": {"mean": 0.47, "low": 0.40, "high": 0.53, "n": 5}}}
        >>> cross_validation_frame({"cross_validation": cv}).to_dict("records")
        [{'figure': 'stage 2: macro-F1', 'mean': 0.47, '95% CI low': 0.4, '95% CI high': 0.53, 'folds': 5}]
        >>> cross_validation_frame({"macro_f1": 0.9}) is None
        True
    """
    cv = metrics.get("cross_validation")
    summary = cv.get("summary") if isinstance(cv, Mapping) else None
    if not isinstance(summary, Mapping):
        return None
    rows = [
        {
            "figure": label,
            "mean": _number(summary[key].get("mean")),
            "95% CI low": _number(summary[key].get("low")),
            "95% CI high": _number(summary[key].get("high")),
            "folds": summary[key].get("n"),
        }
        for key, label in CROSS_VALIDATION_FIGURES.items()
        if isinstance(summary.get(key), Mapping)
    ]
    return pd.DataFrame(rows) if rows else None


def plot_files(folder: str | Path) -> list[tuple[str, Path]]:
    """The evaluation PNGs present in a model folder, as (caption, path), in a fixed order.

    Examples:
        >>> plot_files("/nowhere")
        []
    """
    folder = Path(folder)
    return [(caption, folder / name) for name, caption in PLOTS if (folder / name).is_file()]


def training_curves(history: list[dict[str, Any]]) -> pd.DataFrame | None:
    """Per-epoch losses and validation scores as a chart's table (index: epoch), or ``None`` without them.

    Examples:
        >>> rows = [{"epoch": 1, "train_loss": 0.9, "val_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}]
        >>> curves = training_curves(rows)
        >>> list(curves.columns), curves.index.tolist()
        (['train_loss', 'val_loss'], [1, 2])
    """
    if not history:
        return None
    frame = pd.DataFrame(history)
    columns = [c for c in CURVE_COLUMNS if c in frame.columns]
    if not columns:
        return None
    if "epoch" not in frame.columns:
        frame["epoch"] = range(1, len(frame) + 1)
    return frame.set_index("epoch")[columns]


def _when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def _version_table(versions: list[ModelVersionView]) -> None:
    st.dataframe(
        [
            {
                "id": v.id,
                "name": v.name,
                "architecture": v.architecture,
                "status": v.status,
                "macro-F1": _number(metrics_of(v).get("macro_f1")),
                "trained on": trained_on(v.card),
                "created": v.created_at,
                "promoted": v.promoted_at,
                "retired": v.retired_at,
                "data fingerprint": (v.dataset_fingerprint or "")[:12],
                "folder": v.file_path,
            }
            for v in versions
        ],
        hide_index=True,
        column_config={
            "macro-F1": st.column_config.NumberColumn(format="%.3f"),
            **utc_times("created", "promoted", "retired"),
        },
    )


def _evaluation(version: ModelVersionView, runs: tuple[TrainingRunView, ...]) -> None:
    """One version's evaluation: key metrics, confusion matrix, per-class table, saved plots, training curve."""
    metrics = metrics_of(version)
    headline = key_metrics(metrics)
    if headline:
        for column, (label, value) in zip(st.columns(len(headline)), headline.items(), strict=True):
            column.metric(label, f"{value:.3f}")
    else:
        st.info("No validation metrics were saved with this model.")
    confusion, per_class = confusion_frame(metrics), per_class_frame(metrics)
    if confusion is not None or per_class is not None:
        left, right = st.columns(2)
        if confusion is not None:
            left.markdown("**Confusion matrix** (validation; rows: true class)")
            left.dataframe(confusion)
        if per_class is not None:
            right.markdown("**Per class**")
            right.dataframe(
                per_class,
                column_config={c: st.column_config.NumberColumn(format="%.3f") for c in PER_CLASS_COLUMNS[:-1]},
            )
    plots = plot_files(version.file_path)
    if plots:
        columns = st.columns(2)
        for i, (caption, path) in enumerate(plots):
            columns[i % 2].image(str(path), caption=caption)
    else:
        st.caption(f"No evaluation plots in {version.file_path}.")
    cross_validated = cross_validation_frame(metrics)
    if cross_validated is not None:
        st.markdown(
            "**Cross-validated on real fields** (the recipe that trained this model, whole fields held out; "
            "docs/experiments.md). The figures above are on this model's own validation split."
        )
        st.dataframe(cross_validated, hide_index=True)
    run = next((r for r in runs if r.model_version_id == version.id and r.history), None)
    curves = training_curves(run.history) if run is not None else None
    if curves is not None:
        st.markdown(f"**Training curves** (training run {run.id})")  # type: ignore[union-attr]
        st.line_chart(curves, x_label="epoch")


def _stage_tab(stage: str, view: RegistryView) -> None:
    versions = view.of_stage(stage)
    champion = view.champion(stage)
    if not versions:
        st.info(f"No {stage} model yet: train or import one (`papscreen models --help`).")
        return
    if champion is None:
        st.warning(f"{stage} has no champion: promote one (`papscreen models promote`).")
    else:
        st.markdown(
            f"**Champion: {champion.name}** ({champion.architecture}), registered {_when(champion.created_at)}, "
            f"champion since {_when(champion.promoted_at)}"
        )
    st.markdown("**History**")
    _version_table(versions)
    labels = {v.id: v.label for v in versions}
    default = versions.index(champion) if champion is not None else 0
    chosen = st.selectbox(
        "Version to inspect", list(labels), index=default, format_func=labels.__getitem__, key=f"models_{stage}_inspect"
    )
    _evaluation(next(v for v in versions if v.id == chosen), view.training_runs)


def _training_tab(ctx: DashboardContext, runs: tuple[TrainingRunView, ...]) -> None:
    if not runs:
        st.info(
            "No training run yet. The nightly retraining records its runs here once reviewed cells exist; "
            "an administrator can also start one with `papscreen retrain`."
        )
        return
    st.dataframe(
        [
            {
                "id": r.id,
                "stage": r.stage,
                "status": r.status,
                "started": r.started_at,
                "duration (s)": r.duration_s,
                "challenger": f"#{r.model_version_id} {r.model_name}" if r.model_version_id else None,
                "baseline": f"#{r.baseline_model_version_id} {r.baseline_name}"
                if r.baseline_model_version_id
                else None,
                "decision": r.decision,
                "reason": r.reason or r.error,
                "flow run": ctx.flow_run_url(r.flow_run_id),
            }
            for r in runs
        ],
        hide_index=True,
        column_config={
            **flow_run_link(),
            **utc_times("started"),
            "duration (s)": st.column_config.NumberColumn(format="%.0f"),
        },
    )


def _validation_tab(ctx: DashboardContext, view: RegistryView) -> None:
    runs = view.validation_runs
    if not runs:
        st.info("No validation run yet: the validation flow re-scores the champions every night.")
        return
    frame = pd.DataFrame(
        [{"at": r.at, **dict(sorted(r.macro_f1.items())), "drift flagged": float(r.drift_flagged)} for r in runs]
    )
    st.markdown("**Macro-F1 per dataset over time** (drift flagged: 1)")
    st.line_chart(frame.set_index("at"), y_label="macro-F1")
    flagged = sum(r.drift_flagged for r in runs)
    st.metric("Runs with drift flagged", f"{flagged} of {len(runs)}")
    st.dataframe(
        [
            {
                "at": r.at,
                **{f"{name} macro-F1": value for name, value in sorted(r.macro_f1.items())},
                "drift": "flagged" if r.drift_flagged else "no",
                "drift check": r.drift_reason,
                "notes": r.notes,
                "flow run": ctx.flow_run_url(r.flow_run_id),
            }
            for r in reversed(runs)
        ],
        hide_index=True,
        column_config={**flow_run_link(), **utc_times("at")},
    )


def _compare_tab(view: RegistryView) -> None:
    versions = list(view.versions)
    if len(versions) < 2:
        st.info("Two model versions are needed for a comparison.")
        return
    labels = {v.id: f"{v.stage}: {v.label}" for v in versions}
    by_id = {v.id: v for v in versions}
    champion = view.champion(ModelStage.STAGE2.value) or view.champion(ModelStage.STAGE1.value) or versions[0]
    other = next((v for v in versions if v.stage == champion.stage and v.id != champion.id), None)
    other = other or next(v for v in versions if v.id != champion.id)
    left, right = st.columns(2)
    a = left.selectbox(
        "Version A",
        list(labels),
        index=versions.index(champion),
        format_func=labels.__getitem__,
        key="models_compare_a",
    )
    b = right.selectbox(
        "Version B", list(labels), index=versions.index(other), format_func=labels.__getitem__, key="models_compare_b"
    )
    first, second = by_id[a], by_id[b]
    if first.stage != second.stage:
        st.warning("These versions belong to different stages; their metrics measure different things.")
    table = compare_versions(metrics_of(first), metrics_of(second))
    if table.empty:
        st.info("Neither version has saved metrics to compare.")
        return
    st.dataframe(
        table,
        hide_index=True,
        column_config={name: st.column_config.NumberColumn(format="%.4f") for name in ("A", "B", "B - A")},
    )


def render(ctx: DashboardContext) -> None:
    """Lay out the models page."""
    st.header("Models")
    show_flash()
    try:
        view = _cached(ctx, load_registry)
    except SQLAlchemyError as e:
        st.error(f"cannot read the database {ctx.database!r}: {getattr(e, 'orig', e)}. Run `papscreen db upgrade`")
        return
    _approvals(ctx, view)
    stage1, stage2, training, validation, compare = st.tabs(
        ["Stage 1 (cells)", "Stage 2 (grades)", "Training runs", "Validation", "Compare versions"]
    )
    with stage1:
        _stage_tab(ModelStage.STAGE1.value, view)
    with stage2:
        _stage_tab(ModelStage.STAGE2.value, view)
    with training:
        _training_tab(ctx, view.training_runs)
    with validation:
        _validation_tab(ctx, view)
    with compare:
        _compare_tab(view)


def _approvals(ctx: DashboardContext, view: RegistryView) -> None:
    """Challengers that passed the gate and wait for an admin (promotion policy ``approve``), with the evidence."""
    pending = [r for r in view.training_runs if r.decision == Decision.PENDING_APPROVAL.value]
    if not pending:
        return
    st.subheader(f"Waiting for approval ({len(pending)})")
    can_decide = ctx.signed_in and ctx.role == "admin"
    if not can_decide:
        st.caption("An admin approves or declines these (`papscreen users add NAME --role admin`).")
    for run in pending:
        challenger = (run.metrics or {}).get("challenger") or {}
        champion = (run.metrics or {}).get("champion") or {}
        figures = ", ".join(
            f"{name} {challenger.get(key, float('nan')):.3f} (champion {champion.get(key, float('nan')):.3f})"
            for key, name in (("macro_f1", "macro-F1"), ("accuracy", "accuracy"))
            if challenger.get(key) is not None
        )
        with st.container(border=True):
            st.markdown(
                f"**{run.stage}: {run.model_name}** (run {run.id}, {_when(run.finished_at)}) against "
                f"**{run.baseline_name or 'none'}**: {figures}; {challenger.get('n_samples', '?')} validation samples."
            )
            st.caption(run.reason or "")
            approve, decline = st.columns([1, 5])
            approve.button(
                "Approve", key=f"models_approve_{run.id}", type="primary", disabled=not can_decide,
                on_click=_decide, args=(ctx, run.model_version_id, True),
            )  # fmt: skip
            decline.button(
                "Decline", key=f"models_decline_{run.id}", disabled=not can_decide,
                on_click=_decide, args=(ctx, run.model_version_id, False),
            )  # fmt: skip


def _decide(ctx: DashboardContext, model_id: int | None, approve: bool) -> None:
    if model_id is None:
        return

    def write(session: Session) -> str:
        if approve:
            version = queries.approve_candidate(session, model_id, actor=ctx.user)
            return f"{version.name} is now the champion of {version.stage.value}, approved by {ctx.user}."
        version = queries.decline_candidate(session, model_id, actor=ctx.user)
        return f"{version.name} declined by {ctx.user}; the champion stays."

    store(ctx, write, what="No decision recorded", expected=(LookupError, ValueError))
