"""Small pieces that more than one dashboard page draws the same way."""

from __future__ import annotations

from typing import Any

import streamlit as st


def flow_run_link() -> dict[str, Any]:
    """The ``column_config`` entry that shows a table's ``flow run`` URLs as links reading "open in Prefect"."""
    return {"flow run": st.column_config.LinkColumn("flow run", display_text="open in Prefect")}
