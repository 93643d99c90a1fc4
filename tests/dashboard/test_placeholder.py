"""The placeholder dashboard: its page against a seeded database on both backends, and that it really serves."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from papscreen.config import load_settings
from papscreen.dashboard.launch import APP_PATH, start_dashboard, stop_process, streamlit_command
from papscreen.dashboard.placeholder import champions, recent_slides, slide_counts
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import ModelStage

SERVE_DEADLINE_S = 60.0
POLL_S = 0.2


@pytest.fixture(autouse=True)
def _fresh_streamlit_cache() -> Iterator[None]:
    """Each test gets its own engine; releasing the cache disposes of the previous one (on_release)."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def _seed(database: Database) -> dict[str, int]:
    """Five slides: two queued, one processing, one failed, one duplicate; a stage-1 champion."""
    with database.session() as s:
        ids = {
            name: queries.claim_scan(s, sha256=f"{i:064x}", original_name=name, size_bytes=100 + i).slide.id
            for i, name in enumerate(["alpha.svs", "bravo.tif", "charlie.jpg", "delta.ndpi"])
        }
        queries.claim_scan(s, sha256=f"{0:064x}", original_name="alpha copy.svs", size_bytes=100)
        queries.start_processing(s, ids["charlie.jpg"])
        queries.start_processing(s, ids["delta.ndpi"])
        queries.fail_slide(s, ids["delta.ndpi"], "unreadable tile")
        queries.register_model_version(
            s, stage=ModelStage.STAGE1, name="s1-night-7", architecture="cnn20plus", file_path="/m/s1", sha256="1" * 64
        )
    return ids


def _run_app(monkeypatch: pytest.MonkeyPatch, url: str) -> AppTest:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", url)
    app = AppTest.from_file(str(APP_PATH), default_timeout=60)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def test_page_shows_counts_slides_and_champions(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(database)
    app = _run_app(monkeypatch, database.url.render_as_string(hide_password=False))

    assert not app.error
    assert app.title[0].value == "papscreen"
    assert any("full dashboard (worklist, slide review, models) is coming" in m.value for m in app.markdown)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {
        "queued": "2",
        "processing": "1",
        "done": "0",
        "failed": "1",
        "quarantined": "0",
        "duplicate": "1",
    }
    assert any("5 in all" in h.value for h in app.subheader)
    table = app.dataframe[0].value
    assert list(table["name"]) == ["alpha copy.svs", "delta.ndpi", "charlie.jpg", "bravo.tif", "alpha.svs"]
    assert list(table.columns) == ["id", "name", "status", "category", "abnormal score", "received"]
    assert dict(zip(table["name"], table["status"], strict=True))["delta.ndpi"] == "failed"
    page = " ".join(m.value for m in app.markdown)
    assert "s1-night-7 (cnn20plus)" in page
    assert "**stage2**: none yet" in page


def test_empty_database_says_no_slides(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _run_app(monkeypatch, database.url.render_as_string(hide_password=False))

    assert not app.error
    assert not app.dataframe
    assert "No slides yet" in app.info[0].value
    assert {m.value for m in app.metric} == {"0"}


def test_unmigrated_database_shows_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _run_app(monkeypatch, f"sqlite:///{tmp_path / 'never-migrated.db'}")

    assert len(app.error) == 1
    assert "run `papscreen db upgrade`" in app.error[0].value
    assert "schema empty" in app.error[0].value
    assert not app.metric
    assert not app.dataframe


def test_unreachable_database_shows_an_error_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = _run_app(monkeypatch, f"postgresql+psycopg2://nobody@127.0.0.1:{port}/papscreen")

    assert len(app.error) == 1
    assert "cannot reach the database" in app.error[0].value
    assert "papscreen db upgrade" in app.error[0].value


def test_bad_settings_show_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_DEVICE", "tpu")
    app = AppTest.from_file(str(APP_PATH), default_timeout=60).run()

    assert not app.exception
    assert "invalid settings" in app.error[0].value


def test_placeholder_functions_return_plain_data(database: Database) -> None:
    _seed(database)

    assert slide_counts(database)["queued"] == 2
    assert [row["name"] for row in recent_slides(database, limit=2)] == ["alpha copy.svs", "delta.ndpi"]
    found = champions(database)
    assert found["stage2"] is None
    assert found["stage1"] is not None
    assert found["stage1"].startswith("s1-night-7 (cnn20plus), champion since ")


@pytest.mark.parametrize(("port", "expected"), [(None, "8501"), (9123, "9123")], ids=["settings-port", "given-port"])
def test_streamlit_command(port: int | None, expected: str) -> None:
    settings = load_settings()
    command = streamlit_command(settings, port)

    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    assert Path(command[4]).is_file()
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options == {
        "--server.port": expected,
        "--server.headless": "true",
        "--browser.gatherUsageStats": "false",
        "--server.address": "0.0.0.0",
    }


def test_streamlit_command_uses_the_configured_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_ORCHESTRATION__DASHBOARD_PORT", "8777")
    command = streamlit_command(load_settings())

    assert command[command.index("--server.port") + 1] == "8777"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(port: int) -> str | None:
    """The body of Streamlit's health endpoint, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _wait_until(
    condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    """Poll ``condition`` until it holds; fail at the deadline, or at once if ``process`` exits meanwhile."""
    deadline = time.monotonic() + SERVE_DEADLINE_S
    while not condition():
        if process is not None and process.poll() is not None:
            output = log.read_text() if log is not None else ""
            pytest.fail(f"the dashboard exited with code {process.returncode} before {what}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"the dashboard was not {what} within {SERVE_DEADLINE_S:.0f} s")
        time.sleep(POLL_S)  # polling interval of a condition with a deadline, not a fixed wait


@pytest.mark.slow
def test_dashboard_serves_and_stops() -> None:
    port = _free_port()
    process = start_dashboard(load_settings(), port=port)
    try:
        _wait_until(lambda: _health(port) == "ok", "serving", process)
    finally:
        code = stop_process(process, timeout=10)

    assert process.poll() is not None
    assert code is not None
    assert _health(port) is None
    with pytest.raises(ProcessLookupError):  # the whole group is gone, not just the leader
        os.killpg(process.pid, 0)


@pytest.mark.slow
def test_cli_dashboard_runs_in_the_foreground_and_ctrl_c_exits_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "dashboard.log"
    command = [sys.executable, "-c", "from papscreen.cli import main; main()", "dashboard", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until(lambda: _health(port) == "ok", "serving", process, log)
        process.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground command
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    output = log.read_text()
    assert process.returncode == 0, output
    assert f"http://localhost:{port}" in output
    assert "dashboard stopped" in output
    _wait_until(lambda: _health(port) is None, "stopped")
