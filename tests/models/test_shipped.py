"""The models papscreen ships: installed, described by their cards, and grading real CRIC fields sensibly.

The demo fields (``papscreen/datasets/demo_fields``) are real CRIC fields committed with papscreen; the shipped
models were trained on every annotated CRIC field this project has, these included, so this checks that what
ships loads and behaves, not its accuracy on unseen fields (that is cross-validated in docs/experiments.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from papscreen.config import Settings
from papscreen.datasets.demo_fields import demo_field_paths, demo_field_points
from papscreen.errors import CheckpointError
from papscreen.imaging.crops import cut_crops
from papscreen.imaging.image_io import read_rgb
from papscreen.imaging.slides import open_slide
from papscreen.models.backbones import build_stage2_network
from papscreen.models.checkpoints import load_weights
from papscreen.models.shipped import (
    copy_shipped_model,
    next_shipped_version,
    pack_for_shipping,
    shipped_card,
    shipped_model_folder,
    shipped_models_available,
)
from papscreen.models.stage2 import Stage2Classifier, stage2_card
from papscreen.pipeline import analyze, load_model_pair
from papscreen.pipeline.models import ModelPair

HSIL_FIELD = "4fb1ebbd1adb2da024ffe2394c1712c9.jpg"  # 10 HSIL, 1 LSIL, 5 NILM nuclei annotated
NORMAL_FIELD = "763240077e66777b2a196a6af78c9716.jpg"  # 59 NILM nuclei, nothing abnormal
SCC_FIELD = "9b77f6a1b82859bc68b26fae965564fa.jpg"  # 25 SCC, 11 HSIL, ...


@pytest.fixture(scope="module")
def shipped_pair() -> ModelPair:
    return load_model_pair(
        shipped_model_folder("stage1"), shipped_model_folder("stage2"), device="cpu", precision="fp32"
    )


def test_both_models_ship_with_cards_that_say_what_they_are() -> None:
    assert shipped_models_available()
    for stage in ("stage1", "stage2"):
        state, card = load_weights(shipped_model_folder(stage), stage=stage)  # checks the weights' sha256
        assert card.name.startswith(f"cric-{stage}-")
        assert card.training["data_provenance"] == "real"
        assert card.training["data"]["fields"] == 167
        assert len(card.training["data"]["source_fingerprint"]) >= 16
        assert card.training["recipe"]["seed"] == 0
        assert card.training["shipped_weights_dtype"] == "float16"
        assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
        assert "summary" in card.metrics["cross_validation"]
        assert (shipped_model_folder(stage) / "model.safetensors").stat().st_size < 8_000_000
    scorer = shipped_card("stage2").field_scorer
    assert scorer is not None
    assert scorer["top_k"] >= 1
    assert 0.0 < scorer["threshold"] < 1.0


def test_annotated_hsil_nuclei_score_above_the_nilm_nuclei_of_their_field(shipped_pair: ModelPair) -> None:
    field = next(p for p in demo_field_paths() if p.name == HSIL_FIELD)
    points = [p for p in demo_field_points() if p.image == HSIL_FIELD]
    classifier = shipped_pair.stage2
    rgb = read_rgb(field)
    suspicion = {}
    for label in ("HSIL", "NILM"):
        xy = np.array([(p.x, p.y) for p in points if p.bethesda == label])
        probs = classifier.predict_proba(cut_crops(rgb, xy, classifier.crop_size))
        suspicion[label] = float((1.0 - probs[:, 0]).mean())  # P(LSIL or worse)
    assert suspicion["HSIL"] > suspicion["NILM"] + 0.2, suspicion


def test_the_engine_ranks_an_scc_field_above_a_normal_one_and_flags_it(shipped_pair: ModelPair, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    summaries = {}
    for name in (NORMAL_FIELD, SCC_FIELD):
        with open_slide(next(p for p in demo_field_paths() if p.name == name)) as slide:
            summaries[name] = analyze(slide, shipped_pair, settings).summary
    normal, cancer = summaries[NORMAL_FIELD], summaries[SCC_FIELD]
    assert cancer.abnormal_score > normal.abnormal_score
    assert cancer.category in ("HSIL", "SCC")
    assert 20 <= normal.cell_count <= 400  # a field's worth of cells, not noise or nothing
    assert cancer.class_counts["NILM"] < sum(cancer.class_counts.values())


def test_a_copy_is_made_once_and_an_altered_copy_is_refused(tmp_path: Path) -> None:
    first = copy_shipped_model("stage1", tmp_path)
    assert first.name == shipped_card("stage1").name
    assert copy_shipped_model("stage1", tmp_path) == first
    (first / "model.safetensors").write_bytes(b"not the shipped weights")
    with pytest.raises(CheckpointError, match="sha256"):
        copy_shipped_model("stage1", tmp_path)


def test_packing_halves_the_weights_and_keeps_the_predictions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_stage2_network("resnet18_half", 4)
    with torch.no_grad():  # batch-norm statistics of a trained network's scale, not the identity
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    original = Stage2Classifier(network.eval(), stage2_card("resnet18_half", input_size=64, crop_size=96))
    original.to_checkpoint(tmp_path / "trained")
    card = pack_for_shipping(tmp_path / "trained", tmp_path / "packed", name="cric-stage2-test")
    assert card.name == "cric-stage2-test"
    with safe_open(str(tmp_path / "packed" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    assert torch.float16 in dtypes
    assert torch.float32 not in dtypes
    crops = np.random.default_rng(0).integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    packed = Stage2Classifier.from_checkpoint(tmp_path / "packed", "cpu")
    assert np.abs(packed.predict_proba(crops) - original.predict_proba(crops)).max() < 0.02


def test_a_model_shipped_again_on_the_same_day_gets_a_new_name(tmp_path: Path) -> None:
    """Labs' registries hold the shipped names: a retrained model must never reuse one."""
    for stage in ("stage1", "stage2"):
        shutil.copytree(shipped_model_folder(stage), tmp_path / stage)  # type: ignore[arg-type]  # str is a Stage here
    shipped_day = shipped_card("stage2").name.removeprefix("cric-stage2-")[:10]

    again = next_shipped_version(tmp_path, shipped_day)

    assert again != shipped_card("stage2").name.removeprefix("cric-stage2-")
    assert again.startswith(shipped_day)
    assert next_shipped_version(tmp_path, "2099.01.01") == "2099.01.01"
