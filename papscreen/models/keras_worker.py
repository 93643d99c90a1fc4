"""Child-process half of :mod:`papscreen.models.legacy_keras`: the only papscreen code that touches TensorFlow.

TensorFlow must never share a process with torch/torchvision here (importing it first crashes the process,
and it costs seconds and memory besides), so :func:`~papscreen.models.legacy_keras.import_legacy_keras`
runs this file as a script in a child process and reads back plain arrays. The script needs only numpy,
TensorFlow and Keras 3, not papscreen itself, so any interpreter with the ``keras`` extra can run it::

    python keras_worker.py MODEL INPUTS.npz OUTPUT.npz

It loads the model (``.h5``/``.hdf5`` and ``.keras`` with ``keras.models.load_model(compile=False)`` in
Keras's safe mode; a SavedModel folder with ``tf.saved_model.load``, because Keras 3 no longer loads
SavedModels as models, and ``keras.layers.TFSMLayer`` only wraps the same inference endpoint), checks that it
is the stage-1 architecture, and writes into ``OUTPUT.npz`` (``np.savez``, no pickles) the six kernel and
bias arrays, a JSON description of what it found, and the model's probabilities on the inputs of
``INPUTS.npz`` (N x 20 x 20 x 3 floats in [0, 1]).

On failure it prints one line ``papscreen-keras-worker: <message>`` to stderr and exits with ``EXIT_*``.

Importing this module does *not* import TensorFlow: :func:`main` does, on the far side of the process boundary.
So pytest's doctest collection over ``papscreen/`` (which has torchvision loaded) can import it safely, and a
missing TensorFlow becomes a clear message from the child instead of an ImportError at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

keras: Any = None
"""The ``keras`` module, set by :func:`_import_tensorflow` in the child process only."""
tf: Any = None
"""The ``tensorflow`` module, set by :func:`_import_tensorflow` in the child process only."""

__all__ = ["EXIT_NO_TENSORFLOW", "EXIT_UNREADABLE", "EXIT_UNSUPPORTED", "MESSAGE_PREFIX", "main"]

MESSAGE_PREFIX = "papscreen-keras-worker: "
EXIT_NO_TENSORFLOW = 3
EXIT_UNREADABLE = 4
EXIT_UNSUPPORTED = 5

INPUT_SHAPE = (20, 20, 3)
WEIGHT_SHAPES = {
    "conv_kernel": (10, 10, 3, 10),
    "conv_bias": (10,),
    "dense1_kernel": (250, 16),
    "dense1_bias": (16,),
    "dense2_kernel": (16, 2),
    "dense2_bias": (2,),
}
ARCHITECTURE = (
    "the stage-1 architecture is: input 20x20x3 -> [Rescaling] -> Conv2D 10 filters 10x10 relu (valid) -> "
    "MaxPooling2D 2x2 -> Dropout -> Flatten -> Dense 16 (relu or linear) -> Dense 2 softmax"
)
RAW_PIXEL_MAX = 255.0
"""A model with a leading Rescaling layer takes 8-bit pixel values: inputs in [0, 1] are scaled up by this."""


class UnsupportedModelError(Exception):
    """The model is readable but is not the stage-1 architecture; the message names the layer."""


def _fail(code: int, message: str) -> int:
    print(MESSAGE_PREFIX + " ".join(message.split()), file=sys.stderr)
    return code


def _model_format(path: Path) -> str:
    if path.is_dir():
        return "savedmodel"
    if path.suffix.lower() in {".h5", ".hdf5"}:
        return "h5"
    if path.suffix.lower() == ".keras":
        return "keras"
    raise UnsupportedModelError(f"unknown model format {path.suffix!r}: expected .h5, .keras or a SavedModel folder")


def _describe(index: int, layer: Any) -> str:
    return f"layer {index} {layer.name!r} ({type(layer).__name__})"


def _expect(condition: bool, index: int, layer: Any, what: str) -> None:
    if not condition:
        raise UnsupportedModelError(f"{_describe(index, layer)}: {what}; {ARCHITECTURE}")


def _pair(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value, value)


def _check_conv(i: int, layer: Any, config: dict[str, Any]) -> None:
    _expect(config.get("filters") == 10, i, layer, f"expected 10 filters, found {config.get('filters')}")
    _expect(
        _pair(config.get("kernel_size")) == (10, 10),
        i,
        layer,
        f"expected a 10x10 kernel, found {config.get('kernel_size')}",
    )
    _expect(_pair(config.get("strides", 1)) == (1, 1), i, layer, f"expected stride 1, found {config.get('strides')}")
    _expect(_pair(config.get("dilation_rate", 1)) == (1, 1), i, layer, "expected no dilation")
    _expect(config.get("groups", 1) == 1, i, layer, "expected groups=1")
    _expect(config.get("padding") == "valid", i, layer, f"expected padding 'valid', found {config.get('padding')!r}")
    _expect(config.get("activation") == "relu", i, layer, f"expected relu, found {config.get('activation')!r}")


def _check_pool(i: int, layer: Any, config: dict[str, Any]) -> None:
    _expect(
        _pair(config.get("pool_size")) == (2, 2), i, layer, f"expected 2x2 pooling, found {config.get('pool_size')}"
    )
    _expect(_pair(config.get("strides") or 2) == (2, 2), i, layer, f"expected stride 2, found {config.get('strides')}")
    _expect(config.get("padding") == "valid", i, layer, f"expected padding 'valid', found {config.get('padding')!r}")


def _check_dense(i: int, layer: Any, config: dict[str, Any], units: int, activations: Sequence[str]) -> None:
    _expect(config.get("units") == units, i, layer, f"expected {units} units, found {config.get('units')}")
    _expect(
        config.get("activation") in activations,
        i,
        layer,
        f"expected activation {' or '.join(activations)}, found {config.get('activation')!r}",
    )


_CHECKS: tuple[tuple[str, Callable[[int, Any, dict[str, Any]], None]], ...] = (
    ("Conv2D", _check_conv),
    ("MaxPooling2D", _check_pool),
    ("Flatten", lambda i, layer, config: None),
    ("Dense", lambda i, layer, config: _check_dense(i, layer, config, 16, ("relu", "linear"))),
    ("Dense", lambda i, layer, config: _check_dense(i, layer, config, 2, ("softmax",))),
)


def _standalone_activation(layer: Any, config: dict[str, Any]) -> str | None:
    """The activation a stand-alone ``Activation``/``ReLU``/``Softmax`` layer applies, or ``None`` for other layers.

    ``ReLU`` counts only in its plain form (no cap, slope or threshold); anything else is not the original's.
    """
    name = type(layer).__name__
    if name == "Activation":
        activation = config.get("activation")
        return activation if isinstance(activation, str) else repr(activation)
    if (
        name == "ReLU"
        and not config.get("max_value")
        and not config.get("negative_slope")
        and not config.get("threshold")
    ):
        return "relu"
    if name == "Softmax" and config.get("axis", -1) in (-1, [-1], 3, [3]):
        return "softmax"
    return None


def _effective_layers(model: Any) -> list[tuple[int, Any, dict[str, Any]]]:
    """(index, layer, config) of the layers that compute something, with stand-alone activations folded in.

    InputLayer and Dropout layers are dropped (Dropout does nothing at inference, so its rate and place do not
    matter). ``Conv2D(...)`` followed by ``Activation("relu")`` (or ``ReLU()``) is the same function as
    ``Conv2D(..., activation="relu")``, and Keras code of the time wrote it both ways; so a stand-alone
    activation right after a Conv2D or Dense without one is moved into that layer's config.
    """
    entries: list[tuple[int, Any, dict[str, Any]]] = []
    for i, layer in enumerate(model.layers):
        if type(layer).__name__ in ("InputLayer", "Dropout"):
            continue
        config = dict(layer.get_config())
        activation = _standalone_activation(layer, config)
        if activation is not None and entries:
            _, previous, previous_config = entries[-1]
            if type(previous).__name__ in ("Conv2D", "Dense") and previous_config.get("activation") == "linear":
                previous_config["activation"] = activation
                continue
        entries.append((i, layer, config))
    return entries


def _check_keras_model(model: Any) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Check the architecture; return (weights, description, input scale).

    See :func:`_effective_layers` for the layers that are skipped or merged; a Rescaling layer may come first
    and is reported (the parent folds it into the card's normalisation), not applied to the weights.
    """
    if not isinstance(model.input_shape, tuple) or tuple(model.input_shape[1:]) != INPUT_SHAPE:
        raise UnsupportedModelError(f"model input is {model.input_shape}, expected (None, 20, 20, 3); {ARCHITECTURE}")
    layers = _effective_layers(model)
    description: dict[str, Any] = {
        "layers": [{"class_name": type(layer).__name__, "config": config} for _, layer, config in layers],
        "rescaling": None,
    }
    if layers and type(layers[0][1]).__name__ == "Rescaling":
        i, layer, config = layers.pop(0)
        scale = np.broadcast_to(np.asarray(config.get("scale"), dtype=np.float64), (3,)).tolist()
        offset = np.broadcast_to(np.asarray(config.get("offset", 0.0), dtype=np.float64), (3,)).tolist()
        _expect(all(s > 0 for s in scale), i, layer, f"expected a positive scale, found {config.get('scale')}")
        description["rescaling"] = {"scale": scale, "offset": offset}
    names = [type(layer).__name__ for _, layer, _ in layers]
    for position, (expected, check) in enumerate(_CHECKS):
        if position >= len(layers):
            raise UnsupportedModelError(f"the model ends after {names}, expected a {expected} next; {ARCHITECTURE}")
        i, layer, config = layers[position]
        _expect(type(layer).__name__ == expected, i, layer, f"expected a {expected} here")
        _expect(
            config.get("data_format", "channels_last") in ("channels_last", None), i, layer, "expected channels_last"
        )
        _expect(config.get("use_bias", True), i, layer, "expected a bias")
        check(i, layer, config)
    if len(layers) > len(_CHECKS):
        i, layer, _ = layers[len(_CHECKS)]
        raise UnsupportedModelError(f"{_describe(i, layer)} follows the final Dense 2 softmax; {ARCHITECTURE}")
    (conv, _), _, _, (dense1, dense1_config), (dense2, _) = ((layer, config) for _, layer, config in layers)
    weights = {}
    for prefix, layer in (("conv", conv), ("dense1", dense1), ("dense2", dense2)):
        kernel, bias = layer.get_weights()
        weights[f"{prefix}_kernel"], weights[f"{prefix}_bias"] = kernel, bias
    description["dense_activation"] = dense1_config["activation"]
    return weights, description, RAW_PIXEL_MAX if description["rescaling"] else 1.0


def _load_keras(path: Path) -> tuple[dict[str, Any], dict[str, Any], Callable[[Any], Any]]:
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as e:  # h5py, zipfile, Keras and TF each raise their own types for a bad file
        raise OSError(f"Keras cannot read it ({type(e).__name__}: {e})") from e
    weights, description, input_scale = _check_keras_model(model)
    return weights, description, lambda x: model(x * input_scale, training=False)


def _load_saved_model(path: Path) -> tuple[dict[str, Any], dict[str, Any], Callable[[Any], Any]]:
    """Load a SavedModel: no layer list survives, so check weight shapes and the serving signature.

    The Dense 16 activation and any Rescaling cannot be read back; the parent tells them apart by outputs.
    """
    if not (path / "saved_model.pb").is_file():
        raise OSError("not a SavedModel folder (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # TF raises many unrelated types for a damaged SavedModel
        raise OSError(f"TensorFlow cannot read it ({type(e).__name__}: {e})") from e
    serve = loaded.signatures.get("serving_default")
    if serve is None:
        raise UnsupportedModelError(
            f"the SavedModel has no 'serving_default' signature; it has {list(loaded.signatures)}"
        )
    inputs = serve.structured_input_signature[1]
    if len(inputs) != 1:
        raise UnsupportedModelError(f"the SavedModel takes {len(inputs)} inputs, expected one; {ARCHITECTURE}")
    ((input_name, spec),) = inputs.items()
    if not spec.shape.is_compatible_with((None, *INPUT_SHAPE)):
        raise UnsupportedModelError(f"the SavedModel input is {spec.shape}, expected (None, 20, 20, 3); {ARCHITECTURE}")
    variables = [v for v in serve.variables if v.dtype.is_floating]
    found = sorted(tuple(v.shape.as_list()) for v in variables)
    by_shape = {tuple(v.shape.as_list()): v.numpy() for v in variables}
    if found != sorted(WEIGHT_SHAPES.values()):
        raise UnsupportedModelError(
            f"the SavedModel's variables have shapes {found}, expected {sorted(WEIGHT_SHAPES.values())}; {ARCHITECTURE}"
        )
    weights = {name: by_shape[shape] for name, shape in WEIGHT_SHAPES.items()}
    description = {"layers": None, "rescaling": None, "dense_activation": None, "serving_input": input_name}

    def predict(x: Any) -> Any:
        outputs = serve(**{input_name: tf.constant(x)})
        if isinstance(outputs, dict):
            if len(outputs) != 1:
                raise UnsupportedModelError(f"the SavedModel returns {len(outputs)} outputs, expected one")
            (outputs,) = outputs.values()
        return outputs

    return weights, description, predict


def convert(model_path: Path, inputs_path: Path, output_path: Path) -> None:
    """Load, check and run the model; write weights, description and probabilities to ``output_path``."""
    fmt = _model_format(model_path)
    loader = _load_saved_model if fmt == "savedmodel" else _load_keras
    weights, description, predict = loader(model_path)
    for name, shape in WEIGHT_SHAPES.items():
        if tuple(weights[name].shape) != shape:
            raise UnsupportedModelError(f"{name} has shape {weights[name].shape}, expected {shape}; {ARCHITECTURE}")
    with np.load(inputs_path, allow_pickle=False) as data:
        x = data["inputs"].astype(np.float32)
    probs = np.asarray(predict(x), dtype=np.float32)
    if probs.shape != (x.shape[0], 2) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise UnsupportedModelError(f"the model's outputs (shape {probs.shape}) are not two softmax probabilities")
    description.update(format=fmt, keras_version=keras.__version__, tensorflow_version=tf.__version__)
    np.savez(
        output_path,
        probs=probs,
        description=np.array(json.dumps(description, default=str)),
        **{name: np.asarray(array, dtype=np.float32) for name, array in weights.items()},
    )


def _import_tensorflow() -> str | None:
    """Import TensorFlow and Keras into this (child) process; return why not, or ``None`` on success.

    The import sits in a function on purpose: this module is also imported by processes that hold torchvision
    (pytest's doctest collection, type checkers), where importing TensorFlow would crash or cost seconds.
    """
    global keras, tf
    try:
        # TensorFlow only ever loads here, in the child process (see the docstring).
        import keras as keras_module
        import tensorflow as tf_module
    except ImportError as e:
        return f"{type(e).__name__}: {e}"
    keras, tf = keras_module, tf_module
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the conversion half; return the process exit code (0 on success)."""
    parser = argparse.ArgumentParser(description="Export a Keras stage-1 model's weights for papscreen.")
    parser.add_argument("model", type=Path, help=".h5/.hdf5, .keras, or a SavedModel folder")
    parser.add_argument("inputs", type=Path, help=".npz with 'inputs', N x 20 x 20 x 3 floats in [0, 1]")
    parser.add_argument("output", type=Path, help=".npz to write")
    args = parser.parse_args(argv)
    problem = _import_tensorflow()
    if problem is not None:
        return _fail(
            EXIT_NO_TENSORFLOW,
            f"TensorFlow with Keras 3 is not installed for this Python ({sys.executable}): {problem}. "
            "Install papscreen's keras extra into it (pip install 'papscreen[keras]') or pass another "
            "interpreter that has it",
        )
    if int(keras.__version__.split(".")[0]) < 3:
        return _fail(
            EXIT_NO_TENSORFLOW,
            f"Keras {keras.__version__} is too old (Keras 3 is needed) in {sys.executable}; "
            "install papscreen's keras extra: pip install 'papscreen[keras]'",
        )
    try:
        convert(args.model, args.inputs, args.output)
    except UnsupportedModelError as e:
        return _fail(EXIT_UNSUPPORTED, f"not a stage-1 model: {e}")
    except OSError as e:
        return _fail(EXIT_UNREADABLE, f"cannot read the model: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
