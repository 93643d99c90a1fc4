"""Moving between dashboard pages while keeping the session (and so the sign-in).

``app.py`` registers its pages once per run (:func:`register_pages`); a page opens a slide with
:func:`open_slide`, which remembers the slide and switches to the slide page. The slide page reads
:func:`selected_slide` (session first, then the ``?slide=N`` query parameter, so a slide's URL can be shared).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

__all__ = ["SLIDE_PARAM", "open_slide", "register_pages", "selected_slide"]

SLIDE_PARAM = "slide"
_SLIDE_KEY = "papscreen_slide_id"
_PAGES_KEY = "papscreen_pages"


def register_pages(pages: dict[str, Any]) -> None:
    """Remember this run's page objects by name (``overview``, ``worklist``, ``slide``, ``models``, ``intake``)."""
    st.session_state[_PAGES_KEY] = pages


def open_slide(slide_id: int) -> None:
    """Show a slide on the slide page (when the app's navigation is there; else only remember it)."""
    st.session_state[_SLIDE_KEY] = int(slide_id)
    page = (st.session_state.get(_PAGES_KEY) or {}).get("slide")
    if page is not None:
        st.switch_page(page)


def selected_slide() -> int | None:
    """The slide to show: the one last opened in this session, else the ``?slide=N`` of the URL."""
    raw = st.query_params.get(SLIDE_PARAM)
    if raw is not None and str(raw).isdigit():
        st.session_state[_SLIDE_KEY] = int(raw)
    value = st.session_state.get(_SLIDE_KEY)
    return int(value) if value is not None else None
