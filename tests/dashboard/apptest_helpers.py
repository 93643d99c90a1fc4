"""What the dashboard's AppTest tests share: one page run alone, a run that fails on any exception, fresh caches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from papscreen.db.database import Database

PREFECT_UI = "http://prefect.test:4200"


def page_script(page: str, url: str, user: str, signed_in: bool, role: str | None = None) -> None:
    """The AppTest script: one page of ``papscreen.dashboard.pages`` alone, with a context as app.py builds it.

    AppTest runs this function's source in isolation, so it imports what it needs and repeats ``PREFECT_UI``.
    """
    import importlib

    import streamlit as st

    from papscreen.config import load_settings
    from papscreen.dashboard.context import DashboardContext
    from papscreen.db.database import Database

    @st.cache_resource(on_release=Database.dispose)
    def database_for(url: str) -> Database:
        return Database(url)

    module = importlib.import_module(f"papscreen.dashboard.pages.{page}")
    prefect_ui = "http://prefect.test:4200"
    module.render(DashboardContext(load_settings(), database_for(url), user, signed_in, prefect_ui, role=role))


def page_app(page: str, url: str, *, user: str = "ann", signed_in: bool = True, role: str | None = None) -> AppTest:
    """The AppTest of one page (not yet run) reading the database at ``url``; ``role`` of a signed-in user."""
    if signed_in and role is None:
        role = "cytotechnologist"
    kwargs = {"page": page, "url": url, "user": user, "signed_in": signed_in, "role": role}
    return AppTest.from_function(page_script, kwargs=kwargs, default_timeout=60)


def run_ok(app: AppTest) -> AppTest:
    """Run ``app`` once more; fail on any exception it raised."""
    app.run()
    return assert_ok(app)


def assert_ok(app: AppTest) -> AppTest:
    """Fail on any exception the last run raised."""
    assert not app.exception, [e.message for e in app.exception]
    return app


def database_url(database: Database) -> str:
    """The database's URL with its password, as the app is given it."""
    return database.url.render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def fresh_streamlit_caches() -> Iterator[None]:
    """Each test reads its own database: no engine or answer cached by another test.

    A module that imports this fixture gets it for each of its tests.
    """
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()
