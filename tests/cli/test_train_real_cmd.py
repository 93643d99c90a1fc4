"""``papscreen train real``: both stages from annotated fields, the field scorer on stage 2's card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from papscreen.cli import app
from papscreen.models.checkpoints import CARD_NAME, load_weights
from papscreen.models.field_score import FieldScorer
from papscreen.models.stage1 import Stage1Detector
from tests.models.cric_like import cric_like


@pytest.mark.slow
def test_train_real_saves_both_stages_with_the_recipe_and_the_field_scorer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = cric_like(tmp_path / "data", n_fields=14)
    monkeypatch.setenv("PAPSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PAPSCREEN_MODELS_DIR", str(tmp_path / "models"))
    cv = tmp_path / "results.json"
    cv.write_text(json.dumps({"summary": {"stage2_macro_f1": {"mean": 0.5}}, "recipes": {}, "machine": "here"}))
    ship = tmp_path / "shipped"
    result = CliRunner().invoke(
        app,
        ["train", "real", str(data), "--epochs", "1", "--no-register", "--ship", str(ship), "--cv-results", str(cv)],
    )
    assert result.exit_code == 0, result.output
    assert "field verdict" in result.output
    (stage1,) = sorted((tmp_path / "models").glob("stage1-*"))
    (stage2,) = sorted((tmp_path / "models").glob("stage2-*"))
    config = Stage1Detector.from_checkpoint(stage1).config
    assert (config.snap_radius_px, config.use_proposals, config.proposals.min_diameter_px) == (15.0, True, 12.0)
    card = json.loads((stage2 / CARD_NAME).read_text())
    assert card["architecture"] == "resnet18_half"
    scorer = FieldScorer.from_dict(card["field_scorer"])
    assert scorer.top_k == 5
    assert card["field_scorer"]["sensitivity"] >= 0.95
    assert card["training"]["recipe"]["stage1"]["snap_radius_px"] == 15.0

    assert card["training"]["data_provenance"] == "real"
    assert card["training"]["data"]["fields"] == 14
    assert card["training"]["data"]["validation_fields"]

    # --ship: both packed as shipped models, float16, with the cross-validation on their cards
    for stage, trained in (("stage1", stage1), ("stage2", stage2)):
        state, shipped = load_weights(ship / stage, stage=stage)  # type: ignore[arg-type]
        assert shipped.name.startswith(f"cric-{stage}-")
        assert shipped.metrics["cross_validation"]["summary"] == {"stage2_macro_f1": {"mean": 0.5}}
        assert shipped.training["data_provenance"] == "real"
        assert all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point())
        assert (ship / stage / "model.safetensors").stat().st_size < (trained / "model.safetensors").stat().st_size
