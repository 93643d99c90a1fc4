"""papscreen's dashboard: a placeholder page until the worklist, slide review and models pages land.

Run by ``papscreen dashboard`` (``streamlit run`` on this file). It builds the settings itself with
:func:`~papscreen.config.load_settings`, so it sees the same ``PAPSCREEN_*`` variables as the command that
started it, and reads only through :mod:`papscreen.dashboard.placeholder`.
"""

from __future__ import annotations

import streamlit as st

from papscreen.config import load_settings
from papscreen.dashboard import placeholder
from papscreen.db.database import Database
from papscreen.errors import PapscreenError


@st.cache_resource(show_spinner=False, on_release=Database.dispose)
def database_for(url: str) -> Database:
    """One engine per database URL for the whole Streamlit server (not one per page view)."""
    return Database(url)


def main() -> None:
    """Lay out the page; any known problem becomes one ``st.error`` saying what to do."""
    st.set_page_config(page_title="papscreen", layout="wide")
    st.title("papscreen")
    st.write(
        "The full dashboard (worklist, slide review, models) is coming. Until then this page shows "
        "what the database holds right now."
    )
    try:
        settings = load_settings()
        overview = placeholder.load_overview(database_for(str(settings.database_url)))
    except PapscreenError as e:
        st.error(str(e))
        return

    st.subheader(f"Slides by status ({overview.total} in all)")
    columns = st.columns(len(overview.counts))
    for column, (status, count) in zip(columns, overview.counts.items(), strict=True):
        column.metric(status, count)

    st.subheader(f"The {placeholder.RECENT_SLIDES} newest slides")
    if overview.recent:
        st.dataframe(overview.recent, hide_index=True)
    else:
        st.info("No slides yet: drop scans into the intake folder.")

    st.subheader("Champion models")
    for stage, champion in overview.champions.items():
        st.markdown(f"**{stage}**: {champion or 'none yet (train or import one: `papscreen models --help`)'}")


main()
