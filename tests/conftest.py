"""Fixtures shared by the whole suite.

Database tests take the ``database`` fixture, which runs each test twice: on a fresh SQLite file and on a
fresh PostgreSQL database (cloned from a migrated template, so each test is isolated and cheap).
PostgreSQL is required: when it is unreachable the PostgreSQL half fails with a message saying how to start
it. Only ``PAPSCREEN_TEST_SKIP_POSTGRES=1`` (for a laptop without PostgreSQL, never CI) turns that into a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from papscreen.db import migrate
from papscreen.db.database import Database

POSTGRES_URL_ENV = "PAPSCREEN_TEST_POSTGRES_URL"
SKIP_POSTGRES_ENV = "PAPSCREEN_TEST_SKIP_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(autouse=True)
def _isolated_papscreen_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own settings or writes to their home."""
    for name in list(os.environ):
        if name.startswith("PAPSCREEN_") and not name.startswith("PAPSCREEN_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PAPSCREEN_HOME", str(tmp_path / "papscreen-home"))


def _admin_url() -> URL:
    return make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))


def _run_admin(sql: str) -> None:
    engine = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The admin URL of a reachable PostgreSQL server; fails (or, if opted out, skips) otherwise."""
    try:
        _run_admin("SELECT 1")
    except OperationalError as e:
        message = (
            f"PostgreSQL is not reachable at {_admin_url().render_as_string(hide_password=True)}: {e.orig}. "
            "Start it (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`), set "
            f"{POSTGRES_URL_ENV}, or set {SKIP_POSTGRES_ENV}=1 to skip the PostgreSQL half (never in CI)."
        )
        if os.environ.get(SKIP_POSTGRES_ENV) == "1":
            pytest.skip(message)
        pytest.fail(message)
    return _admin_url()


def _new_postgres_database(server: URL, template: str | None = None) -> URL:
    name = f"papscreen_test_{uuid.uuid4().hex[:12]}"
    _run_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return server.set(database=name)


def _drop_postgres_database(url: URL) -> None:
    _run_admin(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_template(postgres_server: URL) -> Iterator[str]:
    """A migrated PostgreSQL database that each test clones."""
    url = _new_postgres_database(postgres_server)
    database = Database(url)
    migrate.upgrade(database)
    database.dispose()
    yield url.database
    _drop_postgres_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    database.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend a test runs on; tests taking it run once per backend."""
    return request.param


@pytest.fixture
def empty_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, unmigrated database on the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = _new_postgres_database(request.getfixturevalue("postgres_server"))
    yield url.render_as_string(hide_password=False)
    _drop_postgres_database(url)


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated database on the test's backend, dropped afterwards."""
    if backend == "sqlite":
        path = tmp_path / "papscreen.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        db = Database(f"sqlite:///{path}")
        yield db
        db.dispose()
        return
    url = _new_postgres_database(
        request.getfixturevalue("postgres_server"), request.getfixturevalue("postgres_template")
    )
    db = Database(url)
    yield db
    db.dispose()
    _drop_postgres_database(url)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect API (a temporary server on its own SQLite file) for the whole session; yields its URL.

    Entering the harness costs about 12 s, so it is entered once; flows run in tests and in child processes
    (given ``PREFECT_API_URL``) report to it.
    """
    with prefect_test_harness(server_startup_timeout=90):
        yield str(PREFECT_API_URL.value())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many database tests ran on each backend, so the log shows both really ran."""
    counts = {backend: {"passed": 0, "failed": 0, "skipped": 0} for backend in BACKENDS}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") != "call" and outcome != "skipped":
                continue
            for backend in BACKENDS:
                if f"[{backend}" in report.nodeid or f"-{backend}]" in report.nodeid or f"-{backend}-" in report.nodeid:
                    counts[backend]["failed" if outcome == "error" else outcome] += 1
    if any(sum(c.values()) for c in counts.values()):
        terminalreporter.section("database backends")
        for backend, c in counts.items():
            terminalreporter.write_line(
                f"{backend}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
            )


# Models trained once per session, shared by the model and pipeline tests (tests/trained.py).
from tests.trained import (  # noqa: E402, F401
    stage1_synthetic,
    stage2_acceptance_db4,
    trained_model_folders,
    trained_stage1,
    trained_stage2,
)
