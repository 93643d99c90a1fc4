"""Intake page: what the intake refused and why (with a Retry), duplicates, failures, and how fast results come.

Lab staff look here when a scan did not appear in the worklist. Every row links to its flow run in the Prefect
UI, where the logs are. The figures refresh live (a fragment re-run every ``dashboard.refresh_seconds``) from
queries cached for ``dashboard.cache_ttl_seconds``; the Retry action writes in its own transaction
(:mod:`papscreen.dashboard.retry`) and then clears the cache so the page shows the new state at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from papscreen.dashboard.context import DashboardContext
from papscreen.dashboard.retry import RetryResult, retry_quarantined
from papscreen.dashboard.widgets import flow_run_link, utc_times
from papscreen.db.database import Database
from papscreen.db.queries import intake_view
from papscreen.db.queries.intake_view import (
    DuplicateSlide,
    FailedSlide,
    ProcessingTimes,
    QuarantinedSlide,
    RetryingFile,
)
from papscreen.errors import PapscreenError
from papscreen.pipeline.progress import format_seconds

__all__ = ["IntakeData", "format_duration", "load_intake", "render"]

RETRY_RESULT_KEY = "papscreen_intake_retry_result"
RETRY_SELECT_KEY = "intake_retry_slide"
RETRY_BUTTON_KEY = "intake_retry"
RECENT_TIMES = 20
MEDIAN_WINDOW = 200

T = TypeVar("T")


@dataclass(frozen=True)
class IntakeData:
    """Everything the intake page shows, read in one transaction."""

    quarantined: tuple[QuarantinedSlide, ...]
    duplicates: tuple[DuplicateSlide, ...]
    failed: tuple[FailedSlide, ...]
    times: ProcessingTimes
    retrying: tuple[RetryingFile, ...] = ()


def load_intake(_database: Database, url: str) -> IntakeData:
    """Read the intake page's data (``url`` keys the cache; the Database itself is not hashed)."""
    with _database.session() as session:
        return IntakeData(
            quarantined=tuple(intake_view.quarantined_slides(session)),
            duplicates=tuple(intake_view.duplicate_slides(session)),
            failed=tuple(intake_view.failed_slides(session)),
            times=intake_view.processing_times(session, recent=RECENT_TIMES, window=MEDIAN_WINDOW),
            retrying=tuple(intake_view.retrying_files(session)),
        )


def _cached(ctx: DashboardContext, read: Callable[..., T]) -> T:
    """``read(database, url)`` through ``st.cache_data`` with the configured TTL, keyed by the database URL."""
    cached = st.cache_data(ttl=ctx.settings.dashboard.cache_ttl_seconds, show_spinner=False)(read)
    return cached(ctx.database, ctx.database.url.render_as_string(hide_password=False))


def format_duration(seconds: float | None) -> str:
    """A duration as people read it.

    Examples:
        >>> format_duration(42.4), format_duration(83), format_duration(7322), format_duration(None)
        ('42 s', '1 min 23 s', '2 h 2 min', '-')
    """
    return "-" if seconds is None else format_seconds(seconds)


def _heading(title: str, rows: tuple[object, ...], empty: str, show: Callable[[str], object] | None = None) -> bool:
    """The section's subheader with its count; whether it has rows, after showing ``empty`` (a caption) if not."""
    st.subheader(f"{title} ({len(rows)})")
    if not rows:
        (show or st.caption)(empty)
    return bool(rows)


def _quarantine_section(ctx: DashboardContext, rows: tuple[QuarantinedSlide, ...]) -> None:
    if not _heading("Quarantined", rows, "Nothing in quarantine.", st.success):
        return
    st.caption("Files the intake could not read, with why. Fix the cause (e.g. raise a limit), then retry.")
    st.dataframe(
        [
            {
                "id": q.id,
                "name": q.name,
                "reason": q.reason,
                "file": q.path,
                "received": q.received_at,
                "quarantined": q.quarantined_at,
                "flow run": ctx.flow_run_url(q.flow_run_id),
            }
            for q in rows
        ],
        hide_index=True,
        column_config={**flow_run_link(), **utc_times("received", "quarantined")},
    )
    names = {q.id: f"#{q.id} {q.name}: {(q.reason or '')[:80]}" for q in rows}
    choice = st.selectbox("File to retry", list(names), format_func=names.__getitem__, key=RETRY_SELECT_KEY)
    if st.button(
        "Retry", key=RETRY_BUTTON_KEY, help="Check the file again with today's settings; queue it if it reads"
    ):
        try:
            result = retry_quarantined(ctx.settings, ctx.database, int(choice), user=ctx.user)
        except (PapscreenError, OSError, SQLAlchemyError) as e:
            result = RetryResult(int(choice), False, f"retry failed: {e}")
        st.session_state[RETRY_RESULT_KEY] = result
        st.cache_data.clear()
        st.rerun()


def _retry_message() -> None:
    result: RetryResult | None = st.session_state.pop(RETRY_RESULT_KEY, None)  # shown once
    if result is None:
        return
    (st.success if result.queued else st.warning)(result.message)


def _retrying_section(rows: tuple[RetryingFile, ...]) -> None:
    """Shown only while some file waits: a failure that may pass, which usually needs an IT admin (disk, rights)."""
    if not rows:
        return
    st.subheader(f"Waiting to be retried ({len(rows)})")
    st.warning(
        "These files stay in the intake folder: reading or moving them failed for a cause that may pass (a full "
        "disk, missing permissions). The intake tries again by itself, waiting twice as long after each failure; "
        "fix the cause shown and they go through."
    )
    st.dataframe(
        [
            {
                "name": r.name,
                "error": r.last_error,
                "failures": r.failures,
                "first failed": r.first_failed_at,
                "next try": r.next_attempt_at,
                "file": r.path,
            }
            for r in rows
        ],
        hide_index=True,
        column_config=utc_times("first failed", "next try"),
    )


def _duplicates_section(rows: tuple[DuplicateSlide, ...]) -> None:
    if not _heading("Duplicates", rows, "No second copies received."):
        return
    st.caption("Second copies of scans already received: never analysed, kept in quarantine/duplicates to delete.")
    st.dataframe(
        [
            {
                "id": d.id,
                "name": d.name,
                "received": d.received_at,
                "first arrival": d.first_id,
                "first name": d.first_name,
                "first received": d.first_received_at,
                "first status": d.first_status,
                "file": d.path,
            }
            for d in rows
        ],
        hide_index=True,
        column_config=utc_times("received", "first received"),
    )


def _failed_section(ctx: DashboardContext, rows: tuple[FailedSlide, ...]) -> None:
    if not _heading("Failed", rows, "No failed analyses."):
        return
    st.dataframe(
        [
            {
                "id": f.id,
                "name": f.name,
                "error": f.error,
                "failed": f.failed_at,
                "attempts": f.attempts,
                "flow run": ctx.flow_run_url(f.flow_run_id),
            }
            for f in rows
        ],
        hide_index=True,
        column_config={**flow_run_link(), **utc_times("failed")},
    )


def _times_section(ctx: DashboardContext, times: ProcessingTimes) -> None:
    st.subheader("Processing times")
    if not times.recent:
        st.caption("No slide analysed yet.")
        return
    left, middle, right = st.columns(3)
    left.metric("Median analysis time", format_duration(times.median_analysis_s), help="Start to result")
    middle.metric("Median arrival to result", format_duration(times.median_total_s), help="Queueing included")
    right.metric("Slides in the median", times.window)
    st.dataframe(
        [
            {
                "id": t.id,
                "name": t.name,
                "received": t.received_at,
                "finished": t.finished_at,
                "analysis": format_duration(t.analysis_s),
                "arrival to result": format_duration(t.total_s),
                "flow run": ctx.flow_run_url(t.flow_run_id),
            }
            for t in times.recent
        ],
        hide_index=True,
        column_config={**flow_run_link(), **utc_times("received", "finished")},
    )


def _live(ctx: DashboardContext) -> None:
    """The page's figures: read (cached) and laid out; re-run on its own every ``refresh_seconds``."""
    try:
        data = _cached(ctx, load_intake)
    except SQLAlchemyError as e:
        st.error(f"cannot read the database {ctx.database!r}: {getattr(e, 'orig', e)}. Run `papscreen db upgrade`")
        return
    _retry_message()
    _retrying_section(data.retrying)
    _quarantine_section(ctx, data.quarantined)
    _failed_section(ctx, data.failed)
    _duplicates_section(data.duplicates)
    _times_section(ctx, data.times)


def render(ctx: DashboardContext) -> None:
    """Lay out the intake page; its figures refresh live."""
    st.header("Intake")
    if not ctx.prefect_ui:
        st.caption("Links to flow runs appear once the Prefect UI's address is known (dashboard.prefect_ui_url).")
    st.fragment(run_every=ctx.settings.dashboard.refresh_seconds)(_live)(ctx)
