"""Stage 2: grade each nucleus stage 1 found into a Bethesda class (NILM, LSIL, HSIL, SCC).

A :class:`Stage2Classifier` is a torchvision network (:mod:`papscreen.models.backbones`) plus its model card: the
card says which full-resolution window around a nucleus the network was trained on (``crop_size``, 250 px as the
original DB_4), the side it is resized to (``input_size``), the normalisation, the class order and the softmax
temperature fitted on validation. Inference therefore never guesses: crops go through the one evaluation recipe
of :mod:`papscreen.models.transforms`, so training, evaluation and the service see the same pixels.

Inference runs under ``torch.inference_mode`` in channels-last layout (faster convolutions on CPU and GPU) at one
of three precisions:

* ``fp32``: the model of record;
* ``bf16``: autocast to bfloat16 (about 3x faster than fp32 for a ResNet50 on a CPU with AVX-512/AMX; on CUDA,
  bfloat16 where the GPU has it, else float16); predictions agree with fp32 on all but a few borderline crops;
* ``int8``: post-training static quantization (:mod:`papscreen.models.quantize`), CPU only, rebuilt from the
  fp32 weights and a saved calibration (``int8-calibration.safetensors``), never from a pickled module.

Checkpoints are safetensors weights with a JSON card (:mod:`papscreen.models.checkpoints`); loading never
unpickles, and every inconsistency (a stage-1 card, an unknown architecture, weights with another number of
classes than the card, a corrupt file) raises :class:`~papscreen.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from papscreen.bethesda import BETHESDA_CLASSES
from papscreen.datasets.conventions import DEFAULT_CROP_PX
from papscreen.errors import CheckpointError
from papscreen.models.backbones import ARCHITECTURES, build_stage2_network, head_prefix
from papscreen.models.calibration import apply_temperature
from papscreen.models.card import ModelCard, Normalisation, library_versions, read_card, write_card
from papscreen.models.checkpoints import (
    CARD_NAME,
    WEIGHTS_NAME,
    file_sha256,
    load_weights,
    resolve_card_path,
    save_model,
)
from papscreen.models.quantize import (
    CALIBRATION_FILE,
    Int8Calibration,
    ObserverKind,
    calibrate_int8,
    int8_available,
    load_int8_calibration,
    quantize_from_calibration,
    save_int8_calibration,
)
from papscreen.models.transforms import eval_transform, to_uint8_batch

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "NETWORK_OPTION_KEYS",
    "PRECISIONS",
    "Precision",
    "Stage2Classifier",
    "int8_check_passed",
    "stage2_card",
]

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

DEFAULT_INPUT_SIZE = 160
"""Network input side for CPU training: a 250 px crop resized to 160 px keeps nuclear detail (a normal nucleus is
still 8-12 px across) at half the cost of 224 px. ImageNet-pretrained networks were trained at 224 px; pass
``input_size=224`` for the original recipe. The card records the size a model was trained at."""

NETWORK_OPTION_KEYS = ("head_hidden", "dropout")
"""Keyword arguments of :func:`~papscreen.models.backbones.build_stage2_network` a card keeps in
``architecture_options`` (so the same head, hence the same state-dict keys, is rebuilt on load)."""

_PLACEHOLDER_SHA = "0" * 64
_CALIBRATION_KEY = "int8_calibration"


def stage2_card(
    architecture: str,
    *,
    input_size: int = DEFAULT_INPUT_SIZE,
    crop_size: int = DEFAULT_CROP_PX,
    classes: Sequence[str] = BETHESDA_CLASSES,
    normalisation: Normalisation | None = None,
    temperature: float = 1.0,
    head_hidden: int | None = None,
    dropout: float = 0.0,
    **fields: Any,
) -> ModelCard:
    """A stage-2 card for a network not saved yet; :meth:`Stage2Classifier.to_checkpoint` fills in the weights' hash.

    Args:
        architecture: one of :data:`~papscreen.models.backbones.ARCHITECTURES`.
        input_size: side of the network input, pixels.
        crop_size: side of the full-resolution crop around the nucleus, pixels.
        classes: output order of the network (canonical Bethesda order by default).
        normalisation: per-channel mean and std (ImageNet's by default, which pretrained backbones expect).
        temperature: softmax temperature.
        head_hidden: hidden width of the head, or ``None`` for one linear layer.
        dropout: dropout of the head.
        **fields: other card fields (``metrics``, ``training``, ``dataset_fingerprint``, ``source``, ...).

    Examples:
        >>> card = stage2_card("resnet18", input_size=64)
        >>> card.stage, card.crop_size, card.classes, card.architecture_options
        ('stage2', 250, ('NILM', 'LSIL', 'HSIL', 'SCC'), {'head_hidden': None, 'dropout': 0.0})
    """
    return ModelCard(
        stage="stage2",
        architecture=architecture,
        classes=tuple(classes),
        input_size=input_size,
        crop_size=crop_size,
        normalisation=normalisation or Normalisation(),
        temperature=temperature,
        architecture_options={"head_hidden": head_hidden, "dropout": dropout},
        library_versions=library_versions(),
        weights_sha256=_PLACEHOLDER_SHA,
        **fields,
    )


def _network_options(card: ModelCard) -> dict[str, Any]:
    return {k: card.architecture_options[k] for k in NETWORK_OPTION_KEYS if k in card.architecture_options}


def _batches(total: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, total, batch_size):
        yield slice(start, min(start + batch_size, total))


class Stage2Classifier:
    """A stage-2 network with its card: crops of nuclei in, Bethesda probabilities out.

    The classifier keeps the network it was given (what :meth:`to_checkpoint` saves, in fp32) and runs a separate
    evaluation copy on ``device`` at ``precision``; train the network further and build a new classifier.

    Args:
        network: a network from :func:`~papscreen.models.backbones.build_stage2_network` matching ``card``.
        card: a stage-2 card (:func:`stage2_card` for a new network; :meth:`from_checkpoint` reads a saved one).
        device: where inference runs (``cpu``, ``cuda``, ``cuda:1``).
        precision: ``fp32``, ``bf16`` or ``int8`` (CPU only; needs ``int8_calibration``).
        int8_calibration: what :meth:`calibrate_int8` learnt; kept and saved with the model even at fp32.

    Raises:
        ValueError: a stage-1 card, an unknown precision, int8 on a GPU, or int8 without a calibration.

    Examples:
        >>> card = stage2_card("resnet18", input_size=32, crop_size=64)
        >>> classifier = Stage2Classifier(build_stage2_network("resnet18"), card)
        >>> probs = classifier.predict_proba(np.zeros((3, 64, 64, 3), np.uint8))
        >>> probs.shape, bool(np.allclose(probs.sum(axis=1), 1.0, atol=1e-5))
        ((3, 4), True)
        >>> classifier.classes, classifier.crop_size, classifier.input_size, classifier.temperature
        (('NILM', 'LSIL', 'HSIL', 'SCC'), 64, 32, 1.0)
    """

    def __init__(
        self,
        network: nn.Module,
        card: ModelCard,
        device: torch.device | str = "cpu",
        precision: Precision = "fp32",
        int8_calibration: Int8Calibration | None = None,
    ) -> None:
        """Wrap a network; builds the inference copy (quantizing it for ``int8``)."""
        if card.stage != "stage2" or card.crop_size is None:
            raise ValueError(f"a stage-2 classifier needs a stage-2 card, got a {card.stage} card")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.network = network
        self.card = card
        self.device = torch.device(device)
        self.precision: Precision = precision
        self.int8_calibration = int8_calibration
        self._transform = eval_transform(
            card.crop_size, card.input_size, card.normalisation.mean, card.normalisation.std
        )
        if precision == "int8":
            if self.device.type != "cpu":
                raise ValueError(f"int8 inference runs on the CPU only; use fp32 or bf16 on {self.device}")
            if int8_calibration is None:
                raise ValueError(
                    "int8 needs a calibration: call classifier.calibrate_int8(training_crops), or load a checkpoint "
                    "saved with one"
                )
            if not int8_available():
                raise ValueError("this torch build has no x86 quantized engine; use precision fp32 or bf16")
            self._runner = quantize_from_calibration(network, int8_calibration)
        else:
            runner = copy.deepcopy(network).eval().to(self.device)
            self._runner = runner.to(memory_format=torch.channels_last)

    @property
    def classes(self) -> tuple[str, ...]:
        """Output order of the probabilities (canonical Bethesda order for papscreen's own models)."""
        return tuple(self.card.classes)

    @property
    def crop_size(self) -> int:
        """Side of the full-resolution crop around a nucleus the model expects, pixels."""
        return int(self.card.crop_size or DEFAULT_CROP_PX)

    @property
    def input_size(self) -> int:
        """Side the crop is resized to before the network, pixels."""
        return int(self.card.input_size)

    @property
    def temperature(self) -> float:
        """Softmax temperature fitted on validation (1.0 until fitted)."""
        return float(self.card.temperature)

    @property
    def architecture(self) -> str:
        """The torchvision architecture name."""
        return self.card.architecture

    def with_card(self, **changes: Any) -> Stage2Classifier:
        """The same network with some card fields changed (e.g. ``temperature``, ``metrics``); a new classifier.

        Examples:
            >>> classifier = Stage2Classifier(build_stage2_network("resnet18"), stage2_card("resnet18", input_size=32))
            >>> classifier.with_card(temperature=1.5).temperature
            1.5
        """
        card = self.card.model_copy(update=changes)
        return Stage2Classifier(self.network, card, self.device, self.precision, self.int8_calibration)

    def with_precision(self, precision: Precision, device: torch.device | str | None = None) -> Stage2Classifier:
        """The same model at another precision (and device); ``int8`` needs a calibration already made."""
        return Stage2Classifier(self.network, self.card, device or self.device, precision, self.int8_calibration)

    def preprocess(self, crops: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        """The evaluation recipe on a batch: uint8 crops to the normalised float input, on the classifier's device.

        Raises:
            ValueError: crops that are not uint8 RGB.
        """
        batch = to_uint8_batch(crops, self.crop_size)
        if self.device.type == "cuda":
            # Page-locked memory lets the copy run asynchronously, overlapping the previous batch's compute.
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        else:
            batch = batch.to(self.device)
        return self._transform(batch).contiguous(memory_format=torch.channels_last)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision != "bf16":
            return contextlib.nullcontext()
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (float32) of already preprocessed inputs, at the classifier's precision."""
        with torch.inference_mode():
            if self.precision == "int8":
                return self._runner(inputs.to("cpu", torch.float32).contiguous()).float()
            with self._autocast():
                return self._runner(inputs.to(self.device)).float()

    def predict_logits(
        self, crops: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor], batch_size: int = 32
    ) -> np.ndarray:
        """Logits (N, C) of nucleus crops, before temperature; float32 numpy.

        Args:
            crops: an (N, H, W, 3) uint8 array, or a sequence of HxWx3 uint8 arrays, cut at full resolution around
                each nucleus (:func:`~papscreen.imaging.crops.cut_crops`); larger crops are centre cropped to
                ``crop_size``, smaller ones mirrored outwards to it.
            batch_size: crops per forward pass (bounds memory).

        Raises:
            ValueError: crops that are not uint8 RGB, or ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        total = len(crops)
        if total == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        out = []
        for part in _batches(total, batch_size):
            out.append(self.run(self.preprocess(crops[part])).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def predict_proba(
        self, crops: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor], batch_size: int = 32
    ) -> np.ndarray:
        """Calibrated probabilities (N, C) of nucleus crops: ``softmax(logits / temperature)``, float32 numpy.

        Takes the same crops as :meth:`predict_logits`; rows sum to 1, columns follow :attr:`classes`.
        """
        logits = self.predict_logits(crops, batch_size)
        return apply_temperature(torch.from_numpy(logits), self.temperature).numpy()

    def calibrate_int8(
        self,
        crops: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        *,
        batch_size: int = 32,
        observer: ObserverKind = "histogram",
        keep_float: tuple[str, ...] | None = None,
    ) -> Stage2Classifier:
        """Calibrate int8 quantization on a few hundred training crops; returns the int8 classifier (on the CPU).

        Args:
            crops: uint8 crops as :meth:`predict_logits` takes them (training crops, not validation ones).
            batch_size: crops per calibration pass.
            observer: ``histogram`` (better ranges) or ``minmax`` (faster).
            keep_float: modules left in float (default: the first convolution and the last linear layer).

        Examples:
            >>> card = stage2_card("resnet18", input_size=32, crop_size=32)
            >>> fp32 = Stage2Classifier(build_stage2_network("resnet18"), card)
            >>> crops = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
            >>> fp32.calibrate_int8(crops, observer="minmax").predict_proba(crops).shape
            (8, 4)
        """
        cpu = self if self.device.type == "cpu" and self.precision == "fp32" else self.with_precision("fp32", "cpu")
        batches = (cpu.preprocess(crops[part]) for part in _batches(len(crops), batch_size))
        _, calibration = calibrate_int8(
            self.network, batches, input_size=self.input_size, observer=observer, keep_float=keep_float
        )
        return Stage2Classifier(self.network, self.card, "cpu", "int8", calibration)

    def to_checkpoint(
        self,
        folder: str | Path,
        metrics: dict[str, Any] | None = None,
        dataset_fingerprint: str | None = None,
        training: dict[str, Any] | None = None,
    ) -> ModelCard:
        """Save fp32 weights, the card and (when there is one) the int8 calibration into a new folder.

        Arguments left ``None`` keep what the card already says. The calibration file's sha256 goes on the card
        (``architecture_options["int8_calibration"]``), so a swapped file is caught on load.

        Returns:
            The card as saved.

        Raises:
            CheckpointError: ``folder`` already holds a model.

        Examples:
            >>> import tempfile
            >>> folder = Path(tempfile.mkdtemp()) / "model"
            >>> classifier = Stage2Classifier(build_stage2_network("resnet18"), stage2_card("resnet18", input_size=32))
            >>> saved = classifier.to_checkpoint(folder, metrics={"macro_f1": 0.5})
            >>> sorted(p.name for p in folder.iterdir()), saved.metrics
            (['card.json', 'model.safetensors'], {'macro_f1': 0.5})
        """
        folder = Path(folder)
        if (folder / CARD_NAME).exists() or (folder / WEIGHTS_NAME).exists():
            raise CheckpointError(folder, "a model is already saved here; choose another folder")
        updates: dict[str, Any] = {"library_versions": library_versions()}
        if metrics is not None:
            updates["metrics"] = metrics
        if dataset_fingerprint is not None:
            updates["dataset_fingerprint"] = dataset_fingerprint
        if training is not None:
            updates["training"] = training
        options = {k: v for k, v in self.card.architecture_options.items() if k != _CALIBRATION_KEY}
        if (calibration := self.int8_calibration) is not None:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / CALIBRATION_FILE
            save_int8_calibration(calibration, path)
            options[_CALIBRATION_KEY] = _calibration_entry(calibration, path)
        updates["architecture_options"] = options
        card = self.card.model_copy(update=updates)
        state = {k: v.float() if v.is_floating_point() else v for k, v in self.network.state_dict().items()}
        saved = save_model(state, card, folder)
        self.card = saved
        return saved

    def attach_int8_calibration(
        self, folder: str | Path, *, replace: bool = False, checked: Mapping[str, Any] | None = None
    ) -> ModelCard:
        """Add this classifier's int8 calibration to the folder it was loaded from, leaving the weights untouched.

        Why a separate step: a lab calibrates a model that is already saved and registered. The registry knows a
        model by its weights' sha256, so only the calibration file and the card change; the fp32 weights stay the
        model of record. Each file is written under a temporary name and renamed into place, calibration before
        card, so a crash never leaves a card naming a calibration file with another hash (with ``replace``, the
        card first loses its old entry, so fp32 loading keeps working at every step).

        Args:
            folder: the saved model (its folder, ``card.json`` or weights file).
            replace: overwrite a calibration already attached there.
            checked: what a check measured (``agreement``, ``macro_f1_change``, ``validation_crops``), recorded in
                the card's calibration entry; ``card.metrics`` stay those of the fp32 model.

        Returns:
            The card as written (also the classifier's card from now on).

        Raises:
            ValueError: this classifier has no calibration, or ``checked`` has other keys than those three.
            CheckpointError: the folder holds another model (other ``weights_sha256``) or already a calibration
                and ``replace`` is False; the message names the folder.

        Examples:
            >>> import tempfile
            >>> folder = Path(tempfile.mkdtemp()) / "model"
            >>> card = stage2_card("resnet18", input_size=32, crop_size=32)
            >>> _ = Stage2Classifier(build_stage2_network("resnet18"), card).to_checkpoint(folder)
            >>> crops = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
            >>> int8 = Stage2Classifier.from_checkpoint(folder).calibrate_int8(crops, observer="minmax")
            >>> saved = int8.attach_int8_calibration(folder, checked={"agreement": 1.0})
            >>> sorted(p.name for p in folder.iterdir())
            ['card.json', 'int8-calibration.safetensors', 'model.safetensors']
            >>> saved.architecture_options["int8_calibration"]["agreement"]
            1.0
        """
        calibration = self.int8_calibration
        if calibration is None:
            raise ValueError("no int8 calibration to attach: call calibrate_int8(training crops) first")
        results = _check_results(checked)
        card_path = resolve_card_path(Path(folder))
        model_folder = card_path.parent
        on_disk = read_card(card_path, stage="stage2")
        if on_disk.weights_sha256 != self.card.weights_sha256:
            raise CheckpointError(
                model_folder,
                "this folder holds another model (its card's weights_sha256 differs from this classifier's); "
                "load the model from this folder and calibrate it",
            )
        options = dict(on_disk.architecture_options)
        if options.get(_CALIBRATION_KEY) and not replace:
            raise CheckpointError(
                model_folder, "an int8 calibration is already attached here; pass replace to renew it"
            )
        if options.pop(_CALIBRATION_KEY, None):
            # The old entry goes first: between the two renames below the card then names no calibration, rather
            # than one whose hash no longer matches (which would stop even fp32 loading).
            _replace_atomically(
                card_path, lambda tmp: write_card(on_disk.model_copy(update={"architecture_options": options}), tmp)
            )
        path = card_path.with_name(CALIBRATION_FILE)
        _replace_atomically(path, lambda tmp: save_int8_calibration(calibration, tmp))
        options[_CALIBRATION_KEY] = _calibration_entry(calibration, path, results)
        card = on_disk.model_copy(update={"architecture_options": options})
        _replace_atomically(card_path, lambda tmp: write_card(card, tmp))
        self.card = card
        return card

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: torch.device | str = "cpu", precision: Precision = "fp32"
    ) -> Stage2Classifier:
        """Load a saved stage-2 model (a folder, its ``card.json`` or its ``model.safetensors``); never unpickles.

        Raises:
            CheckpointError: a missing, altered or corrupt file, a stage-1 card, an unknown architecture, weights
                whose number of classes differs from the card's, or ``int8`` without a saved calibration; the
                message names the file.

        Examples:
            >>> import tempfile
            >>> folder = Path(tempfile.mkdtemp()) / "model"
            >>> card = stage2_card("resnet18", input_size=32, temperature=1.3)
            >>> _ = Stage2Classifier(build_stage2_network("resnet18"), card).to_checkpoint(folder)
            >>> Stage2Classifier.from_checkpoint(folder).temperature
            1.3
        """
        card_path = resolve_card_path(Path(path))
        state, card = load_weights(card_path, stage="stage2")
        weights_path = card_path.with_name(card.weights_file)
        if card.architecture not in ARCHITECTURES:
            raise CheckpointError(
                card_path,
                f"unknown stage-2 architecture {card.architecture!r}; expected one of {', '.join(ARCHITECTURES)}",
            )
        _check_class_count(state, card, weights_path)
        try:
            network = build_stage2_network(card.architecture, card.num_classes, **_network_options(card))
        except (ValueError, TypeError) as e:
            raise CheckpointError(card_path, f"cannot build the network the card describes: {e}") from e
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as e:
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            detail = "; ".join(lines[1:3]) or (lines[0] if lines else "mismatch")
            raise CheckpointError(weights_path, f"weights do not fit architecture {card.architecture}: {detail}") from e
        network.eval()
        calibration = _load_calibration(card, card_path, required=precision == "int8")
        try:
            return cls(network, card, device, precision, calibration)
        except ValueError as e:
            raise CheckpointError(card_path, str(e)) from e


_CHECK_KEYS = ("agreement", "macro_f1_change", "validation_crops")


def _calibration_entry(
    calibration: Int8Calibration, path: Path, checked: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The card's description of a saved calibration file: one definition, so every writer hashes it the same way."""
    entry: dict[str, Any] = {
        "file": path.name,
        "sha256": file_sha256(path),
        "observer": calibration.observer,
        "images": calibration.images,
        "keep_float": None if calibration.keep_float is None else list(calibration.keep_float),
    }
    return entry | dict(checked or {})


def int8_check_passed(card: ModelCard, *, min_agreement: float = 0.99, max_f1_loss: float = 0.005) -> bool:
    """Whether the card's int8 calibration was checked against fp32 on validation and met both bars.

    What ``papscreen models calibrate-int8`` records; a calibration attached without a check (or forced through
    a failed one) does not count, so ``auto`` precision never picks int8 for it.

    Examples:
        >>> card = stage2_card("resnet18", input_size=32)
        >>> int8_check_passed(card)
        False
        >>> entry = {"agreement": 0.995, "macro_f1_change": -0.001, "validation_crops": 762}
        >>> int8_check_passed(card.model_copy(update={"architecture_options": {"int8_calibration": entry}}))
        True
    """
    entry = card.architecture_options.get(_CALIBRATION_KEY) or {}
    agreement, change = entry.get("agreement"), entry.get("macro_f1_change")
    if not isinstance(agreement, int | float) or not isinstance(change, int | float):
        return False
    return agreement >= min_agreement and -change <= max_f1_loss


def _check_results(checked: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a check measured, limited to the keys the card's calibration entry defines for it."""
    unknown = sorted(set(checked or {}) - set(_CHECK_KEYS))
    if unknown:
        raise ValueError(f"checked takes only {', '.join(_CHECK_KEYS)}, not {', '.join(unknown)}")
    return dict(checked or {})


def _replace_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write a file under a temporary name in its folder, flush it to disk, then rename it over ``target``.

    A rename within one folder is atomic, so a reader (or a crash) sees the old file or the new one, never half.
    The writer creates the temporary file itself (usual permissions); a replaced file keeps its mode.
    """
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        write(tmp)
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _check_class_count(state: dict[str, torch.Tensor], card: ModelCard, weights_path: Path) -> None:
    """Refuse weights whose last layer has another number of outputs than the card has classes."""
    prefix = head_prefix(card.architecture)
    head_biases = [k for k in state if k.startswith(prefix + ".") and k.endswith(".bias")]
    if not head_biases:
        raise CheckpointError(weights_path, f"no classifier head ({prefix}.*) in the weights of a {card.architecture}")
    outputs = int(state[sorted(head_biases)[-1]].shape[0])
    if outputs != card.num_classes:
        raise CheckpointError(
            weights_path,
            f"the weights have {outputs} outputs but the card lists {card.num_classes} classes {list(card.classes)}; "
            "the card does not belong to these weights",
        )


def _load_calibration(card: ModelCard, card_path: Path, *, required: bool) -> Int8Calibration | None:
    """The int8 calibration saved beside the weights (checked against the card's hash), if any."""
    entry = card.architecture_options.get(_CALIBRATION_KEY)
    if not entry:
        if required:
            raise CheckpointError(
                card_path,
                "this model was saved without an int8 calibration; run `papscreen models calibrate-int8 MODEL DB_4` "
                "(or use precision fp32/bf16)",
            )
        return None
    path = card_path.with_name(str(entry.get("file", CALIBRATION_FILE)))
    if not path.is_file():
        if required:
            raise CheckpointError(path, "int8 calibration file named by the card is missing")
        return None
    if file_sha256(path) != entry.get("sha256"):
        raise CheckpointError(path, "int8 calibration does not match the card's sha256 (altered or swapped file)")
    return load_int8_calibration(path)
