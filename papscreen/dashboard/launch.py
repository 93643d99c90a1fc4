"""Start and stop the Streamlit server that serves the dashboard, as a child process.

The dashboard runs in its own process (Streamlit owns its event loop and reruns the script per view), in a
new process group so that stopping it also stops anything Streamlit started, and with the caller's
``PAPSCREEN_*`` variables so that the page reads the same database as the command that launched it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from papscreen.config import Settings
from papscreen.errors import ConfigError

__all__ = ["APP_PATH", "check_address", "start_dashboard", "stop_process", "streamlit_command"]

APP_PATH = Path(__file__).resolve().parent / "serve" / "streamlit_app.py"
"""The script Streamlit serves; not ``app.py`` itself, which sits beside ``pages/`` (see its docstring)."""


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def check_address(settings: Settings) -> None:
    """Refuse to serve a dashboard without users beyond this machine (anyone on the network could open it).

    Raises:
        ConfigError: ``dashboard.address`` is not loopback, no users file exists and
            ``dashboard.open_access_on_network`` is not set.
    """
    board = settings.dashboard
    users_file = board.users_file
    if board.address in LOOPBACK or board.open_access_on_network or (users_file and users_file.is_file()):
        return
    raise ConfigError(
        f"the dashboard has no users yet, so it will not listen on {board.address} (anyone on the network could "
        "open it): add a user first (`papscreen users add NAME`), or leave dashboard.address at 127.0.0.1"
    )


def streamlit_command(settings: Settings, port: int | None = None) -> list[str]:
    """The command line that serves the dashboard: headless, no usage statistics, no developer menu, on the address.

    Examples:
        >>> cmd = streamlit_command(Settings(home="/tmp/lab"), port=8600)
        >>> cmd[1:4], cmd[5:7]
        (['-m', 'streamlit', 'run'], ['--server.port', '8600'])
    """
    chosen = settings.orchestration.dashboard_port if port is None else port
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.port",
        str(chosen),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",  # no "Deploy" button or developer menu: staff use this page, they do not publish it
        "--server.address",
        settings.dashboard.address,
    ]


def start_dashboard(
    settings: Settings, port: int | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the dashboard server in a new process group and return at once (it serves in a few seconds).

    Raises:
        ConfigError: see :func:`check_address`.

    Args:
        settings: the caller's settings; their port is the default.
        port: overrides ``orchestration.dashboard_port``.
        env: the child's environment (default: this process's, so ``PAPSCREEN_*`` pass through).
    """
    check_address(settings)
    child_env = dict(os.environ if env is None else env)
    return subprocess.Popen(streamlit_command(settings, port), env=child_env, start_new_session=True)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    """Stop a process started by :func:`start_dashboard` and its group: SIGTERM, then SIGKILL after ``timeout``.

    Returns:
        The process's exit code.
    """
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return proc.wait()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()
