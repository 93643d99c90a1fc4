"""Audit page: who did what, to which slide or model, when; filtered, and exported as CSV.

Everything papscreen records in its append-only audit log shows here: reviews and corrections, sign-outs,
sign-ins (failed ones too) and sign-outs of the dashboard, promotions and rejections of models, retries of
quarantined files. A pathologist or an admin sees it (with open access, anyone: there is nobody to tell apart);
a cytotechnologist is told who can.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from papscreen.dashboard.context import DashboardContext
from papscreen.dashboard.widgets import utc_times
from papscreen.db import queries
from papscreen.db.schema import AuditEvent

__all__ = ["MAX_ROWS", "audit_csv", "audit_frame", "render"]

MAX_ROWS = 10_000
"""Most events one view lists (and exports); narrow the filters for older ones."""
EVERYONE = "everyone"
READERS = ("pathologist", "admin")


def audit_frame(events: list[AuditEvent]) -> pd.DataFrame:
    """Events as the table and the CSV show them, newest first."""
    return pd.DataFrame(
        {
            "at": pd.to_datetime([e.at for e in events], utc=True),
            "person": [e.actor for e in events],
            "action": [e.action for e in events],
            "record": [f"{e.entity_type} #{e.entity_id}" if e.entity_id else e.entity_type for e in events],
            "details": [json.dumps(e.details, sort_keys=True, default=str) if e.details else "" for e in events],
        }
    )


def _day_start(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)


def render(ctx: DashboardContext) -> None:
    """Draw the audit page."""
    st.title("Audit log")
    if ctx.signed_in and ctx.role not in READERS:
        st.info("The audit log is for pathologists and admins: ask one of them, or an admin to change your role.")
        return
    with ctx.database.session() as session:
        actors, actions = queries.event_vocabulary(session)
    columns = st.columns([2, 3, 1, 1, 1])
    person = columns[0].selectbox("Person", [EVERYONE, *actors], key="audit_person")
    chosen = columns[1].multiselect("Actions", actions, key="audit_actions", placeholder="all actions")
    slide = columns[2].number_input("Slide #", min_value=0, value=0, step=1, key="audit_slide", help="0: every record")
    since = columns[3].date_input("From (UTC)", value=None, key="audit_since")
    until = columns[4].date_input("To (UTC)", value=None, key="audit_until")
    filters: dict[str, Any] = {
        "actor": None if person == EVERYONE else person,
        "actions": chosen or None,
        "since": _day_start(since),
        "until": None if until is None else _day_start(until + timedelta(days=1)),
        "limit": MAX_ROWS,
    }
    if slide:
        filters |= {"entity_type": "slide", "entity_id": int(slide)}
    with ctx.database.session() as session:
        events = list(queries.list_events(session, **filters))
    frame = audit_frame(events)
    more = " (the newest; narrow the filters for older ones)" if len(events) == MAX_ROWS else ""
    st.caption(f"{len(events)} events{more}, newest first. Times are UTC.")
    if frame.empty:
        st.info("No event matches these filters.")
        return
    st.dataframe(frame, hide_index=True, column_config=utc_times("at"), key="audit_table")
    st.download_button("Export CSV", audit_csv(frame), "papscreen-audit.csv", "text/csv", key="audit_export")


def audit_csv(frame: pd.DataFrame) -> bytes:
    """The shown table as CSV (UTF-8), times as ISO 8601 UTC (``2026-12-07T14:05:33Z``)."""
    return frame.assign(at=frame["at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(index=False).encode()
