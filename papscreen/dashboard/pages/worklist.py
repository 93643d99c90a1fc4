"""Worklist page: the analysed slides, most suspicious first, as screening imagers rank them; a row opens its slide.

Each analysed slide shows its rank ``n/N`` and quintile (1 = the most suspicious fifth) among the analysed slides
received in the chosen dates, its category, adequacy, abnormal score, cell count, when it arrived and whether
someone reviewed it. Filters (status, category, reviewed, dates, name) narrow the list without changing a
slide's rank. Slides still waiting, being analysed or failed are listed below, without a rank. The tables
refresh live (a fragment re-run every ``dashboard.refresh_seconds``) from queries cached for
``dashboard.cache_ttl_seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.dashboard import navigation
from papscreen.dashboard.context import DashboardContext
from papscreen.dashboard.pages.overview import cached, database_error
from papscreen.db.database import Database
from papscreen.db.queries.worklist import PENDING_STATUSES, WorklistFilter, WorklistRow, unanalysed_slides, worklist
from papscreen.db.schema import SlideStatus

__all__ = [
    "PENDING_TABLE_KEY",
    "REVIEWED_CHOICES",
    "TABLE_KEY",
    "build_filter",
    "load_pending",
    "load_worklist",
    "pending_frame",
    "render",
    "worklist_frame",
]

TABLE_KEY = "worklist_table"
PENDING_TABLE_KEY = "worklist_pending_table"
STATUS_CHOICES = (SlideStatus.DONE.value, *(s.value for s in PENDING_STATUSES))
REVIEWED_CHOICES = {"all": None, "not reviewed": False, "reviewed": True}
_SHOWN_SUFFIX = "_shown_ids"


def build_filter(
    *,
    statuses: Sequence[str],
    categories: Sequence[str],
    reviewed: str,
    since: date | None,
    until: date | None,
    name: str,
) -> WorklistFilter:
    """The query's filter from the widgets' values; ``until`` is inclusive (the whole day, UTC).

    Examples:
        >>> f = build_filter(statuses=["done"], categories=[], reviewed="not reviewed", since=None,
        ...                  until=date(2025, 3, 1), name=" hsil ")
        >>> f.reviewed, f.received_until.isoformat(), f.name_contains
        (False, '2025-03-02T00:00:00+00:00', 'hsil')
    """
    return WorklistFilter(
        statuses=tuple(SlideStatus(s) for s in statuses),
        categories=tuple(categories),
        reviewed=REVIEWED_CHOICES[reviewed],
        received_since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
        received_until=datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC) if until else None,
        name_contains=name.strip(),
    )


def load_worklist(_database: Database, url: str, filters: WorklistFilter) -> tuple[WorklistRow, ...]:
    """Read the ranked worklist (``url`` and ``filters`` key the cache; the Database is not hashed)."""
    with _database.session() as session:
        return tuple(worklist(session, filters))


def load_pending(_database: Database, url: str) -> tuple[WorklistRow, ...]:
    """Read the slides without a result yet (queued, processing, failed)."""
    with _database.session() as session:
        return tuple(unanalysed_slides(session))


def worklist_frame(rows: Sequence[WorklistRow]) -> pd.DataFrame:
    """The worklist as the table shows it, one row per slide in rank order."""
    return pd.DataFrame(
        {
            "slide": pd.array([r.slide_id for r in rows], dtype="Int64"),
            "rank": [r.rank_text for r in rows],
            "quintile": pd.array([r.quintile for r in rows], dtype="Int64"),
            "name": [r.name for r in rows],
            "category": [r.category or "" for r in rows],
            "adequacy": [r.adequacy or "" for r in rows],
            "abnormal score": pd.array([r.abnormal_score for r in rows], dtype="Float64"),
            "cells": pd.array([r.cell_count for r in rows], dtype="Int64"),
            "received": pd.to_datetime([r.received_at for r in rows], utc=True),
            "status": [r.status for r in rows],
            "reviewed": [r.reviewed_at is not None for r in rows],
            "reviewed by": [_reviewed_text(r) for r in rows],
            "report": [_report_text(r) for r in rows],
            "models": ["older: re-score" if r.older_models else "" for r in rows],
        }
    )


def _report_text(row: WorklistRow) -> str:
    """Where the slide's report stands: ``signed out: HSIL (dr_p)``, ``awaiting pathologist: ASC-H``, or empty."""
    if row.signout_status is None:
        return ""
    who = f" ({row.signed_out_by})" if row.signed_out_by else ""
    return f"{row.signout_status}: {row.interpretation or '?'}{who}"


def pending_frame(rows: Sequence[WorklistRow], ctx: DashboardContext) -> pd.DataFrame:
    """Slides without a result: what they wait for, or why they failed, and their flow run in Prefect."""
    return pd.DataFrame(
        {
            "slide": pd.array([r.slide_id for r in rows], dtype="Int64"),
            "name": [r.name for r in rows],
            "status": [r.status for r in rows],
            "received": pd.to_datetime([r.received_at for r in rows], utc=True),
            "progress": pd.array([r.progress_fraction for r in rows], dtype="Float64"),
            "doing": [r.progress_note or "" for r in rows],
            "error": [r.error or "" for r in rows],
            "flow run": [ctx.flow_run_url(r.flow_run_id) for r in rows],
        }
    )


def _reviewed_text(row: WorklistRow) -> str:
    if row.reviewed_at is None:
        return ""
    return f"{row.reviewed_by or '?'}, {row.reviewed_at:%Y-%m-%d %H:%M} UTC"


def _worklist_columns() -> dict[str, Any]:
    cc = st.column_config
    return {
        "slide": cc.NumberColumn("Slide", format="%d", help="The slide's id."),
        "rank": cc.TextColumn("Rank", help="n/N: position among the analysed slides, most suspicious first."),
        "quintile": cc.NumberColumn("Quintile", format="Q%d", help="Q1 = the most suspicious fifth, Q5 the least."),
        "name": cc.TextColumn("Name"),
        "category": cc.TextColumn("Category", help="The highest grade with confident support."),
        "adequacy": cc.TextColumn("Adequacy"),
        "abnormal score": cc.ProgressColumn(
            "Abnormal score", min_value=0.0, max_value=1.0, format="%.3f", help="Mean suspicion of the top cells."
        ),
        "cells": cc.NumberColumn("Cells", format="%d", help="Squamous cells found and graded."),
        "received": cc.DatetimeColumn("Received (UTC)", format="YYYY-MM-DD HH:mm", timezone="UTC"),
        "status": cc.TextColumn("Status"),
        "reviewed": cc.CheckboxColumn("Reviewed"),
        "reviewed by": cc.TextColumn("Reviewed by"),
        "report": cc.TextColumn("Report", help="The signed interpretation, or that it waits for a pathologist."),
        "models": cc.TextColumn("Models", help="'older': analysed by models that are no longer the champions."),
    }


def _pending_columns() -> dict[str, Any]:
    cc = st.column_config
    return {
        "slide": cc.NumberColumn("Slide", format="%d"),
        "received": cc.DatetimeColumn("Received (UTC)", format="YYYY-MM-DD HH:mm", timezone="UTC"),
        "progress": cc.ProgressColumn(
            "Progress", min_value=0.0, max_value=1.0, format="percent", help="How far the running analysis is."
        ),
        "doing": cc.TextColumn("Doing", help="The analysis' phase, how much of it is done, and the time left."),
        "flow run": cc.LinkColumn("Flow run", display_text="open in Prefect", help="Logs of the slide's analysis."),
    }


def _filters() -> WorklistFilter:
    """The filter widgets (outside the live fragment: changing one reruns the page)."""
    columns = st.columns([2, 2, 1.4, 1.3, 1.3, 2])
    statuses = columns[0].multiselect("Status", STATUS_CHOICES, default=[SlideStatus.DONE.value], key="worklist_status")
    categories = columns[1].multiselect("Category", BETHESDA_CLASSES, key="worklist_category")
    reviewed = columns[2].selectbox("Reviewed", list(REVIEWED_CHOICES), key="worklist_reviewed")
    since = columns[3].date_input("Received from", value=None, key="worklist_since")
    until = columns[4].date_input("Received until", value=None, key="worklist_until")
    name = columns[5].text_input("Name contains", key="worklist_name")
    return build_filter(
        statuses=statuses, categories=categories, reviewed=reviewed, since=since, until=until, name=name
    )


def _selectable_table(frame: pd.DataFrame, key: str, columns: dict[str, Any]) -> None:
    """A table whose selected row opens that slide.

    A selection names a row of the table the reviewer saw; the ids shown by the previous run are kept so a
    refresh that reordered the rows in between cannot open another slide than the one clicked.
    """
    ids = [int(i) for i in frame["slide"]]
    shown: list[int] = st.session_state.get(key + _SHOWN_SUFFIX) or ids
    st.session_state[key + _SHOWN_SUFFIX] = ids
    event = st.dataframe(
        frame,
        key=key,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        column_config=columns,
    )
    rows = event.selection.rows if event is not None else []
    if rows and 0 <= rows[0] < len(shown):
        navigation.open_slide(shown[rows[0]])


def _live(ctx: DashboardContext, filters: WorklistFilter) -> None:
    """The tables; re-run on their own every ``refresh_seconds``."""
    try:
        rows = cached(ctx, load_worklist, filters)
        pending = cached(ctx, load_pending)
    except SQLAlchemyError as e:
        st.error(database_error(ctx, e))
        return
    if rows:
        ranked = next((r.total for r in rows if r.total), 0)
        st.caption(
            f"{len(rows)} slides listed, ranked among {ranked} analysed slides. Select a row to open its slide. "
            f"Refreshed every {ctx.settings.dashboard.refresh_seconds:g} s."
        )
        _selectable_table(worklist_frame(rows), TABLE_KEY, _worklist_columns())
    else:
        st.info("No analysed slide matches these filters (a slide appears here once its analysis is done).")
    st.subheader(f"Waiting, in analysis or failed ({len(pending)})")
    if pending:
        _selectable_table(pending_frame(pending, ctx), PENDING_TABLE_KEY, _pending_columns())
    else:
        st.caption("Nothing waiting: every slide received has been analysed.")


def render(ctx: DashboardContext) -> None:
    """Draw the worklist page."""
    st.title("Worklist")
    filters = _filters()
    if filters.received_since and filters.received_until and filters.received_since >= filters.received_until:
        st.warning("'Received from' is after 'Received until': no slide can match.")
    st.fragment(run_every=ctx.settings.dashboard.refresh_seconds)(_live)(ctx, filters)
