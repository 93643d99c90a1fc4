"""``papscreen models register|list|promote`` against a real database, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Decision, ModelStage, ModelStatus, TrainingStatus
from papscreen.models.shipped import shipped_card
from tests.cli.saved_models import saved_stage1


def _saved_stage1(folder: Path, seed: int) -> Path:
    return saved_stage1(folder, seed, metrics={"f1": 0.9 + seed / 100})


@pytest.fixture
def cli_env(database: Database, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", database.url.render_as_string(hide_password=False))
    return CliRunner()


def test_register_list_promote(cli_env: CliRunner, database: Database, tmp_path: Path) -> None:
    first = _saved_stage1(tmp_path / "m1", seed=1)
    second = _saved_stage1(tmp_path / "m2", seed=2)
    result = cli_env.invoke(app, ["models", "register", str(first)])
    assert result.exit_code == 0, result.output
    assert "as champion" in result.output
    result = cli_env.invoke(app, ["models", "register", str(second)])
    assert "as candidate" in result.output

    listed = cli_env.invoke(app, ["models", "list", "--stage", "stage1"])
    assert listed.exit_code == 0, listed.output
    assert "m1" in listed.output
    assert "m2" in listed.output
    assert "f1=0.920" in listed.output

    with database.session() as s:
        candidate = next(v for v in queries.list_model_versions(s) if v.name == "m2")
    result = cli_env.invoke(app, ["models", "promote", str(candidate.id), "--as", "dr.who", "--reason", "better"])
    assert result.exit_code == 0, result.output
    with database.session() as s:
        champion = queries.get_champion(s, ModelStage.STAGE1)
        assert champion is not None
        assert champion.name == "m2"
        statuses = {v.name: v.status for v in queries.list_model_versions(s)}
        assert statuses["m1"] == ModelStatus.RETIRED


def test_approve_a_candidate_waiting_for_a_person(cli_env: CliRunner, database: Database, tmp_path: Path) -> None:
    for name, seed in (("m1", 1), ("m2", 2), ("m3", 3)):
        folder = _saved_stage1(tmp_path / name, seed=seed)
        assert cli_env.invoke(app, ["models", "register", str(folder)]).exit_code == 0
    with database.session() as s:
        ids = {v.name: v.id for v in queries.list_model_versions(s)}
        for name in ("m2", "m3"):
            run = queries.start_training_run(s, stage=ModelStage.STAGE1, parameters={})
            queries.finish_training_run(
                s, run.id, status=TrainingStatus.SUCCEEDED, model_version_id=ids[name],
                decision=Decision.PENDING_APPROVAL, reason="passed the gate; waits for an admin",
            )  # fmt: skip
    refused = cli_env.invoke(app, ["models", "approve", str(ids["m1"])])
    assert refused.exit_code == 2
    assert "not waiting for approval" in refused.output
    approved = cli_env.invoke(app, ["models", "approve", str(ids["m2"]), "--as", "root"])
    assert approved.exit_code == 0, approved.output
    assert "is now the stage1 champion" in approved.output
    declined = cli_env.invoke(app, ["models", "approve", str(ids["m3"]), "--decline", "--as", "root"])
    assert declined.exit_code == 0, declined.output
    with database.session() as s:
        assert queries.get_champion(s, ModelStage.STAGE1).name == "m2"  # type: ignore[union-attr]
        assert queries.get_model_version(s, ids["m3"]).status == ModelStatus.REJECTED  # type: ignore[union-attr]


def test_register_refuses_an_altered_model_without_traceback(cli_env: CliRunner, tmp_path: Path) -> None:
    folder = _saved_stage1(tmp_path / "m1", seed=1)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    result = cli_env.invoke(app, ["models", "register", str(folder)])
    assert result.exit_code == 2
    assert "do not match the card" in result.output
    assert "Traceback" not in result.output


def test_promote_unknown_id(cli_env: CliRunner) -> None:
    result = cli_env.invoke(app, ["models", "promote", "999"])
    assert result.exit_code == 2
    assert "no model version with id 999" in result.output


def test_commands_refuse_an_unmigrated_database(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", empty_database_url)
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 2
    assert "papscreen db upgrade" in result.output


def test_install_shipped_makes_them_champions_once(
    cli_env: CliRunner, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Compose stack runs after `db upgrade`: a fresh registry gets the shipped models as champions."""
    monkeypatch.setenv("PAPSCREEN_MODELS_DIR", str(tmp_path / "models"))
    result = cli_env.invoke(app, ["models", "install-shipped"])
    assert result.exit_code == 0, result.output
    for stage in ("stage1", "stage2"):
        assert f"{stage}: shipped {shipped_card(stage).name} is champion" in result.output  # type: ignore[arg-type]
    with database.session() as session:
        assert queries.get_champion(session, ModelStage.STAGE2).name == shipped_card("stage2").name  # type: ignore[union-attr]
    again = cli_env.invoke(app, ["models", "install-shipped"])
    assert again.exit_code == 0, again.output
    assert f"stage1: champion {shipped_card('stage1').name} kept" in again.output
