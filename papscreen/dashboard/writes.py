"""One way every page writes: a widget callback runs one transaction, then a message shows on the next draw.

Writes run in callbacks (before the page is drawn again), so the page drawn right after already shows them; every
write clears the cached reads. What went wrong is said in one line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from papscreen.dashboard.context import DashboardContext

__all__ = ["flash", "show_flash", "store"]

FLASH_KEY = "papscreen_flash"


def flash(kind: str, message: str) -> None:
    """Keep a message (``success`` or ``error``) for the next draw of the page."""
    st.session_state[FLASH_KEY] = (kind, message)


def show_flash() -> None:
    """Show the kept message once, if there is one."""
    kept = st.session_state.pop(FLASH_KEY, None)
    if kept is None:
        return
    kind, message = kept
    (st.success if kind == "success" else st.error)(message)


def store(
    ctx: DashboardContext,
    write: Callable[[Session], str],
    *,
    what: str,
    expected: tuple[type[Exception], ...],
    refused_hint: str = "",
) -> bool:
    """Run ``write`` in one transaction and flash the message it returns, or why ``what`` did not happen."""
    try:
        with ctx.database.session() as session:
            message = write(session)
    except expected as e:
        flash("error", f"{what}: {e}")
        return False
    except SQLAlchemyError as e:
        flash("error", f"{what}: the database refused it ({e.__class__.__name__}).{refused_hint}")
        return False
    st.cache_data.clear()
    flash("success", message)
    return True
