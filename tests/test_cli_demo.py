"""``papscreen demo`` prepares folders, database and synthetic data from nothing, and is safe to repeat."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.config import load_settings
from papscreen.datasets.layout import read_dataset
from papscreen.db import migrate
from papscreen.db.database import Database


@pytest.mark.slow
def test_demo_sets_up_everything_then_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--scale", "small"])
    assert result.exit_code == 0, result.output
    settings = load_settings()
    assert all(path.is_dir() for path in settings.folders().values())
    database = Database(settings.database_url)
    try:
        assert migrate.current_revision(database) == migrate.head_revision(database)
    finally:
        database.dispose()
    assert read_dataset(settings.data_dir / "DB_4").counts()["train"]["HSIL"] == 50
    assert read_dataset(settings.data_dir / "DB_3").kind == "DB_3"
    fields = sorted((settings.data_dir / "fields" / "images").glob("*.png"))
    assert len(fields) == 4
    before = fields[0].stat().st_mtime_ns

    again = runner.invoke(app, ["demo", "--scale", "small"])
    assert again.exit_code == 0, again.output
    assert "kept" in again.output
    assert fields[0].stat().st_mtime_ns == before
