"""Saved models: safetensors + card round trip, and every way a file can be wrong gives a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from papscreen.errors import CheckpointError
from papscreen.models.card import ModelCard, read_card
from papscreen.models.checkpoints import file_sha256, load_weights, model_folder_name, save_model
from papscreen.models.stage1_net import Stage1Net


def _card(**changes: object) -> ModelCard:
    base = {
        "stage": "stage1",
        "architecture": "cnn20",
        "classes": ("background", "cell"),
        "input_size": 20,
        "working_scale": 0.5,
        "weights_sha256": "0" * 64,
        "dataset_fingerprint": "ab" * 32,
        "training": {"epochs": 3},
    }
    return ModelCard(**{**base, **changes})


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = Stage1Net().state_dict()
    save_model(state, _card(), tmp_path / "model")
    return tmp_path / "model", state


@pytest.mark.parametrize("which", ["folder", "card", "weights"])
def test_round_trip_from_any_of_the_three_paths(saved: tuple[Path, dict], which: str) -> None:
    folder, state = saved
    path = {"folder": folder, "card": folder / "card.json", "weights": folder / "model.safetensors"}[which]
    loaded, card = load_weights(path, stage="stage1")
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert card.weights_sha256 == file_sha256(folder / "model.safetensors")
    assert card.name == "model"
    assert card.training == {"epochs": 3}


def test_existing_model_is_never_overwritten(saved: tuple[Path, dict]) -> None:
    folder, state = saved
    with pytest.raises(CheckpointError, match="already saved here"):
        save_model(state, _card(), folder)


def test_card_of_the_other_stage_is_refused(saved: tuple[Path, dict]) -> None:
    folder, _ = saved
    with pytest.raises(CheckpointError, match="this is a stage1 model; a stage2 model is needed") as info:
        load_weights(folder, stage="stage2")
    assert info.value.path == folder / "card.json"


def test_altered_weights_are_refused(saved: tuple[Path, dict]) -> None:
    folder, _ = saved
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="do not match the card"):
        load_weights(folder)


def test_corrupt_safetensors_is_refused_even_with_a_matching_card(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"not a safetensors file at all")
    card = _card(weights_sha256=file_sha256(folder / "model.safetensors"))
    (folder / "card.json").write_text(card.model_dump_json())
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as info:
        load_weights(folder)
    assert info.value.path == folder / "model.safetensors"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "model card not found"),
        ("{not json", "not readable JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"stage": "stage3"}), "invalid model card"),
        (json.dumps({"format_version": 99}), "newer than this papscreen"),
    ],
    ids=["missing", "bad-json", "not-object", "invalid", "newer-format"],
)
def test_bad_cards(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "card.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CheckpointError, match=message):
        read_card(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"working_scale": None}, "needs working_scale"),
        ({"stage": "stage2", "crop_size": None}, "needs crop_size"),
        ({"classes": ("cell", "cell")}, "distinct"),
    ],
    ids=["stage1-scale", "stage2-crop", "classes"],
)
def test_card_validation(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _card(**changes)


def test_folder_names_sort_by_time() -> None:
    name = model_folder_name("stage2", "ResNet50")
    assert name.startswith("stage2-resnet50-")
