"""int8 post-training quantization: calibration, its safetensors round trip, agreement with fp32, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from papscreen.errors import CheckpointError
from papscreen.models.backbones import build_stage2_network, split_feature_extractor
from papscreen.models.quantize import (
    CALIBRATION_FILE,
    Int8Calibration,
    activation_bits,
    calibrate_int8,
    int8_available,
    load_int8_calibration,
    prediction_agreement,
    quantize_from_calibration,
    save_int8_calibration,
)

pytestmark = pytest.mark.skipif(not int8_available(), reason="this torch build has no x86 quantized engine")

SIZE = 48
COLOURS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def _crops(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised crops of four classes told apart by a colour cast under heavy noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    noise = torch.randn(n, 3, SIZE, SIZE, generator=generator)
    return COLOURS[labels].view(n, 3, 1, 1) + 0.8 * noise, labels


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """A resnet18 whose head is fitted on its (random) features: predictions that mean something.

    With random weights throughout, the four logits are nearly equal and argmax agreement would measure noise;
    a fitted head gives decisions with margins, as a trained model has.
    """
    torch.manual_seed(0)
    network = build_stage2_network("resnet18").eval()
    features, head = split_feature_extractor(network)
    x, y = _crops(128, seed=1)
    with torch.inference_mode():
        f = features(x)
    f = f.clone()
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    for _ in range(150):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(head(f), y)
        loss.backward()
        optimizer.step()
    return network


@pytest.fixture(scope="module")
def calibrated(trained: nn.Module) -> tuple[nn.Module, Int8Calibration]:
    x, _ = _crops(64, seed=2)
    return calibrate_int8(trained, [x[:32], x[32:]], input_size=SIZE, observer="histogram")


def test_int8_agrees_with_fp32(trained: nn.Module, calibrated: tuple[nn.Module, Int8Calibration]) -> None:
    int8, calibration = calibrated
    x, y = _crops(192, seed=3)
    with torch.inference_mode():
        fp32_logits = trained(x).numpy()
        int8_logits = int8(x).numpy()
    assert calibration.images == 64
    assert (fp32_logits.argmax(1) == y.numpy()).mean() > 0.9  # the head learnt something
    assert prediction_agreement(fp32_logits, int8_logits) >= 0.97
    spread = np.linalg.norm(fp32_logits - fp32_logits.mean(axis=0))
    assert np.linalg.norm(int8_logits - fp32_logits) / spread < 0.2


def test_calibration_round_trip_rebuilds_the_same_int8_network(
    trained: nn.Module, calibrated: tuple[nn.Module, Int8Calibration], tmp_path: Path
) -> None:
    int8, calibration = calibrated
    path = tmp_path / CALIBRATION_FILE
    save_int8_calibration(calibration, path)
    loaded = load_int8_calibration(path)
    assert (loaded.input_size, loaded.observer, loaded.images, loaded.backend) == (SIZE, "histogram", 64, "x86")
    assert set(loaded.observer_state) == set(calibration.observer_state)
    rebuilt = quantize_from_calibration(trained, loaded, source=path)
    x, _ = _crops(8, seed=4)
    with torch.inference_mode():
        assert torch.equal(rebuilt(x), int8(x))


@pytest.mark.parametrize(
    "content",
    [b"", b"not a safetensors file at all", b"\xff" * 64],
    ids=["empty", "text", "garbage"],
)
def test_corrupt_calibration_file_is_a_checkpoint_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / CALIBRATION_FILE
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_int8_calibration(path)
    assert info.value.path == path
    assert CALIBRATION_FILE in str(info.value)


def test_truncated_calibration_file_is_a_checkpoint_error(
    calibrated: tuple[nn.Module, Int8Calibration], tmp_path: Path
) -> None:
    path = tmp_path / CALIBRATION_FILE
    save_int8_calibration(calibrated[1], path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_int8_calibration(path)


def test_missing_calibration_file_says_to_calibrate(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="calibrate"):
        load_int8_calibration(tmp_path / CALIBRATION_FILE)


def test_calibration_without_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / CALIBRATION_FILE
    save_file({"x.activation_post_process_0.min_val": torch.tensor(0.0)}, str(path))
    with pytest.raises(CheckpointError, match="metadata"):
        load_int8_calibration(path)


def test_calibration_of_another_network_is_refused(
    calibrated: tuple[nn.Module, Int8Calibration], tmp_path: Path
) -> None:
    other = build_stage2_network("resnet18", head_hidden=8).eval()
    with pytest.raises(CheckpointError, match="does not match") as info:
        quantize_from_calibration(other, calibrated[1], source=tmp_path / CALIBRATION_FILE)
    assert info.value.path == tmp_path / CALIBRATION_FILE


def test_calibration_needs_at_least_one_batch(trained: nn.Module) -> None:
    with pytest.raises(ValueError, match="at least one batch"):
        calibrate_int8(trained, [], input_size=SIZE, observer="minmax")


def test_layers_kept_in_float_travel_with_the_calibration(trained: nn.Module, tmp_path: Path) -> None:
    x, _ = _crops(32, seed=5)
    keep = ("conv1", "layer4", "fc")
    int8, calibration = calibrate_int8(trained, [x], input_size=SIZE, observer="minmax", keep_float=keep)
    assert any(p.is_floating_point() for p in int8.get_submodule("layer4").parameters())  # still float
    assert not list(int8.get_submodule("layer3").parameters())  # quantized: packed weights, no float parameters
    path = tmp_path / CALIBRATION_FILE
    save_int8_calibration(calibration, path)
    loaded = load_int8_calibration(path)
    assert loaded.keep_float == keep
    rebuilt = quantize_from_calibration(trained, loaded, source=path)
    with torch.inference_mode():
        assert torch.equal(rebuilt(x[:4]), int8(x[:4]))


def test_keeping_an_unknown_layer_in_float_is_refused(trained: nn.Module) -> None:
    with pytest.raises(ValueError, match="layer9"):
        calibrate_int8(trained, [torch.zeros(2, 3, SIZE, SIZE)], input_size=SIZE, keep_float=("conv1", "layer9"))


def test_calibration_naming_layers_the_network_lacks_is_a_checkpoint_error(
    calibrated: tuple[nn.Module, Int8Calibration], tmp_path: Path
) -> None:
    calibration = calibrated[1]
    other = Int8Calibration(calibration.observer_state, SIZE, keep_float=("conv1", "layer9"))
    with pytest.raises(CheckpointError, match="layer9"):
        quantize_from_calibration(build_stage2_network("resnet18").eval(), other, source=tmp_path / CALIBRATION_FILE)


def test_activations_use_eight_bits_only_where_the_cpu_accumulates_exactly() -> None:
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
    assert activation_bits() == (8 if vnni else 7)
