"""What every dashboard page is given: the settings, the database, who is signed in, and where Prefect's UI is.

``app.py`` builds one :class:`DashboardContext` per script run (the engine itself is cached for the whole server
with ``st.cache_resource``) and calls the chosen page's ``render(ctx)``. Pages read and write only through
:mod:`papscreen.db.queries`, inside ``ctx.database.session()`` blocks (one transaction each).
"""

from __future__ import annotations

from dataclasses import dataclass

from papscreen.config import Settings
from papscreen.db.database import Database

__all__ = ["OPEN_ACCESS_USER", "DashboardContext"]

OPEN_ACCESS_USER = "dashboard"
"""The name reviews are recorded under when the dashboard runs without a users file (open access)."""


@dataclass(frozen=True)
class DashboardContext:
    """One page view's context.

    Attributes:
        settings: papscreen's settings (the same ``PAPSCREEN_*`` the service reads).
        database: the cached database handle.
        user: the signed-in user's name; ``OPEN_ACCESS_USER`` when no users file exists.
        signed_in: whether ``user`` signed in with a password (False: open access).
        prefect_ui: base URL of the Prefect UI (e.g. ``http://127.0.0.1:4200``) for links to flow runs, or None.
        role: the signed-in user's role (``cytotechnologist``, ``pathologist``, ``admin``); None with open access,
            where nobody can sign a slide out (a report needs a named person).
    """

    settings: Settings
    database: Database
    user: str
    signed_in: bool
    prefect_ui: str | None = None
    role: str | None = None

    def flow_run_url(self, flow_run_id: str | None) -> str | None:
        """Link to a flow run in the Prefect UI, when both are known.

        Examples:
            >>> from papscreen.db.testing import memory_database
            >>> ctx = DashboardContext(Settings(home="/tmp/x"), memory_database(), "ann", True, "http://h:4200")
            >>> ctx.flow_run_url("abc")
            'http://h:4200/runs/flow-run/abc'
        """
        if not flow_run_id or not self.prefect_ui:
            return None
        return f"{self.prefect_ui.rstrip('/')}/runs/flow-run/{flow_run_id}"
