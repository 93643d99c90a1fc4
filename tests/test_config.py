"""Settings: defaults derived from home, environment and TOML sources, validation, masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.config import load_settings
from papscreen.db.database import Database
from papscreen.errors import ConfigError


def test_folders_and_database_default_under_home(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    assert s.intake_dir == tmp_path / "intake"
    assert s.store_dir == tmp_path / "store"
    assert s.quarantine_dir == tmp_path / "quarantine"
    assert s.models_dir == tmp_path / "models"
    assert s.database_url == f"sqlite:///{tmp_path / 'papscreen.db'}"
    assert s.labels.extra_label_map == {"ASC-US": "LSIL", "ASC-H": "HSIL"}
    s.ensure_folders()
    assert all(p.is_dir() for p in s.folders().values())


def test_environment_overrides_including_nested_groups(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAPSCREEN_HOME", str(tmp_path))
    monkeypatch.setenv("PAPSCREEN_DEVICE", "cpu")
    monkeypatch.setenv("PAPSCREEN_SCHEDULES__RETRAIN_CRON", "30 1 * * *")
    monkeypatch.setenv("PAPSCREEN_BATCH__STAGE2_INFERENCE", "64")
    monkeypatch.setenv("PAPSCREEN_LABELS__EXTRA_LABEL_MAP", '{"ASC-US": "NILM"}')
    s = load_settings()
    assert s.home == tmp_path
    assert s.device == "cpu"
    assert s.schedules.retrain_cron == "30 1 * * *"
    assert s.batch.stage2_inference == 64
    assert s.labels.extra_label_map == {"ASC-US": "NILM"}


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "papscreen.toml"
    config.write_text(
        f'home = "{tmp_path}"\ndevice = "cuda"\n[intake]\nsettle_seconds = 1.5\n[batch]\nstage2_inference = 8\n'
    )
    s = load_settings(config)
    assert (s.device, s.intake.settle_seconds, s.batch.stage2_inference) == ("cuda", 1.5, 8)
    monkeypatch.setenv("PAPSCREEN_DEVICE", "cpu")
    monkeypatch.setenv("PAPSCREEN_CONFIG", str(config))
    assert load_settings().device == "cpu"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"device": "tpu"}, "device"),
        ({"database_url": "not a url"}, "database_url"),
        ({"labels": {"extra_label_map": {"ASC-US": "CANCER"}}}, "targets must be one of"),
        ({"batch": {"stage2_inference": 0}}, "stage2_inference"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
    ids=["device", "url", "label-map", "batch", "unknown"],
)
def test_invalid_values_raise_config_error_naming_the_setting(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**overrides)


def test_missing_or_broken_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("home = [unclosed")
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings(broken)


@pytest.mark.parametrize(
    ("url", "shown_url"),
    [
        (
            "postgresql+psycopg2://lab:s3cret@db.example:5432/papscreen",
            "postgresql+psycopg2://lab:***@db.example:5432/papscreen",
        ),
        (
            "postgresql+psycopg2://lab@db.example/papscreen?password=s3cret&sslmode=require",
            "postgresql+psycopg2://lab@db.example/papscreen?password=***&sslmode=require",
        ),
    ],
)
def test_cli_config_masks_password(monkeypatch: pytest.MonkeyPatch, url: str, shown_url: str) -> None:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    shown = json.loads(result.output)
    assert shown["database_url"] == shown_url
    settings = load_settings()
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in repr(Database(settings.database_url))


def test_db_commands_never_print_the_password(monkeypatch: pytest.MonkeyPatch, postgres_server: URL) -> None:
    url = postgres_server.set(database="postgres", query={"password": "s3cret"})  # trust auth ignores it
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", url.render_as_string(hide_password=False))
    result = CliRunner().invoke(app, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "password=***" in result.output


def test_a_plain_postgresql_url_uses_the_installed_driver() -> None:
    settings = load_settings(database_url="postgresql://lab@db.example/papscreen")
    assert settings.database_url == "postgresql+psycopg2://lab@db.example/papscreen"


def test_cli_bad_config_file_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "missing.toml"), "config"])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert "Traceback" not in result.output
