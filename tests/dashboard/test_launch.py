"""Serving the dashboard: the command line ``streamlit run`` gets, and that the server really starts and stops."""

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
from collections.abc import Callable
from pathlib import Path

import pytest

from papscreen.config import load_settings
from papscreen.dashboard.launch import APP_PATH, check_address, start_dashboard, stop_process, streamlit_command
from papscreen.errors import ConfigError

SERVE_DEADLINE_S = 60.0
POLL_S = 0.2


def test_the_served_script_has_no_pages_folder_beside_it() -> None:
    """Streamlit serves a ``pages/`` folder beside its main script as pages of their own (bypassing sign-in)."""
    assert APP_PATH.is_file()
    assert not (APP_PATH.parent / "pages").exists()
    assert "from papscreen.dashboard.app import main" in APP_PATH.read_text()


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
        "--client.toolbarMode": "minimal",
        "--server.address": "127.0.0.1",
    }


def test_a_dashboard_without_users_is_refused_beyond_loopback(tmp_path: Path) -> None:
    open_board = load_settings(home=tmp_path, dashboard={"address": "0.0.0.0"})
    with pytest.raises(ConfigError, match="no users yet"):
        start_dashboard(open_board)
    check_address(load_settings(home=tmp_path, dashboard={"address": "0.0.0.0", "open_access_on_network": True}))
    (tmp_path / "users.toml").write_text("")  # once users exist, sign-in protects it
    check_address(load_settings(home=tmp_path, dashboard={"address": "0.0.0.0"}))


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
