"""int8 post-training static quantization of stage-2 networks for CPU inference.

Why: on a CPU with AVX-512 VNNI, an int8 ResNet runs several times faster than fp32 and about twice as fast as
bf16 autocast, for predictions that agree with fp32 on all but a fraction of a percent of crops.

How: ``torch.ao`` FX graph mode with the ``x86`` backend (fbgemm/oneDNN kernels). The network is traced,
Conv+BN+ReLU are fused, observers record the range of every activation over a few hundred *training* crops
(calibration), and ``convert_fx`` replaces float ops by int8 ones (per-channel symmetric weights, per-tensor
affine activations). Activations use all 8 bits where the CPU has VNNI (AVX-512 VNNI, AVX-VNNI or AMX: u8 x s8
products accumulate in 32 bits) and 7 bits elsewhere (AVX2 pairs them in saturating 16-bit sums); the choice is
made when the int8 network is built, from the same calibration, so one calibration file serves both kinds of CPU.
Which layers stay in float is part of the calibration (``keep_float``), since the observers differ with it.

How a quantized model is stored: not as a pickled module. What calibration learnt is only the observers'
state (min/max, histograms): plain float tensors, saved with safetensors beside the fp32 weights
(``int8-calibration.safetensors``, hashed in the card). Loading rebuilds the int8 network from the fp32 weights
and that state, deterministically and without any data, in a couple of seconds. The fp32 weights stay the
model of record, so fp32 (or bf16) inference remains one argument away.

``torch.ao.quantization`` is deprecated upstream in favour of torchao's PT2E flow, but it is present and
tested in the pinned torch; the deprecation warnings it raises are silenced here, and only here. Moving to
PT2E (or ONNX Runtime) would change only this module: the calibration file would hold the same kind of state.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from papscreen.errors import CheckpointError

__all__ = [
    "CALIBRATION_FILE",
    "Int8Calibration",
    "ObserverKind",
    "activation_bits",
    "calibrate_int8",
    "float_layers",
    "int8_available",
    "load_int8_calibration",
    "prediction_agreement",
    "quantize_from_calibration",
    "save_int8_calibration",
]

CALIBRATION_FILE = "int8-calibration.safetensors"
ObserverKind = Literal["histogram", "minmax"]
_BACKEND = "x86"
_OBSERVER_KEY = "activation_post_process"


@dataclass(frozen=True)
class Int8Calibration:
    """What calibration learnt, enough to rebuild the int8 network from the fp32 weights.

    Attributes:
        observer_state: the activation observers' buffers, by their name in the prepared graph.
        input_size: side of the input the graph was traced with.
        observer: ``histogram`` (minimises quantization error; slower to calibrate) or ``minmax``.
        images: how many crops calibration saw.
        backend: the quantized engine (``x86``).
        keep_float: the modules left in float; ``None`` means :func:`float_layers` of the network.
    """

    observer_state: Mapping[str, torch.Tensor] = field(repr=False)
    input_size: int
    observer: ObserverKind = "histogram"
    images: int = 0
    backend: str = _BACKEND
    keep_float: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.input_size < 1 or self.images < 0:
            raise ValueError(f"input_size must be positive and images >= 0, got {self.input_size}, {self.images}")
        if self.observer not in ("histogram", "minmax"):
            raise ValueError(f"observer must be 'histogram' or 'minmax', not {self.observer!r}")


def int8_available() -> bool:
    """Whether this torch build has the x86 quantized engine (true on the x86-64 wheels).

    Examples:
        >>> isinstance(int8_available(), bool)
        True
    """
    return _BACKEND in torch.backends.quantized.supported_engines


def activation_bits() -> int:
    """Bits int8 activations use on this CPU: 8 with VNNI (exact 32-bit accumulation), 7 without.

    Without VNNI the x86 kernels add pairs of u8 x s8 products in saturating 16-bit registers, and a full 8-bit
    activation range can overflow them (255 * 127 * 2 > 32767); one bit less keeps every sum exact. With VNNI (and
    AMX) the products accumulate in 32 bits, so the eighth bit is free precision: it halves the rounding step.

    Examples:
        >>> activation_bits() in (7, 8)
        True
    """
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    return 8 if callable(probe) and probe() else 7


@contextmanager
def _quiet_deprecations() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*_aminmax.*deprecated.*")
        yield


def float_layers(network: nn.Module) -> tuple[str, ...]:
    """The layers kept in float: the first convolution (it sees raw pixels) and the last linear layer (the logits).

    The usual practice for post-training quantization: these two are cheap (a few percent of the compute) and
    the most sensitive to 8-bit rounding, the first because its input is the image itself, the last because its
    output *is* the decision.

    Examples:
        >>> from papscreen.models.backbones import build_stage2_network
        >>> float_layers(build_stage2_network("resnet18"))
        ('conv1', 'fc')
    """
    convs = [name for name, module in network.named_modules() if isinstance(module, nn.Conv2d)]
    linears = [name for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    return tuple(convs[:1] + linears[-1:])


def _qconfig_mapping(observer: ObserverKind, keep_float: tuple[str, ...] = ()) -> QConfigMapping:
    # The observers' state (ranges, histograms) does not depend on reduce_range: only the quantization
    # parameters computed from it at conversion do, so the bit width follows the CPU the network is built on.
    reduce_range = activation_bits() < 8
    activation = (
        HistogramObserver.with_args(dtype=torch.quint8, reduce_range=reduce_range)
        if observer == "histogram"
        else MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=reduce_range)
    )
    weight = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    mapping = get_default_qconfig_mapping(_BACKEND).set_global(QConfig(activation=activation, weight=weight))
    for name in keep_float:
        mapping = mapping.set_module_name(name, None)
    return mapping


def _prepare(
    network: nn.Module, input_size: int, observer: ObserverKind, keep_float: tuple[str, ...] | None
) -> torch.fx.GraphModule:
    if not int8_available():
        raise RuntimeError("this torch build has no x86 quantized engine; use precision fp32 or bf16")
    torch.backends.quantized.engine = _BACKEND
    model = copy.deepcopy(network).to("cpu", memory_format=torch.contiguous_format).float().eval()
    floats = float_layers(model) if keep_float is None else keep_float
    modules = dict(model.named_modules())
    unknown = [name for name in floats if name not in modules]
    if unknown:
        raise ValueError(f"keep_float names modules this network lacks: {', '.join(unknown)}")
    example = (torch.zeros(1, 3, input_size, input_size),)
    with _quiet_deprecations():
        return prepare_fx(model, _qconfig_mapping(observer, tuple(floats)), example)


def _convert(prepared: torch.fx.GraphModule) -> nn.Module:
    with _quiet_deprecations():
        quantized = convert_fx(prepared)
    return quantized.eval()


def calibrate_int8(
    network: nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    input_size: int,
    observer: ObserverKind = "histogram",
    keep_float: tuple[str, ...] | None = None,
) -> tuple[nn.Module, Int8Calibration]:
    """Quantize a float network to int8, calibrating activation ranges on ``batches``.

    Args:
        network: a float stage-2 network (left unchanged: a copy is quantized).
        batches: normalised float input batches (N x 3 x input_size x input_size), as the eval recipe makes
            them; a few hundred training crops are enough.
        input_size: side of the input.
        observer: ``histogram`` or ``minmax`` activation observers.
        keep_float: modules (by name, e.g. ``("conv1", "layer4", "fc")``) left in float; ``None``:
            :func:`float_layers`. A module keeps everything inside it in float.

    Returns:
        The int8 network (CPU only) and the calibration that rebuilds it (see :func:`quantize_from_calibration`).

    Raises:
        ValueError: no calibration batch, or ``keep_float`` names a module the network lacks.

    Examples:
        >>> from papscreen.models.backbones import build_stage2_network
        >>> net = build_stage2_network("resnet18").eval()
        >>> int8, calibration = calibrate_int8(net, [torch.randn(4, 3, 32, 32)], input_size=32, observer="minmax")
        >>> int8(torch.randn(2, 3, 32, 32)).shape, calibration.images
        (torch.Size([2, 4]), 4)
    """
    prepared = _prepare(network, input_size, observer, keep_float)
    images = 0
    with torch.inference_mode(), _quiet_deprecations():
        for batch in batches:
            prepared(batch.to("cpu", torch.float32))
            images += len(batch)
    if images == 0:
        raise ValueError("calibration needs at least one batch of crops")
    state = {k: v.detach().clone() for k, v in prepared.state_dict().items() if _OBSERVER_KEY in k}
    calibration = Int8Calibration(
        observer_state=state, input_size=input_size, observer=observer, images=images, keep_float=keep_float
    )
    return _convert(prepared), calibration


def quantize_from_calibration(
    network: nn.Module, calibration: Int8Calibration, *, source: Path | None = None
) -> nn.Module:
    """Rebuild the int8 network from float weights and a saved calibration; no data needed.

    Raises:
        CheckpointError: the calibration does not belong to this network (observers differ); names ``source``.
    """
    try:
        prepared = _prepare(network, calibration.input_size, calibration.observer, calibration.keep_float)
    except ValueError as e:
        raise CheckpointError(source or Path(CALIBRATION_FILE), f"int8 calibration does not match: {e}") from e
    expected = {k for k in prepared.state_dict() if _OBSERVER_KEY in k}
    if expected != set(calibration.observer_state):
        missing = sorted(expected - set(calibration.observer_state))[:2]
        raise CheckpointError(
            source or Path(CALIBRATION_FILE),
            f"int8 calibration does not match this network (e.g. missing {missing}); calibrate again",
        )
    with _quiet_deprecations():
        prepared.load_state_dict(dict(calibration.observer_state), strict=False)
    return _convert(prepared)


def save_int8_calibration(calibration: Int8Calibration, path: Path) -> None:
    """Write a calibration as safetensors (tensors plus string metadata; nothing executable).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / CALIBRATION_FILE
        >>> save_int8_calibration(Int8Calibration({"a.activation_post_process_0.min_val": torch.tensor(0.5)}, 64), path)
        >>> load_int8_calibration(path).input_size
        64
    """
    metadata = {
        "input_size": str(calibration.input_size),
        "observer": calibration.observer,
        "images": str(calibration.images),
        "backend": calibration.backend,
    }
    if calibration.keep_float is not None:
        metadata["keep_float"] = json.dumps(list(calibration.keep_float))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in calibration.observer_state.items()}
    save_file(tensors, str(path), metadata=metadata)


def load_int8_calibration(path: Path) -> Int8Calibration:
    """Read a calibration written by :func:`save_int8_calibration`.

    Raises:
        CheckpointError: missing, unreadable or incomplete file; names it.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 -- not a dict
    except FileNotFoundError as e:
        raise CheckpointError(path, "int8 calibration file not found; calibrate the model again") from e
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(path, f"not a readable safetensors calibration file ({e})") from e
    try:
        return Int8Calibration(
            observer_state=tensors,
            input_size=int(metadata["input_size"]),
            observer=metadata["observer"],  # type: ignore[arg-type]
            images=int(metadata.get("images", "0")),
            backend=metadata.get("backend", _BACKEND),
            keep_float=tuple(json.loads(metadata["keep_float"])) if "keep_float" in metadata else None,
        )
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(path, f"int8 calibration metadata is incomplete ({e})") from e


def prediction_agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Fraction of rows whose argmax (predicted class) is the same in two probability or logit arrays.

    Examples:
        >>> prediction_agreement(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([[0.6, 0.4], [0.7, 0.3]]))
        0.5
    """
    if first.shape != second.shape:
        raise ValueError(f"shapes differ: {first.shape} and {second.shape}")
    if len(first) == 0:
        return 1.0
    return float(np.mean(first.argmax(axis=1) == second.argmax(axis=1)))
