"""papscreen's dashboard: sign-in, then five pages (overview, worklist, slide, models, intake).

Served by ``papscreen dashboard``: ``streamlit run`` on :mod:`papscreen.dashboard.serve.streamlit_app`, which
calls :func:`main` (not on this file: Streamlit would take the ``pages/`` folder beside it for pages of their own).
Streamlit reruns it on every interaction. Each run builds the settings with :func:`~papscreen.config.load_settings`
(so it sees the same ``PAPSCREEN_*`` variables as the command that started it), passes the sign-in gate of
:mod:`papscreen.dashboard.auth`, checks the database once in a while, and hands one
:class:`~papscreen.dashboard.context.DashboardContext` to the page the visitor chose. The engine is shared by
every session of the server (``st.cache_resource``, keyed by URL).

Importing this module draws nothing; only :func:`main` does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

import streamlit as st
import streamlit.components.v1 as components
from sqlalchemy.exc import OperationalError, ProgrammingError

from papscreen.config import Settings, load_settings
from papscreen.dashboard import auth, navigation
from papscreen.dashboard.context import OPEN_ACCESS_USER, DashboardContext
from papscreen.dashboard.pages import audit, intake, models, overview, slide, worklist
from papscreen.dashboard.session_cookie import COOKIE_NAME, SessionSigner, clear_cookie_script, set_cookie_script
from papscreen.db import migrate, queries
from papscreen.db.database import Database
from papscreen.errors import PapscreenError

__all__ = [
    "DEFAULT_PAGE",
    "PAGES",
    "DatabaseNotReadyError",
    "check_database",
    "database_for",
    "main",
    "open_access_notice",
    "prefect_ui_url",
]

PAGES: tuple[tuple[str, str, str, ModuleType], ...] = (
    ("overview", "Overview", ":material/dashboard:", overview),
    ("worklist", "Worklist", ":material/format_list_numbered:", worklist),
    ("slide", "Slide", ":material/biotech:", slide),
    ("models", "Models", ":material/model_training:", models),
    ("intake", "Intake", ":material/move_to_inbox:", intake),
    ("audit", "Audit", ":material/history:", audit),
)
"""(url path, title, icon, module) of every page, in the sidebar's order; each module has ``render(ctx)``."""
DEFAULT_PAGE = "overview"
SECRET_FILE = "dashboard.secret"
TOKEN_KEY = "papscreen_session_token"
CLEAR_COOKIE_KEY = "papscreen_clear_cookie"
logger = logging.getLogger(__name__)
SCHEMA_CHECK_TTL_S = 30
"""A database found ready is not checked again for this long (a failed check is repeated on every run)."""


class DatabaseNotReadyError(PapscreenError):
    """The database cannot be reached or is not at papscreen's schema; the message says what to run."""


@st.cache_resource(show_spinner=False, on_release=Database.dispose)
def database_for(url: str) -> Database:
    """One engine per database URL for the whole Streamlit server (not one per page view)."""
    return Database(url)


def check_database(database: Database) -> None:
    """Raise :class:`DatabaseNotReadyError` unless the database is reachable and at the newest schema.

    Examples:
        >>> from papscreen.db.testing import memory_database
        >>> check_database(memory_database())
        >>> check_database(Database("sqlite://"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        papscreen.dashboard.app.DatabaseNotReadyError: the database ... run `papscreen db upgrade`
    """
    try:
        revision, head = migrate.current_revision(database), migrate.head_revision(database)
    except OperationalError as e:
        raise DatabaseNotReadyError(
            f"cannot reach the database {database!r}: {e.orig}. Check PAPSCREEN_DATABASE_URL and that the "
            "server runs, then run `papscreen db upgrade`"
        ) from e
    if revision != head:
        raise DatabaseNotReadyError(
            f"the database {database!r} is at schema {revision or 'empty'}, this papscreen needs {head}: "
            "run `papscreen db upgrade`"
        )


@st.cache_data(ttl=SCHEMA_CHECK_TTL_S, show_spinner=False)
def _database_ready(url: str, _database: Database) -> bool:
    """:func:`check_database`, remembered for a while once it passed (an exception is never cached)."""
    check_database(_database)
    return True


def prefect_ui_url(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """Where the Prefect UI is, for links to flow runs.

    ``settings.dashboard.prefect_ui_url`` when set, else ``PREFECT_API_URL`` without its ``/api`` (the UI is
    served beside the API), else the local server ``papscreen up`` starts.

    Examples:
        >>> s = Settings(home="/tmp/lab")
        >>> prefect_ui_url(s, {"PREFECT_API_URL": "http://prefect:4200/api/"})
        'http://prefect:4200'
        >>> prefect_ui_url(s, {})
        'http://127.0.0.1:4200'
    """
    if settings.dashboard.prefect_ui_url:
        return settings.dashboard.prefect_ui_url.rstrip("/")
    api = environ.get("PREFECT_API_URL", "").strip().rstrip("/")
    if api:
        return api.removesuffix("/api")
    return f"http://127.0.0.1:{settings.orchestration.prefect_port}"


def open_access_notice(users_file: Path) -> str:
    """What the sidebar says when nobody has to sign in."""
    return (
        f"Open access: no users file ({users_file}); reviews are recorded as '{OPEN_ACCESS_USER}'. "
        "Add a user with `papscreen users add NAME` to require sign-in."
    )


def _identify(settings: Settings) -> tuple[auth.User | None, bool]:
    """(the signed-in user or None, whether sign-in is required); draws the sign-in form when it is missing.

    Raises:
        auth.UsersFileError: the users file exists but cannot be used (nobody gets in until it is fixed).
    """
    users_file: Path = settings.dashboard.users_file  # type: ignore[assignment]  # set by the settings
    if not users_file.exists():
        return None, False
    users = auth.load_users(users_file)
    user = _still_valid(settings, auth.signed_in_user(users)) or _resume(settings, users)
    if user is None:
        _keep_the_address()
        if st.session_state.pop(CLEAR_COOKIE_KEY, False):
            components.html(clear_cookie_script(), height=0)
        auth.sign_in_form(users, on_attempt=lambda name, ok, why: _audit_sign_in(settings, name, ok, why))
    return user, True


def _audit_sign_in(settings: Settings, name: str, succeeded: bool, reason: str) -> None:
    """Write a sign-in attempt to the audit log; a database that is away does not stop anyone signing in."""
    action = "user.signed_in" if succeeded else "user.sign_in_failed"
    try:
        with database_for(str(settings.database_url)).session() as session:
            queries.record_event(
                session, action, "user", name[:64], actor=name[:128] or "?", details={"reason": reason}
            )
    except Exception as e:  # noqa: BLE001 - the audit write is best effort at this door; the log says it failed
        logger.warning("could not record %s of %r in the audit log: %s", action, name, e)


def _signer(settings: Settings) -> SessionSigner:
    return _signer_for(str(settings.home / SECRET_FILE))


@st.cache_resource(show_spinner=False)
def _signer_for(secret_path: str) -> SessionSigner:
    """One signer per secret for the whole server, so a revocation reaches every tab."""
    return SessionSigner.from_file(Path(secret_path))


def _still_valid(settings: Settings, user: auth.User | None) -> auth.User | None:
    """The tab's user, unless its session was signed out elsewhere (another tab) or has expired."""
    token = st.session_state.get(TOKEN_KEY)
    if user is None or token is None or _signer(settings).user_of(token) == user.name:
        return user
    st.session_state.pop(TOKEN_KEY, None)
    auth.sign_out()
    return None


def _resume(settings: Settings, users: dict[str, auth.User]) -> auth.User | None:
    """The user of this browser's session cookie, if it is valid and they are still in the users file."""
    token = st.context.cookies.get(COOKIE_NAME)
    if not isinstance(token, str):  # no cookie (or a test runner without a browser)
        return None
    name = _signer(settings).user_of(token)
    if name is None or name not in users:
        return None
    st.session_state[auth.SESSION_USER_KEY] = name
    st.session_state[TOKEN_KEY] = token
    return users[name]


def _keep_signed_in(settings: Settings) -> None:
    """After a sign-in with a password, give this browser a session cookie (once)."""
    if st.session_state.get(TOKEN_KEY):
        return
    lifetime = settings.dashboard.session_hours * 3600
    token = _signer(settings).token(st.session_state[auth.SESSION_USER_KEY], lifetime_s=lifetime)
    st.session_state[TOKEN_KEY] = token
    components.html(set_cookie_script(token, lifetime), height=0)


def _sign_out(settings: Settings, user: auth.User) -> None:
    """Sign this session out everywhere its cookie reached, and say so in the audit log."""
    token = st.session_state.pop(TOKEN_KEY, None)
    if token:
        _signer(settings).revoke(token)
    st.session_state[CLEAR_COOKIE_KEY] = True
    auth.sign_out()
    _audit_sign_out(settings, user.name)


def _audit_sign_out(settings: Settings, name: str) -> None:
    try:
        with database_for(str(settings.database_url)).session() as session:
            queries.record_event(session, "user.signed_out", "user", name, actor=name)
    except Exception as e:  # noqa: BLE001 - as for sign-ins
        logger.warning("could not record the sign-out of %r in the audit log: %s", name, e)


def _nothing() -> None:
    """The body of a page before sign-in: never run (only the sign-in form is drawn)."""


def _keep_the_address() -> None:
    """Register the pages (hidden, empty) without running any, so signing in lands on the page the URL asked for.

    Without this, a bookmark such as ``/slide?slide=12`` would open the overview after sign-in. The page bodies
    here draw nothing and are never run: the URL only selects which real page the next run shows.
    """
    st.navigation(
        [st.Page(_nothing, title=title, url_path=name, default=name == DEFAULT_PAGE) for name, title, _, _ in PAGES],
        position="hidden",
    )


def _sidebar(settings: Settings, user: auth.User | None) -> None:
    """Who is signed in (with a sign-out button), or that the dashboard runs open."""
    with st.sidebar:
        if user is None:
            st.info(open_access_notice(settings.dashboard.users_file), icon=":material/lock_open:")  # type: ignore[arg-type]
            return
        st.markdown(f"Signed in as **{user.display_name}** (`{user.name}`), {user.role.value}")
        st.button(
            "Sign out", key="papscreen-sign-out", on_click=_sign_out, args=(settings, user), icon=":material/logout:"
        )


def _page(module: ModuleType, ctx: DashboardContext) -> Callable[[], None]:
    """The page's body as Streamlit calls it: the module's ``render(ctx)``, with known failures shown as one error.

    ``render`` is looked up when the page runs, so a module Streamlit reloaded (its source changed) is the one used.
    """

    def body() -> None:
        try:
            module.render(ctx)
        except PapscreenError as e:
            st.error(str(e))
        except (OperationalError, ProgrammingError) as e:
            st.error(
                f"cannot read the database {ctx.database!r}: {e.orig}. Check that it runs and is upgraded "
                "(`papscreen db upgrade`), then reload"
            )

    return body


def main() -> None:
    """One run: settings, sign-in, database check, then the chosen page; known problems become one error."""
    st.set_page_config(page_title="papscreen", layout="wide")
    try:
        settings = load_settings()
        user, required = _identify(settings)
    except PapscreenError as e:
        st.error(str(e))
        return
    if required and user is None:
        return  # only the sign-in form is on the page
    _sidebar(settings, user)
    if user is not None:
        with st.sidebar:
            _keep_signed_in(settings)
    database = database_for(str(settings.database_url))
    try:
        _database_ready(str(settings.database_url), database)
    except DatabaseNotReadyError as e:
        st.error(str(e))
        return
    ctx = DashboardContext(
        settings=settings,
        database=database,
        user=user.name if user is not None else OPEN_ACCESS_USER,
        signed_in=user is not None,
        prefect_ui=prefect_ui_url(settings),
        role=user.role.value if user is not None else None,
    )
    pages = {
        name: st.Page(_page(module, ctx), title=title, icon=icon, url_path=name, default=name == DEFAULT_PAGE)
        for name, title, icon, module in PAGES
    }
    navigation.register_pages(pages)
    st.navigation(list(pages.values())).run()
