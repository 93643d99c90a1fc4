"""Importing the original's Keras stage-1 model: every format, same probabilities, clear errors.

TensorFlow never runs in the pytest process (it crashes beside torchvision): one child process builds every
Keras model this module needs (module-scoped fixture, since each TensorFlow start costs seconds), and the
importer runs its own worker child per conversion.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from papscreen.errors import CheckpointError
from papscreen.models.card import Normalisation
from papscreen.models.keras_worker import WEIGHT_SHAPES
from papscreen.models.legacy_keras import (
    CONVERSION_TOLERANCE,
    STAGE1_CLASSES,
    import_legacy_keras,
    keras_weights_to_state_dict,
)
from papscreen.models.stage1 import Stage1Detector
from papscreen.models.stage1_net import Stage1Net

# find_spec only locates the packages; it imports nothing, so TensorFlow stays out of this process.
HAS_TENSORFLOW = all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))
pytestmark = [
    pytest.mark.keras,
    pytest.mark.skipif(not HAS_TENSORFLOW, reason="needs the keras extra (pip install 'papscreen[keras]')"),
]

BUILD_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import keras
    import numpy as np
    import tensorflow as tf

    out = Path(sys.argv[1])
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    L = keras.layers


    patches = np.random.default_rng(7).integers(0, 256, (64, 20, 20, 3)).astype(np.uint8)


    def spread_weights(model, x=patches.astype(np.float32) / 255.0):
        # Random weights, then the last layer rescaled and shifted so that the cell-minus-background logit has
        # median 0 and spread 2 on the reference patches: probabilities vary widely without saturating.
        for layer in model.layers:
            weights = layer.get_weights()
            if weights:
                kernel, bias = weights
                scale = 0.03 if kernel.ndim == 4 else {16: 0.2, 2: 1.0}[kernel.shape[1]]
                layer.set_weights([rng.normal(0, scale, kernel.shape), rng.normal(0, 0.3, bias.shape)])
        probs = np.asarray(model(x), np.float64)
        margin = np.log(probs[:, 1]) - np.log(probs[:, 0])
        last = [layer for layer in model.layers if layer.get_weights()][-1]
        kernel, bias = last.get_weights()
        factor = 2.0 / margin.std()
        bias = bias * factor
        bias[1] -= np.median(margin) * factor
        last.set_weights([kernel * factor, bias])
        return model


    def plain(dense_activation):
        return spread_weights(keras.Sequential([
            keras.Input((20, 20, 3)),
            L.Conv2D(10, (10, 10), activation="relu"),
            L.MaxPooling2D((2, 2)),
            L.Dropout(0.3),
            L.Flatten(),
            L.Dense(16, activation=dense_activation),
            L.Dense(2, activation="softmax"),
        ]))


    # Functional, with Rescaling and stand-alone activation layers: the other way Keras code was written.
    inputs = keras.Input((20, 20, 3))
    x = L.Rescaling(1.0 / 255)(inputs)
    x = L.Activation("relu")(L.Conv2D(10, 10)(x))
    x = L.Flatten()(L.Dropout(0.3)(L.MaxPooling2D(2)(x)))
    x = L.Dense(16)(x)
    outputs = L.Softmax()(L.Dense(2)(x))
    rescaled = spread_weights(keras.Model(inputs, outputs), patches.astype(np.float32))

    relu, linear = plain("relu"), plain("linear")
    relu.save(out / "relu.h5")
    rescaled.save(out / "rescaled.keras")
    linear.export(str(out / "linear_export"))
    tf.saved_model.save(relu, str(out / "relu_savedmodel"))
    wrong = keras.Sequential([keras.Input((20, 20, 3)), L.Conv2D(12, 10, activation="relu"), L.MaxPooling2D(2),
                              L.Flatten(), L.Dense(16, activation="relu"), L.Dense(2, activation="softmax")])
    wrong.save(out / "wrong.keras")

    np.savez(
        out / "reference.npz",
        patches=patches,
        relu=np.asarray(relu(patches.astype(np.float32) / 255.0)),
        linear=np.asarray(linear(patches.astype(np.float32) / 255.0)),
        rescaled=np.asarray(rescaled(patches.astype(np.float32))),
    )
    """
)


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every Keras model of this module, built and saved by one TensorFlow child process."""
    folder = tmp_path_factory.mktemp("keras")
    script = folder / "build.py"
    script.write_text(BUILD_SCRIPT)
    env = {"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(script), str(folder)],
        cwd=folder,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def _reference(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "reference.npz", allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _detector_probs(model_folder: Path, patches: np.ndarray) -> np.ndarray:
    detector = Stage1Detector.from_checkpoint(model_folder)
    return torch.softmax(torch.from_numpy(detector.patch_logits(patches)), dim=1).numpy()


@pytest.mark.parametrize(
    ("model", "reference", "activation"),
    [
        ("relu.h5", "relu", "relu"),
        ("rescaled.keras", "rescaled", "linear"),
        ("linear_export", "linear", "linear"),
        ("relu_savedmodel", "relu", "relu"),
    ],
    ids=["h5", "keras-rescaling-activation-layers", "savedmodel-export", "savedmodel-tf-save"],
)
def test_every_format_converts_to_the_same_probabilities(
    keras_models: Path, tmp_path: Path, model: str, reference: str, activation: str
) -> None:
    card = import_legacy_keras(keras_models / model, tmp_path / "stage1", working_scale=0.25, n_check=128)
    assert card.stage == "stage1"
    assert card.classes == STAGE1_CLASSES
    assert card.working_scale == 0.25
    assert card.architecture_options["dense_activation"] == activation
    assert card.metrics["conversion_max_abs_diff"] < CONVERSION_TOLERANCE
    assert card.source is not None
    assert str((keras_models / model).resolve()) in card.source
    assert "sha256" in card.source
    # End to end through the detector, from 8-bit patches, against Keras's own outputs on the same patches.
    ref = _reference(keras_models)
    probs = _detector_probs(tmp_path / "stage1", ref["patches"])
    assert np.abs(probs - ref[reference]).max() < CONVERSION_TOLERANCE
    cell = ref[reference][:, 1]
    # Not a vacuous comparison: probabilities vary widely from patch to patch.
    assert cell.min() < 0.3
    assert cell.max() > 0.7


def test_rescaling_layer_is_folded_into_the_card(keras_models: Path, tmp_path: Path) -> None:
    card = import_legacy_keras(keras_models / "rescaled.keras", tmp_path / "stage1")
    assert card.normalisation == Normalisation(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert card.training["keras_rescaling"]["scale"] == pytest.approx([1 / 255] * 3)
    assert card.training["keras_format"] == "keras"


def test_another_architecture_is_refused_with_the_layer_named(keras_models: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not a stage-1 model: .*expected 10 filters, found 12") as info:
        import_legacy_keras(keras_models / "wrong.keras", tmp_path / "stage1")
    assert info.value.path == keras_models / "wrong.keras"
    assert "Conv2D 10 filters 10x10" in str(info.value)  # says what the architecture should be
    assert not (tmp_path / "stage1").exists()


def test_missing_tensorflow_says_what_to_install(
    keras_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Python without TensorFlow, simulated: packages first on PYTHONPATH that fail to import, as absent ones do.
    shims = tmp_path / "shims"
    for name in ("tensorflow", "keras"):
        (shims / name).mkdir(parents=True)
        (shims / name / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\")\n")
    monkeypatch.setenv("PYTHONPATH", str(shims))
    with pytest.raises(CheckpointError, match=r"TensorFlow with Keras 3 is not installed") as info:
        import_legacy_keras(keras_models / "relu.h5", tmp_path / "stage1")
    assert "pip install 'papscreen[keras]'" in str(info.value)
    assert info.value.path == keras_models / "relu.h5"


def test_interpreter_that_cannot_start_is_a_clear_error(keras_models: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot start the Python interpreter"):
        import_legacy_keras(keras_models / "relu.h5", tmp_path / "stage1", python=str(tmp_path / "no-python"))


@pytest.mark.parametrize(
    ("name", "match"),
    [("model.pb", "unknown Keras model format"), ("absent.h5", "not found"), ("folder", "no saved_model.pb")],
    ids=["unknown-suffix", "missing-file", "folder-without-savedmodel"],
)
def test_paths_that_are_not_keras_models(tmp_path: Path, name: str, match: str) -> None:
    path = tmp_path / name
    if name == "model.pb":
        path.write_bytes(b"x")
    elif name == "folder":
        path.mkdir()
    with pytest.raises(CheckpointError, match=match):
        import_legacy_keras(path, tmp_path / "stage1")


def _keras_reference_forward(weights: dict[str, np.ndarray], x: np.ndarray, dense_activation: str) -> np.ndarray:
    """Keras's arithmetic in numpy: channels-last convolution, pooling, and Flatten in height-width-channel order."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (10, 10), axis=(1, 2))  # N, 11, 11, 3, 10, 10
    conv = np.einsum("nhwcij,ijco->nhwo", windows, weights["conv_kernel"]) + weights["conv_bias"]
    conv = np.maximum(conv, 0)[:, :10, :10]
    pooled = conv.reshape(len(x), 5, 2, 5, 2, 10).max(axis=(2, 4))
    hidden = pooled.reshape(len(x), -1) @ weights["dense1_kernel"] + weights["dense1_bias"]
    if dense_activation == "relu":
        hidden = np.maximum(hidden, 0)
    logits = hidden @ weights["dense2_kernel"] + weights["dense2_bias"]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.mark.parametrize("cell_index", [0, 1])
def test_weight_layout_matches_keras_arithmetic(cell_index: int) -> None:
    rng = np.random.default_rng(3)
    weights = {name: rng.normal(0, 0.3, shape).astype(np.float32) for name, shape in WEIGHT_SHAPES.items()}
    x = rng.random((16, 20, 20, 3), dtype=np.float32)
    keras_probs = _keras_reference_forward(weights, x.astype(np.float64), "relu")
    net = Stage1Net().eval()
    net.load_state_dict(keras_weights_to_state_dict(weights, cell_index=cell_index))
    with torch.inference_mode():
        probs = torch.softmax(net(torch.from_numpy(x).permute(0, 3, 1, 2)), dim=1).numpy()
    expected = keras_probs[:, [1 - cell_index, cell_index]]
    assert np.abs(probs - expected).max() < 1e-5
