"""Importing the original's PyTorch ResNet50 checkpoint: safe loading, head checks, card, same logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from papscreen.bethesda import LEGACY_MODEL_CLASSES
from papscreen.errors import CheckpointError
from papscreen.models.backbones import build_stage2_network
from papscreen.models.checkpoints import CARD_NAME, load_weights
from papscreen.models.legacy_torch import import_legacy_resnet50
from papscreen.models.stage2 import Stage2Classifier


class _Payload:
    """Pickles as a call to ``Path.touch``: loading it with plain ``torch.load`` would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def original() -> nn.Module:
    torch.manual_seed(0)
    network = build_stage2_network("resnet50", 4).eval()
    # Non-trivial running statistics, so a buffer that failed to load would change the logits.
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return network


@pytest.fixture(scope="module")
def checkpoint(original: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Saved as the original did: a dict with model_state_dict and training bookkeeping."""
    path = tmp_path_factory.mktemp("legacy") / "resnet50_best.pth"
    optimizer = torch.optim.SGD(original.fc.parameters(), lr=0.01, momentum=0.9)
    torch.save(
        {"epoch": 30, "model_state_dict": original.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
        path,
    )
    return path


def _logits(network: nn.Module, seed: int = 0) -> torch.Tensor:
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return network(x)


def test_import_gives_the_same_network_and_an_honest_card(
    original: nn.Module, checkpoint: Path, tmp_path: Path
) -> None:
    card = import_legacy_resnet50(checkpoint, tmp_path / "imported")
    assert card.stage == "stage2"
    assert card.architecture == "resnet50"
    assert card.classes == LEGACY_MODEL_CLASSES == ("HSIL", "LSIL", "NILM", "SCC")
    assert (card.input_size, card.crop_size) == (224, 250)
    assert card.source is not None
    assert str(checkpoint.resolve()) in card.source
    assert card.training["class_order"] == "legacy"
    state, loaded_card = load_weights(tmp_path / "imported", stage="stage2")
    assert loaded_card == card
    rebuilt = build_stage2_network("resnet50", card.num_classes, **card.architecture_options).eval()
    rebuilt.load_state_dict(state, strict=True)
    assert torch.equal(_logits(rebuilt), _logits(original))
    assert json.loads((tmp_path / "imported" / CARD_NAME).read_text())["classes"] == list(LEGACY_MODEL_CLASSES)


def test_stage2_classifier_loads_the_import_and_gives_the_original_logits(
    original: nn.Module, checkpoint: Path, tmp_path: Path
) -> None:
    import_legacy_resnet50(checkpoint, tmp_path / "imported")
    classifier = Stage2Classifier.from_checkpoint(tmp_path / "imported")
    assert classifier.classes == LEGACY_MODEL_CLASSES  # outputs named in the original's order
    assert (classifier.crop_size, classifier.input_size) == (250, 224)
    crops = np.random.default_rng(0).integers(0, 256, (2, 250, 250, 3), dtype=np.uint8)
    inputs = classifier.preprocess(crops).contiguous()
    with torch.inference_mode():
        expected = original(inputs).numpy()
    np.testing.assert_allclose(classifier.predict_logits(crops), expected, rtol=1e-4, atol=1e-4)


def test_bare_state_dict_from_data_parallel_is_accepted(original: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, path)
    card = import_legacy_resnet50(path, tmp_path / "imported", crop_size=200, input_size=192)
    assert (card.input_size, card.crop_size) == (192, 200)
    state, _ = load_weights(tmp_path / "imported")
    assert torch.equal(state["fc.weight"], original.state_dict()["fc.weight"])


def test_three_class_head_is_refused(original: nn.Module, tmp_path: Path) -> None:
    state = dict(original.state_dict())
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][:3], state["fc.bias"][:3]
    path = tmp_path / "three_classes.pth"
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(CheckpointError, match="3 outputs, but 4 classes") as info:
        import_legacy_resnet50(path, tmp_path / "imported")
    assert info.value.path == path
    assert str(path) in str(info.value)
    assert not (tmp_path / "imported").exists()


def test_pickled_objects_are_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "pickled.pth"
    torch.save({"model_state_dict": {"fc.weight": torch.zeros(4, 2048)}, "config": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects") as info:
        import_legacy_resnet50(path, tmp_path / "imported")
    assert info.value.path == path
    assert not marker.exists()


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save({"model_state_dict": build_stage2_network("resnet18", 4).state_dict()}, path)
    with pytest.raises(CheckpointError) as info:
        import_legacy_resnet50(path, tmp_path / "imported")
    assert info.value.path == path


@pytest.mark.parametrize("content", [b"", b"garbage" * 10], ids=["empty", "garbage"])
def test_unreadable_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        import_legacy_resnet50(path, tmp_path / "imported")
    assert info.value.path == path


def test_missing_file_and_occupied_folder(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        import_legacy_resnet50(tmp_path / "absent.pth", tmp_path / "imported")
    import_legacy_resnet50(checkpoint, tmp_path / "imported")
    with pytest.raises(CheckpointError, match="already saved"):
        import_legacy_resnet50(checkpoint, tmp_path / "imported")


def test_garbage_is_unreadable_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"these bytes are no pickle at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as caught:
        import_legacy_resnet50(path, tmp_path / "out")
    assert "garbage.pth" in str(caught.value)
    assert "refused" not in str(caught.value)
