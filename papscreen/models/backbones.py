"""Stage-2 networks: plain torchvision models whose last classifier layer is replaced by a Bethesda head.

The networks stay torchvision's own classes, so their state dicts keep torchvision's keys (``fc.weight`` for a
ResNet, ``classifier.3.weight`` for MobileNetV3, ``classifier.1.weight`` for EfficientNet): a checkpoint of
the original project, or ImageNet weights, load without renaming. The head is either one ``Linear`` or, with
``head_hidden``, ``Sequential(Linear, ReLU, Dropout, Linear)``; with ``dropout`` alone a ResNet head is
``Sequential(Dropout, Linear)``. The card records ``head_hidden`` and ``dropout``, so the same network (and the
same keys) is rebuilt on load.

ImageNet weights are never downloaded: they come from a file that was put on the machine by hand, either
given as a path or found in torch hub's cache (``torch.hub.get_dir()/checkpoints/<file name>``, where
``torchvision`` itself would have saved them). A missing file raises
:class:`~papscreen.errors.PretrainedWeightsMissingError`, which says which file to copy where.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn
from torchvision import models

from papscreen.errors import CheckpointError, PretrainedWeightsMissingError

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "build_stage2_network",
    "head_prefix",
    "imagenet_weight_files",
    "load_pretrained_state_dict",
    "split_feature_extractor",
]

Architecture = Literal["resnet50", "resnet18", "mobilenet_v3_large", "efficientnet_b0", "resnet18_half"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)

_HEAD_PREFIX: Mapping[str, str] = {
    "resnet50": "fc",
    "resnet18": "fc",
    "mobilenet_v3_large": "classifier.3",
    "efficientnet_b0": "classifier.1",
    "resnet18_half": "fc",
}
"""Where the last classifier layer of each architecture sits (its state-dict prefix)."""

_WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")


class HalfResNet18(models.ResNet):
    """ResNet18 at half width (32-256 channels, 2.8M parameters) with a gentle stem, for small crops on CPUs.

    No ImageNet weights exist for it: it is meant to be trained from scratch on nucleus crops of 64-96 px, where
    ResNet18's 7x7 stride-2 stem and max pool would leave layer4 a 2x2 map. Here the stem is one 3x3 stride-2
    convolution (no max pool), so a 64 px crop reaches layer4 at 4x4; training is about as fast as ResNet18 at
    the same input, and the weights are a quarter of the size (11 MB in fp32). It keeps torchvision's ResNet
    attribute names (``conv1`` ... ``layer4``, ``fc``), so feature splitting and int8 quantization treat it as
    any ResNet.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        """Build it randomly initialised, as torchvision builds a ResNet."""
        super().__init__(models.resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        widths = (32, 64, 128, 256)
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.Identity()  # type: ignore[assignment]  # torchvision types it as MaxPool2d
        self.layer1 = self._make_layer(models.resnet.BasicBlock, widths[0], 2)
        self.layer2 = self._make_layer(models.resnet.BasicBlock, widths[1], 2, stride=2)
        self.layer3 = self._make_layer(models.resnet.BasicBlock, widths[2], 2, stride=2)
        self.layer4 = self._make_layer(models.resnet.BasicBlock, widths[3], 2, stride=2)
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


_NO_IMAGENET_WEIGHTS = frozenset({"resnet18_half"})


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown stage-2 architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")


def head_prefix(architecture: str) -> str:
    """State-dict prefix of the replaced classifier layer: ``fc`` for ResNets, ``classifier.N`` otherwise.

    Examples:
        >>> head_prefix("resnet50"), head_prefix("efficientnet_b0")
        ('fc', 'classifier.1')
    """
    _check_architecture(architecture)
    return _HEAD_PREFIX[architecture]


def imagenet_weight_files(architecture: str) -> tuple[tuple[Path, str], ...]:
    """Where torch hub's cache would hold each ImageNet weights file of ``architecture``, with its URL.

    The first entry is torchvision's ``DEFAULT`` weights; older versions (such as ResNet50's ``IMAGENET1K_V1``,
    which ``pretrained=True`` used to load) follow. Nothing is downloaded: this only names files.

    Examples:
        >>> path, url = imagenet_weight_files("resnet18")[0]
        >>> path.name, url.endswith(path.name)
        ('resnet18-f37072fd.pth', True)
    """
    _check_architecture(architecture)
    if architecture in _NO_IMAGENET_WEIGHTS:
        raise ValueError(f"no ImageNet weights exist for {architecture}: it trains from random initialisation")
    enum = models.get_model_weights(architecture)
    ordered = [enum.DEFAULT, *(w for w in enum if w is not enum.DEFAULT)]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return tuple((folder / w.url.rsplit("/", 1)[-1], w.url) for w in ordered)


def _resolve_pretrained(architecture: str, pretrained: Path | Literal["auto"]) -> Path:
    """The weights file to load; raises PretrainedWeightsMissingError naming where it was expected."""
    candidates = imagenet_weight_files(architecture)
    if pretrained == "auto":
        for path, _ in candidates:
            if path.is_file():
                return path
        expected, url = candidates[0]
        raise PretrainedWeightsMissingError(expected, architecture, url)
    path = Path(pretrained)
    if not path.is_file():
        raise PretrainedWeightsMissingError(path, architecture, candidates[0][1])
    return path


def load_pretrained_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``, unwrapping ``{"state_dict": ...}`` and the like.

    ``weights_only=True`` refuses any pickled object that is not a tensor or a plain container, so a file that
    would run code on load is rejected instead of executed.

    Raises:
        CheckpointError: unreadable file, a pickle with arbitrary objects, or no state dict inside; names the file.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(path, "no such file") from e
    except pickle.UnpicklingError as e:
        culprit = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line), "")
        if not culprit:  # not a refused object: bytes that are no pickle at all ("Unsupported operand", ...)
            detail = next((line.strip() for line in str(e).splitlines() if line.startswith("Unsupported")), "")
            raise CheckpointError(path, f"not a readable PyTorch checkpoint ({detail or 'not a pickle'})") from e
        raise CheckpointError(
            path,
            "refused: the file holds pickled Python objects besides tensors, and loading them could run code"
            f"{' (' + culprit + ')' if culprit else ''}; re-save only the weights with "
            "torch.save({'model_state_dict': model.state_dict()}, path) where the original code runs",
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        # torch's restricted unpickler fails on arbitrary bytes with any of these
        raise CheckpointError(path, f"not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    for key in _WRAPPER_KEYS:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(path, "does not hold a state dict (a mapping of parameter names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in loaded.items()}


def _head(in_features: int, num_classes: int, head_hidden: int | None, dropout: float) -> nn.Module:
    if head_hidden is not None:
        return nn.Sequential(
            nn.Linear(in_features, head_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, num_classes),
        )
    return nn.Linear(in_features, num_classes)


def _load_backbone_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path, prefix: str) -> None:
    """Load every weight except the ImageNet classifier's, which the Bethesda head replaces."""
    backbone = {k: v for k, v in state_dict.items() if not k.startswith(prefix + ".")}
    own = model.state_dict()
    shapes = [k for k, v in backbone.items() if k in own and own[k].shape != v.shape]
    if shapes:
        raise CheckpointError(
            path,
            f"weights do not fit this architecture: {shapes[0]} is {tuple(backbone[shapes[0]].shape)}, "
            f"expected {tuple(own[shapes[0]].shape)}",
        )
    result = model.load_state_dict(backbone, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(prefix + ".")]
    if missing or result.unexpected_keys:
        what = f"missing {missing[:3]}" if missing else f"unexpected {result.unexpected_keys[:3]}"
        raise CheckpointError(path, f"weights are not for this architecture ({what})")


def build_stage2_network(
    architecture: Architecture,
    num_classes: int = 4,
    *,
    pretrained: Path | Literal["auto"] | None = None,
    head_hidden: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """A torchvision classifier with a ``num_classes`` head, optionally started from local ImageNet weights.

    Args:
        architecture: one of ``ARCHITECTURES``.
        num_classes: outputs of the new head.
        pretrained: ``None`` for random initialisation, a path to a torchvision state dict, or ``"auto"`` for
            torch hub's cache. Never downloads.
        head_hidden: width of a hidden layer in the head; ``None`` for a single linear layer.
        dropout: dropout before the last linear layer (ResNets get ``Sequential(Dropout, Linear)`` when there
            is no hidden layer; MobileNet and EfficientNet already have a dropout there).

    Returns:
        The network in training mode, on the CPU.

    Raises:
        PretrainedWeightsMissingError: weights asked for but absent; names the expected file.
        CheckpointError: the weights file is unreadable or for another architecture.

    Examples:
        >>> net = build_stage2_network("resnet18")
        >>> net(torch.zeros(1, 3, 64, 64)).shape, tuple(net.state_dict()["fc.weight"].shape)
        (torch.Size([1, 4]), (4, 512))
        >>> build_stage2_network("resnet18", head_hidden=32).fc
        Sequential(
          (0): Linear(in_features=512, out_features=32, bias=True)
          (1): ReLU(inplace=True)
          (2): Dropout(p=0.0, inplace=False)
          (3): Linear(in_features=32, out_features=4, bias=True)
        )
    """
    _check_architecture(architecture)
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, not {num_classes}")
    if head_hidden is not None and head_hidden < 1:
        raise ValueError(f"head_hidden must be a positive width or None, not {head_hidden}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), not {dropout}")
    if architecture == "resnet18_half":
        model: nn.Module = HalfResNet18()
    elif architecture.startswith("resnet"):
        model = models.get_model(architecture, weights=None)
    else:
        model = models.get_model(architecture, weights=None, dropout=dropout)
    prefix = _HEAD_PREFIX[architecture]
    if pretrained is not None:
        path = _resolve_pretrained(architecture, pretrained)
        _load_backbone_weights(model, load_pretrained_state_dict(path), path, prefix)
    last = model.get_submodule(prefix)
    head = _head(last.in_features, num_classes, head_hidden, dropout)
    if architecture.startswith("resnet") and head_hidden is None and dropout > 0:
        head = nn.Sequential(nn.Dropout(dropout), head)
    model.set_submodule(prefix, head)
    return model


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


def split_feature_extractor(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Split a stage-2 network into (features, head) sharing its modules, so ``head(features(x)) == model(x)``.

    Frozen-backbone training computes ``features`` once per image and trains only ``head``; since the modules
    are shared, the trained head is already part of ``model`` afterwards. The head is ``fc`` for a ResNet and
    the whole ``classifier`` for MobileNetV3 and EfficientNet (MobileNetV3's has a hidden layer of its own).

    Examples:
        >>> net = build_stage2_network("resnet18").eval()
        >>> features, head = split_feature_extractor(net)
        >>> x = torch.zeros(2, 3, 64, 64)
        >>> features(x).shape, bool(torch.equal(head(features(x)), net(x)))
        (torch.Size([2, 512]), True)
    """
    if isinstance(model, models.ResNet):
        stem = [model.conv1, model.bn1, model.relu, model.maxpool]
        layers = [model.layer1, model.layer2, model.layer3, model.layer4]
        return nn.Sequential(*stem, *layers, model.avgpool, _Flatten()), model.fc
    if isinstance(model, models.MobileNetV3 | models.EfficientNet):
        return nn.Sequential(model.features, model.avgpool, _Flatten()), model.classifier
    raise TypeError(f"cannot split a {type(model).__name__}; expected a network from build_stage2_network")
