"""Overview page: how the lab's day is going at a glance, and which models are screening.

Slides received today (since UTC midnight) and in the last 7 days, the abnormal rate among the analysed ones,
the queue, failures, each stage's champion with its key metrics, and what the last retraining decided. The
figures come from :func:`papscreen.db.queries.worklist.overview_figures`, cached for
``dashboard.cache_ttl_seconds`` and refreshed live (a fragment re-run every ``dashboard.refresh_seconds``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from papscreen.dashboard.context import DashboardContext
from papscreen.db.database import Database
from papscreen.db.queries.worklist import (
    ChampionFigures,
    OverviewFigures,
    RetrainingOutcome,
    WindowFigures,
    overview_figures,
)

__all__ = ["METRIC_LABELS", "cached", "database_error", "format_rate", "load_overview", "render"]

T = TypeVar("T")

METRIC_LABELS = {
    "macro_f1": "macro F1",
    "accuracy": "accuracy",
    "f1": "F1",
    "recall": "recall",
    "HSIL_sensitivity": "HSIL sensitivity",
    "SCC_sensitivity": "SCC sensitivity",
}
"""How the key metrics are named on screen, in the order they are shown."""


def cached(ctx: DashboardContext, read: Callable[..., T], *args: object) -> T:
    """``read(database, url, *args)`` through ``st.cache_data`` with the configured TTL, keyed by the URL.

    Every session of the server shares the answers, so ten reviewers looking at the worklist cost one query
    per TTL, not ten.
    """
    ttl = ctx.settings.dashboard.cache_ttl_seconds
    reader = st.cache_data(ttl=ttl, show_spinner=False)(read)
    return reader(ctx.database, ctx.database.url.render_as_string(hide_password=False), *args)


def database_error(ctx: DashboardContext, error: SQLAlchemyError) -> str:
    """What to tell people when a read fails (the database went away or is not migrated)."""
    cause = getattr(error, "orig", None) or error
    return (
        f"cannot read the database {ctx.database!r}: {cause}. Check that it runs and PAPSCREEN_DATABASE_URL, "
        "run `papscreen db upgrade`, then reload"
    )


def format_rate(rate: float | None) -> str:
    """A share as a percentage, or a dash when there is nothing to divide.

    Examples:
        >>> format_rate(0.125), format_rate(None)
        ('12.5%', '-')
    """
    return "-" if rate is None else f"{rate:.1%}"


def load_overview(_database: Database, url: str) -> OverviewFigures:
    """Read the overview's figures in one transaction (``url`` keys the cache; the Database is not hashed)."""
    with _database.session() as session:
        return overview_figures(session)


def _abnormal_help(window: WindowFigures) -> str:
    return (
        f"{window.abnormal} of {window.done} analysed slides are adequate and not NILM "
        f"({window.unsatisfactory} unsatisfactory)"
    )


def _figures(figures: OverviewFigures) -> None:
    today, week = figures.today, figures.week
    first = st.columns(4)
    first[0].metric("Received today", today.received, help="Slides received since midnight UTC (no duplicates).")
    first[1].metric("Received, 7 days", week.received, help="Slides received in the last 7 days (no duplicates).")
    first[2].metric("Abnormal rate today", format_rate(today.abnormal_rate), help=_abnormal_help(today))
    first[3].metric("Abnormal rate, 7 days", format_rate(week.abnormal_rate), help=_abnormal_help(week))
    second = st.columns(4)
    second[0].metric(
        "Queue", figures.queue_length, help=f"{figures.queued} waiting, {figures.processing} being analysed."
    )
    second[1].metric("Failed", figures.failed, help="Slides whose analysis failed; the Intake page shows why.")
    second[2].metric(
        "Quarantined, 7 days", week.quarantined, help="Files the intake refused; the Intake page can retry them."
    )
    second[3].metric("Unsatisfactory, 7 days", week.unsatisfactory, help="Too few squamous cells to screen.")


def _champion(stage: str, champion: ChampionFigures | None) -> None:
    if champion is None:
        st.info(f"{stage}: no champion yet. Train or import one: `papscreen models --help`.")
        return
    st.markdown(
        f"**{stage}**: {champion.name} ({champion.architecture}), model {champion.model_id}, "
        f"champion since {champion.since:%Y-%m-%d %H:%M} UTC"
    )
    shown = [(label, champion.metrics[key]) for key, label in METRIC_LABELS.items() if key in champion.metrics]
    if not shown:
        st.caption("No validation metrics recorded for this model.")
        return
    for column, (label, value) in zip(st.columns(len(shown)), shown, strict=True):
        column.metric(f"{stage} {label}", f"{value:.3f}")


def _retraining(stage: str, outcome: RetrainingOutcome | None) -> None:
    if outcome is None:
        st.markdown(f"**{stage}**: not retrained yet.")
        return
    verdict = outcome.decision or outcome.status
    when = f" on {outcome.finished_at:%Y-%m-%d %H:%M} UTC" if outcome.finished_at else ""
    reason = f": {outcome.reason}" if outcome.reason else ""
    st.markdown(f"**{stage}**: run {outcome.run_id} **{verdict}**{when}{reason}")


def _live(ctx: DashboardContext) -> None:
    """The figures; re-run on their own every ``refresh_seconds``."""
    try:
        figures = cached(ctx, load_overview)
    except SQLAlchemyError as e:
        st.error(database_error(ctx, e))
        return
    st.caption(
        f"As of {figures.now:%Y-%m-%d %H:%M:%S} UTC; refreshed every {ctx.settings.dashboard.refresh_seconds:g} s."
    )
    _figures(figures)
    st.subheader("Champion models")
    for stage, champion in figures.champions.items():
        _champion(stage, champion)
    st.subheader("Last retraining")
    for stage, outcome in figures.retraining.items():
        _retraining(stage, outcome)


def render(ctx: DashboardContext) -> None:
    """Draw the overview page."""
    st.title("Overview")
    st.fragment(run_every=ctx.settings.dashboard.refresh_seconds)(_live)(ctx)
