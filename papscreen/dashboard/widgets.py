"""Small pieces that more than one dashboard page draws the same way."""

from __future__ import annotations

from typing import Any

import streamlit as st


def flow_run_link() -> dict[str, Any]:
    """The ``column_config`` entry that shows a table's ``flow run`` URLs as links reading "open in Prefect"."""
    return {"flow run": st.column_config.LinkColumn("flow run", display_text="open in Prefect")}


def utc_times(*names: str) -> dict[str, Any]:
    """``column_config`` entries that show the named time columns as "2026-12-07 14:05" in UTC, as every page does.

    Without them a table shows "2026-12-07 14:05:33.123+00:00" beside pages that say "UTC", and a missing time
    as "None"; with them a missing time is an empty cell.
    """
    return {
        name: st.column_config.DatetimeColumn(f"{name} (UTC)", format="YYYY-MM-DD HH:mm", timezone="UTC")
        for name in names
    }
