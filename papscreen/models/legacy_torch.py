"""Import the original project's PyTorch ResNet50 stage-2 checkpoint as a papscreen stage-2 model.

The original fine-tuned torchvision's ResNet50 with a 4-class ``fc`` and saved
``torch.save({"model_state_dict": model.state_dict(), ...}, path)``. This module reads such a file (or a bare
state dict) *without* unpickling arbitrary objects (``torch.load(weights_only=True)``: a file that holds
anything but tensors and plain containers is refused, not executed), checks that it is a ResNet50 with a head
of the expected size, loads it strictly into :func:`~papscreen.models.backbones.build_stage2_network` and saves
safetensors weights with a stage-2 card.

Class order: the original's head is in the alphabetical order of its DB_4 folders,
``LEGACY_MODEL_CLASSES = (HSIL, LSIL, NILM, SCC)``, not papscreen's severity order ``BETHESDA_CLASSES``. The
card lists the classes in the order of the network's outputs, and inference names every output by the card's
list, so the weights are saved untouched and the card says ``classes: [HSIL, LSIL, NILM, SCC]``: predictions
come out correctly named, and the saved ``fc`` stays byte-for-byte the original's (easy to audit). Code that
needs the canonical order maps by name (``card.classes.index("NILM")``), never by position.

Inputs: the original resized each 250 px crop to 224 px and normalised with ImageNet's mean and standard
deviation, which is what the card records by default (``crop_size``, ``input_size``, ``normalisation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from papscreen.bethesda import LEGACY_MODEL_CLASSES
from papscreen.datasets.conventions import DEFAULT_CROP_PX
from papscreen.errors import CheckpointError
from papscreen.models.backbones import build_stage2_network, head_prefix, load_pretrained_state_dict
from papscreen.models.card import ModelCard, Normalisation, library_versions
from papscreen.models.checkpoints import CARD_NAME, WEIGHTS_NAME, file_sha256, save_model

__all__ = ["LEGACY_INPUT_PX", "LEGACY_STAGE2_ARCHITECTURE", "import_legacy_resnet50"]

LEGACY_INPUT_PX = 224
"""Side of the original's network input: it resized each crop to 224 px."""
LEGACY_STAGE2_ARCHITECTURE = "resnet50"


def _check_head(state: dict[str, torch.Tensor], path: Path, classes: Sequence[str]) -> None:
    """Refuse a head of another size before the strict load, with a message about classes, not tensor shapes."""
    prefix = head_prefix(LEGACY_STAGE2_ARCHITECTURE)
    weight, bias = state.get(f"{prefix}.weight"), state.get(f"{prefix}.bias")
    if weight is None or bias is None:
        heads = sorted({k.rsplit(".", 1)[0] for k in state if k.startswith(prefix)})
        raise CheckpointError(
            path,
            f"no single-layer classifier {prefix}.weight/{prefix}.bias in the state dict (found {heads or 'none'}); "
            "this is not the original's ResNet50 checkpoint",
        )
    if weight.ndim != 2 or bias.ndim != 1 or weight.shape[0] != bias.shape[0]:
        raise CheckpointError(
            path, f"{prefix} has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}; not a linear head"
        )
    if weight.shape[0] != len(classes):
        raise CheckpointError(
            path,
            f"the classifier ({prefix}) has {weight.shape[0]} outputs, but {len(classes)} classes are expected "
            f"({', '.join(classes)}); this is not the original's {len(classes)}-class model "
            "(pass classes= naming each output in order if it is another model of the same family)",
        )


def import_legacy_resnet50(
    checkpoint_path: Path,
    out_folder: Path,
    *,
    crop_size: int = DEFAULT_CROP_PX,
    input_size: int = LEGACY_INPUT_PX,
    classes: Sequence[str] = LEGACY_MODEL_CLASSES,
    normalisation: Normalisation | None = None,
) -> ModelCard:
    """Convert the original's ResNet50 checkpoint into a saved stage-2 model (``model.safetensors`` + card).

    Args:
        checkpoint_path: a ``torch.save`` file holding ``{"model_state_dict": state_dict, ...}`` (other entries,
            such as an optimizer state or the epoch, are ignored) or a bare state dict. A ``module.`` prefix
            (``DataParallel``) is removed.
        out_folder: where to save; must not hold a model already.
        crop_size: side of the full-resolution crop around a nucleus (the original's DB_4 crops: 250 px).
        input_size: side the crop is resized to before the network (the original's: 224 px).
        classes: the name of each output, in output order: the original's alphabetical DB_4 order by default.
            The card keeps this order (see the module notes); ``fc`` must have this many outputs.
        normalisation: per-channel mean and std of the original's input transform; ImageNet's by default.

    Returns:
        The saved card; ``source`` names the checkpoint and its sha256.

    Raises:
        CheckpointError: naming the file: missing or unreadable, pickled objects besides tensors (refused, not
            run), no state dict inside, a classifier of another size, or weights that are not a ResNet50's.

    Examples:
        >>> import tempfile
        >>> from papscreen.models.backbones import build_stage2_network
        >>> tmp = Path(tempfile.mkdtemp())
        >>> original = build_stage2_network("resnet50", 4).eval()
        >>> torch.save({"model_state_dict": original.state_dict(), "epoch": 30}, tmp / "resnet50.pth")
        >>> card = import_legacy_resnet50(tmp / "resnet50.pth", tmp / "stage2-legacy")
        >>> card.classes, card.input_size, card.crop_size
        (('HSIL', 'LSIL', 'NILM', 'SCC'), 224, 250)
    """
    checkpoint_path = Path(checkpoint_path)
    out_folder = Path(out_folder)
    classes = tuple(classes)
    if (out_folder / CARD_NAME).exists() or (out_folder / WEIGHTS_NAME).exists():
        raise CheckpointError(out_folder, "a model is already saved here; choose another folder")
    state = load_pretrained_state_dict(checkpoint_path)
    _check_head(state, checkpoint_path, classes)
    network = build_stage2_network(LEGACY_STAGE2_ARCHITECTURE, len(classes))
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise CheckpointError(
            checkpoint_path,
            f"the weights are not a torchvision ResNet50's: {' '.join(lines[1:3]) or lines[0] if lines else e}",
        ) from e
    card = ModelCard(
        stage="stage2",
        architecture=LEGACY_STAGE2_ARCHITECTURE,
        classes=classes,
        input_size=input_size,
        crop_size=crop_size,
        normalisation=normalisation or Normalisation(),
        architecture_options={"head_hidden": None, "dropout": 0.0},
        training={
            "imported_from": "pytorch",
            "class_order": "legacy" if classes == LEGACY_MODEL_CLASSES else "given",
            "tensors": len(state),
        },
        library_versions=library_versions(),
        weights_sha256="0" * 64,  # filled in by save_model
        source=f"{checkpoint_path.resolve()} (sha256 {file_sha256(checkpoint_path)})",
    )
    return save_model(dict(network.state_dict()), card, out_folder)
