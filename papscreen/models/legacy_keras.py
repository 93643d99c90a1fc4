"""Import the original project's Keras stage-1 model as a papscreen :class:`~papscreen.models.stage1_net.Stage1Net`.

The original trained its 20x20 cell-versus-background CNN in Keras. This module turns such a model (``.h5``,
``.keras`` or a SavedModel folder) into safetensors weights and a stage-1 model card, and proves the
conversion: the PyTorch network must give the same probabilities as Keras, to within ``CONVERSION_TOLERANCE``,
on seeded random inputs.

TensorFlow never runs in this process (it crashes when it shares one with torchvision, and it is an optional
extra). The Keras half lives in :mod:`papscreen.models.keras_worker`, run as a child process by any Python
that has the ``keras`` extra; it hands back plain arrays in an ``.npz`` read with ``allow_pickle=False``.

Weight layout, Keras to PyTorch:

* Conv2D kernel ``(H, W, in, out)`` becomes ``(out, in, H, W)``; both frameworks cross-correlate.
* Keras flattens the pooled ``5 x 5 x 10`` map in height-width-channel order, PyTorch in channel-height-width
  order, so the first Dense kernel's 250 input rows are permuted, then every Dense kernel is transposed.
* The original's two outputs are in the alphabetical order of its DB_3 class folders (``background`` = 0,
  ``cell`` = 1); papscreen's stage 1 always has *cell* at index 1, so ``cell_index=0`` swaps the outputs.

Inputs: the original divided pixels by 255 before the network, so a model without a Rescaling layer takes
RGB in [0, 1] and its card says mean 0, std 1. A leading ``Rescaling(scale, offset)`` layer is taken to
receive 8-bit pixels (its documented use, ``scale=1/255``) and is folded into the card's normalisation,
``std = 1 / (255 * scale)``, ``mean = -offset * std``; the comparison then feeds Keras ``255 * x`` and
PyTorch the normalised ``x``. A SavedModel keeps no layer list, so neither its Dense 16 activation nor a
Rescaling layer can be read back: the activation is found by which network reproduces the outputs (or given
with ``dense_activation=``), and a Rescaling layer inside a SavedModel is not supported (convert the
``.h5``/``.keras`` file instead).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from papscreen.datasets.conventions import DB3_CLASSES, DEFAULT_STAGE1_SCALE
from papscreen.errors import CheckpointError
from papscreen.models.card import ModelCard, Normalisation, library_versions
from papscreen.models.checkpoints import CARD_NAME, WEIGHTS_NAME, file_sha256, save_model
from papscreen.models.keras_worker import WEIGHT_SHAPES
from papscreen.models.stage1_net import INPUT_PX, DenseActivation, Stage1Net

__all__ = [
    "CONVERSION_TOLERANCE",
    "KERAS_EXTRA_HINT",
    "STAGE1_CLASSES",
    "import_legacy_keras",
    "keras_weights_to_state_dict",
    "model_sha256",
]

CONVERSION_TOLERANCE = 1e-5
"""Largest difference in probability allowed between Keras and the converted network (float32 round-off is
about 1e-7; a wrong permutation or activation gives differences of 1e-2 and more)."""

STAGE1_CLASSES = DB3_CLASSES
"""Stage-1 class order of every papscreen model: *cell* at index 1 (the Keras outputs are reordered to it)."""
KERAS_EXTRA_HINT = "pip install 'papscreen[keras]'"
WORKER_FILE = Path(__file__).with_name("keras_worker.py")
_WORKER_PREFIX = "papscreen-keras-worker: "
_POOLED = (5, 5, 10)  # height, width, channels of the map that Flatten sees
_RAW_PIXEL_MAX = 255.0
_ACTIVATIONS: tuple[DenseActivation, ...] = ("relu", "linear")


def keras_weights_to_state_dict(weights: Mapping[str, np.ndarray], *, cell_index: int = 1) -> dict[str, torch.Tensor]:
    """Map the six Keras arrays onto :class:`Stage1Net`'s ``state_dict`` (see the module notes on layout).

    Args:
        weights: ``conv_kernel`` (10, 10, 3, 10), ``conv_bias``, ``dense1_kernel`` (250, 16) in Keras's
            height-width-channel flatten order, ``dense1_bias``, ``dense2_kernel`` (16, 2), ``dense2_bias``.
        cell_index: which Keras output is *cell*; papscreen puts it at index 1.

    Raises:
        ValueError: a missing array, a wrong shape, or ``cell_index`` not 0 or 1.

    Examples:
        >>> shapes = {"conv_kernel": (10, 10, 3, 10), "conv_bias": (10,), "dense1_kernel": (250, 16),
        ...           "dense1_bias": (16,), "dense2_kernel": (16, 2), "dense2_bias": (2,)}
        >>> weights = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
        >>> state = keras_weights_to_state_dict(weights)
        >>> Stage1Net().load_state_dict(state)
        <All keys matched successfully>
        >>> tuple(state["fc1.weight"].shape)
        (16, 250)
    """
    if cell_index not in (0, 1):
        raise ValueError(f"cell_index must be 0 or 1, got {cell_index}")
    for name, shape in WEIGHT_SHAPES.items():
        if name not in weights:
            raise ValueError(f"missing Keras array {name!r}")
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"Keras array {name!r} has shape {tuple(weights[name].shape)}, expected {shape}")
    dense1 = np.asarray(weights["dense1_kernel"]).reshape(*_POOLED, 16)  # rows in (h, w, c) order
    dense1 = dense1.transpose(2, 0, 1, 3).reshape(-1, 16)  # rows in (c, h, w) order, as torch.flatten gives
    order = [1 - cell_index, cell_index]  # output rows: background, then cell
    arrays = {
        "conv.weight": np.asarray(weights["conv_kernel"]).transpose(3, 2, 0, 1),
        "conv.bias": np.asarray(weights["conv_bias"]),
        "fc1.weight": dense1.T,
        "fc1.bias": np.asarray(weights["dense1_bias"]),
        "fc2.weight": np.asarray(weights["dense2_kernel"]).T[order],
        "fc2.bias": np.asarray(weights["dense2_bias"])[order],
    }
    return {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for name, a in arrays.items()}


def model_sha256(path: Path) -> str:
    """sha256 of a model file, or of a SavedModel folder (every file's relative path and content, sorted).

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     (Path(tmp) / "saved_model.pb").write_bytes(b"x")
        ...     len(model_sha256(Path(tmp)))
        1
        64
    """
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    listing = "\n".join(
        f"{p.relative_to(path).as_posix()} {file_sha256(p)}" for p in sorted(path.rglob("*")) if p.is_file()
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def _model_format(path: Path) -> str:
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise CheckpointError(path, "a folder must be a TensorFlow SavedModel (it has no saved_model.pb)")
        return "savedmodel"
    if not path.is_file():
        raise CheckpointError(path, "Keras model not found")
    suffix = path.suffix.lower()
    if suffix in {".h5", ".hdf5"}:
        return "h5"
    if suffix == ".keras":
        return "keras"
    raise CheckpointError(path, f"unknown Keras model format {suffix!r}: expected .h5, .keras or a SavedModel folder")


def check_inputs(seed: int, n_check: int) -> np.ndarray:
    """The seeded random patches (N, 20, 20, 3), RGB in [0, 1], on which Keras and PyTorch must agree.

    Examples:
        >>> check_inputs(0, 4).shape
        (4, 20, 20, 3)
    """
    if n_check < 1:
        raise ValueError(f"n_check must be at least 1, got {n_check}")
    return np.random.default_rng(seed).random((n_check, INPUT_PX, INPUT_PX, 3), dtype=np.float32)


def _worker_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "tensorflow"  # a user's keras.json may name another backend
    env["CUDA_VISIBLE_DEVICES"] = ""  # a few hundred 20x20 patches: keep the GPU for training
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _run_worker(model_path: Path, inputs: np.ndarray, python: str, timeout_s: float) -> dict[str, np.ndarray]:
    """Run the Keras half in a child process; return the arrays it wrote.

    The worker runs from a copy in a fresh temporary folder: its import path then holds nothing of papscreen
    (no module of ours can shadow one TensorFlow imports) and the child needs no papscreen installed.
    """
    with tempfile.TemporaryDirectory(prefix="papscreen-keras-") as tmp:
        folder = Path(tmp)
        worker = shutil.copy(WORKER_FILE, folder / WORKER_FILE.name)
        np.savez(folder / "inputs.npz", inputs=inputs)
        command = [python, str(worker), str(model_path.resolve()), str(folder / "inputs.npz"), str(folder / "out.npz")]
        try:
            done = subprocess.run(
                command,
                cwd=folder,
                env=_worker_environment(),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except OSError as e:
            raise CheckpointError(model_path, f"cannot start the Python interpreter {python!r} for Keras ({e})") from e
        except subprocess.TimeoutExpired as e:
            raise CheckpointError(
                model_path, f"the Keras worker took longer than {timeout_s:g} s and was stopped"
            ) from e
        if done.returncode != 0:
            messages = [
                line.removeprefix(_WORKER_PREFIX)
                for line in done.stderr.splitlines()
                if line.startswith(_WORKER_PREFIX)
            ]
            if messages:
                raise CheckpointError(model_path, messages[-1])
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise CheckpointError(
                model_path, f"the Keras worker ({python}) failed with exit code {done.returncode}: {tail}"
            )
        try:
            with np.load(folder / "out.npz", allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError) as e:
            raise CheckpointError(model_path, f"the Keras worker wrote no readable result ({e})") from e


def _normalisation(rescaling: Mapping[str, Any] | None) -> Normalisation:
    """What the card must apply to RGB in [0, 1] to feed the network what the Keras model's layers saw."""
    if rescaling is None:
        return Normalisation(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    std = [1.0 / (_RAW_PIXEL_MAX * s) for s in rescaling["scale"]]
    mean = [-o * sd for o, sd in zip(rescaling["offset"], std, strict=True)]
    return Normalisation(mean=tuple(mean), std=tuple(std))


def _torch_probs(state: Mapping[str, torch.Tensor], activation: DenseActivation, x: torch.Tensor) -> np.ndarray:
    net = Stage1Net(dense_activation=activation).eval()
    net.load_state_dict(state)
    with torch.inference_mode():
        return torch.softmax(net(x), dim=1).numpy()


def import_legacy_keras(
    model_path: Path,
    out_folder: Path,
    *,
    working_scale: float = DEFAULT_STAGE1_SCALE,
    cell_index: int = 1,
    dense_activation: DenseActivation | None = None,
    seed: int = 0,
    n_check: int = 256,
    python: str | None = None,
    timeout_s: float = 600.0,
) -> ModelCard:
    """Convert the original's Keras stage-1 model into a saved papscreen stage-1 model, and prove it.

    The saved folder loads with :meth:`~papscreen.models.stage1.Stage1Detector.from_checkpoint` like any
    trained stage-1 model. Its card records where the weights came from (``source``: path and sha256), the
    measured largest probability difference (``metrics["conversion_max_abs_diff"]``) and the working scale.

    Args:
        model_path: ``.h5``/``.hdf5``, ``.keras``, or a SavedModel folder.
        out_folder: where to save (``model.safetensors`` + ``card.json``); must not hold a model already.
        working_scale: the field scale the model was trained at (Keras files do not record it): 20 divided by
            the side, in full-resolution pixels, of the windows its DB_3 patches were cut from. papscreen's
            default (0.5, 40 px windows) unless you know the original's.
        cell_index: which of the two Keras outputs is *cell*. The original's DB_3 class folders, sorted
            alphabetically, gave background = 0 and cell = 1, hence the default.
        dense_activation: the Dense 16 activation. Read from ``.h5``/``.keras`` files (a different value
            here is refused); for a SavedModel, where it cannot be read, it is found from the outputs unless
            given.
        seed: seed of the random check inputs.
        n_check: number of check inputs.
        python: interpreter that runs the Keras worker; this one (``sys.executable``) by default. It needs
            TensorFlow with Keras 3 (the ``keras`` extra), not papscreen.
        timeout_s: how long the worker may take.

    Returns:
        The saved card; ``card.metrics["conversion_max_abs_diff"]`` is the largest probability difference
        between Keras and PyTorch on the check inputs (below ``CONVERSION_TOLERANCE``, or this raised).

    Raises:
        CheckpointError: naming the model file: unreadable, not the stage-1 architecture, TensorFlow missing
            (the message says to ``pip install 'papscreen[keras]'``), or outputs that differ by more than
            ``CONVERSION_TOLERANCE``.

    Examples:
        >>> card = import_legacy_keras(Path("cnn20.h5"), Path("models/stage1-keras"),
        ...                            working_scale=0.25)  # doctest: +SKIP
        >>> card.architecture_options, card.metrics["conversion_max_abs_diff"] < CONVERSION_TOLERANCE  # doctest: +SKIP
        ({'dense_activation': 'linear'}, True)
    """
    model_path = Path(model_path)
    if cell_index not in (0, 1):
        raise ValueError(f"cell_index must be 0 or 1, got {cell_index}")
    fmt = _model_format(model_path)
    out_folder = Path(out_folder)
    if (out_folder / CARD_NAME).exists() or (out_folder / WEIGHTS_NAME).exists():
        # Checked again by save_model; here it saves a TensorFlow start-up (seconds) before the inevitable error.
        raise CheckpointError(out_folder, "a model is already saved here; choose another folder")
    source_sha256 = model_sha256(model_path)
    inputs = check_inputs(seed, n_check)
    exported = _run_worker(model_path, inputs, python or sys.executable, timeout_s)
    try:
        description = json.loads(str(exported["description"]))
        keras_probs = exported["probs"].astype(np.float64)
        state = keras_weights_to_state_dict(exported, cell_index=cell_index)
    except (KeyError, ValueError) as e:
        raise CheckpointError(model_path, f"the Keras worker's result is malformed ({e})") from e
    if keras_probs.shape != (n_check, 2):
        raise CheckpointError(
            model_path, f"Keras gave probabilities of shape {keras_probs.shape}, expected ({n_check}, 2)"
        )
    keras_probs = keras_probs[:, [1 - cell_index, cell_index]]

    found = description.get("dense_activation")
    if found is not None and found not in _ACTIVATIONS:
        raise CheckpointError(model_path, f"the Dense 16 activation {found!r} is neither relu nor linear")
    if found is not None and dense_activation is not None and found != dense_activation:
        raise CheckpointError(
            model_path,
            f"the model's Dense 16 activation is {found!r}, but dense_activation={dense_activation!r} was given",
        )
    candidates = [found or dense_activation] if (found or dense_activation) else list(_ACTIVATIONS)

    normalisation = _normalisation(description.get("rescaling"))
    mean = torch.tensor(normalisation.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(normalisation.std, dtype=torch.float32).view(1, 3, 1, 1)
    x = (torch.from_numpy(inputs).permute(0, 3, 1, 2) - mean) / std
    diffs = {a: float(np.abs(_torch_probs(state, a, x) - keras_probs).max()) for a in candidates}
    matches = [a for a, d in diffs.items() if d < CONVERSION_TOLERANCE]
    if not matches:
        hint = (
            " (a SavedModel with a Rescaling layer or another activation is not supported: convert the .h5/.keras file)"
            if fmt == "savedmodel"
            else ""
        )
        shown = ", ".join(f"{d:.3g} with a {a} Dense 16" for a, d in diffs.items())
        raise CheckpointError(
            model_path,
            f"the converted network disagrees with Keras by {shown} (tolerance {CONVERSION_TOLERANCE:g}){hint}",
        )
    if len(matches) > 1:
        raise CheckpointError(
            model_path,
            "relu and linear Dense 16 both reproduce this SavedModel on the check inputs; "
            "say which with dense_activation='relu' or 'linear'",
        )
    (activation,) = matches

    card = ModelCard(
        stage="stage1",
        architecture="cnn20",
        classes=STAGE1_CLASSES,
        input_size=INPUT_PX,
        working_scale=working_scale,
        normalisation=normalisation,
        architecture_options={"dense_activation": activation},
        metrics={"conversion_max_abs_diff": diffs[activation]},
        training={
            "imported_from": "keras",
            "keras_format": fmt,
            "keras_cell_index": cell_index,
            "keras_version": description.get("keras_version"),
            "tensorflow_version": description.get("tensorflow_version"),
            "keras_rescaling": description.get("rescaling"),
            "conversion_check": {"seed": seed, "n_inputs": n_check, "tolerance": CONVERSION_TOLERANCE},
        },
        library_versions=library_versions(),
        weights_sha256="0" * 64,  # filled in by save_model
        source=f"{model_path.resolve()} (sha256 {source_sha256})",
    )
    return save_model(state, card, out_folder)
