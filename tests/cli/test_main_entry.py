"""The console entry point: a temporary Prefect server slow to start is one clear line, not a traceback."""

from __future__ import annotations

import pytest

import papscreen.cli as cli


def test_a_slow_temporary_prefect_server_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)

    def busy_machine() -> None:
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    monkeypatch.setattr(cli, "app", busy_machine)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "did not start within 180 s" in error
    assert "Traceback" not in error


def test_the_wait_for_the_temporary_server_is_raised_but_an_operators_value_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(
        cli, "app", lambda: seen.append(cli.os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
    )
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    cli.main()
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
    cli.main()
    assert seen == ["180", "600"]
