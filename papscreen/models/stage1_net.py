"""The stage-1 network: the original project's small cell-versus-background CNN, in PyTorch.

Architecture (input 20x20 RGB): Conv 10 filters 10x10 -> ReLU -> MaxPool 2 -> Dropout 0.3 -> Flatten (250)
-> Dense 16 -> Dense 2 (softmax). The original's Dense 16 activation is kept as an option (``relu`` by
default; ``linear`` when an imported Keras model had none).

The same weights run *densely* over a whole field: the Dense layers are convolutions in disguise
(Dense 250->16 is a 5x5 convolution over the 10-channel pooled map, Dense 16->2 a 1x1 convolution), so one
pass over an HxW image gives the logits of every 20x20 window whose top-left corner lies on a stride-2 grid.
Weights are stored once (``fc1``/``fc2``, flattened in PyTorch's channel-height-width order) and reshaped
on the fly, so the per-window and dense paths can never disagree.

A stride-1 map (a window at *every* top-left corner) comes from the same weights without four shifted passes
("shift and stitch"): pooling with stride 1 and the layers after it dilated by 2 (the *a trous* trick) compute
exactly the four interleaved stride-2 maps, for about half the cost of four passes.

:class:`Stage1NetPlus` (``cnn20plus``) is a stronger variant with the same contract (20x20 receptive field, one
pooling of stride 2, exactly fully convolutional): four 3x3 convolutions with batch normalisation, folded into the
convolutions for inference. :func:`build_stage1_network` builds either by name.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "DENSE_STRIDE",
    "INPUT_PX",
    "STAGE1_ARCHITECTURES",
    "Stage1Net",
    "Stage1NetPlus",
    "build_stage1_network",
    "stage1_network_options",
]

INPUT_PX = 20
DENSE_STRIDE = 2
"""Distance, in working-scale pixels, between neighbouring windows of one dense pass (the pooling stride)."""

DenseActivation = Literal["relu", "linear"]
DenseStride = Literal[1, 2]


def _check_stride(stride: int) -> None:
    if stride not in (1, 2):
        raise ValueError(f"a stage-1 dense map has stride 1 or 2, not {stride}")


def _window_count(size: int, stride: int) -> int:
    """Windows of ``INPUT_PX`` that fit in ``size`` pixels with their corners ``stride`` apart."""
    return (size - INPUT_PX) // stride + 1


class Stage1Net(nn.Module):
    """Cell-versus-background classifier of 20x20 patches; class 1 is *cell*.

    Examples:
        >>> net = Stage1Net().eval()
        >>> net(torch.zeros(2, 3, 20, 20)).shape
        torch.Size([2, 2])
        >>> net.dense_logits(torch.zeros(1, 3, 40, 60)).shape  # windows at x = 0, 2, ..., 40
        torch.Size([1, 2, 11, 21])
    """

    architecture = "cnn20"

    def __init__(self, dense_activation: DenseActivation = "relu", dropout: float = 0.3) -> None:
        super().__init__()
        if dense_activation not in ("relu", "linear"):
            raise ValueError(f"dense_activation must be 'relu' or 'linear', not {dense_activation!r}")
        self.dense_activation = dense_activation
        self.conv = nn.Conv2d(3, 10, kernel_size=10)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(10 * 5 * 5, 16)
        self.fc2 = nn.Linear(16, 2)

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.dense_activation == "relu" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2) of N 20x20 patches, normalised RGB (N, 3, 20, 20)."""
        x = self.dropout(self.pool(F.relu(self.conv(x))))
        x = self._activate(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)

    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this network (they go into a model card)."""
        return {"dense_activation": self.dense_activation, "dropout": float(self.dropout.p)}

    def dense_logits(self, image: torch.Tensor, stride: DenseStride = DENSE_STRIDE) -> torch.Tensor:
        """Logits (N, 2, H', W') of every 20x20 window on a stride-2 (or 1) grid, from one pass over (N, 3, H, W).

        Output ``[:, :, i, j]`` belongs to the window whose top-left corner is ``(stride*i, stride*j)``; so
        ``H' = (H - 20) // stride + 1``. Dropout is skipped (this is inference).

        Examples:
            >>> net = Stage1Net().eval()
            >>> net.dense_logits(torch.zeros(1, 3, 40, 60), stride=1).shape
            torch.Size([1, 2, 21, 41])
        """
        _check_stride(stride)
        dilation = 2 if stride == 1 else 1
        x = F.max_pool2d(F.relu(self.conv(image)), 2, stride=2 if stride == 2 else 1)
        x = F.conv2d(x, self.fc1.weight.view(16, 10, 5, 5), self.fc1.bias, dilation=dilation)
        x = self._activate(x)
        logits = F.conv2d(x, self.fc2.weight.view(2, 16, 1, 1), self.fc2.bias)
        # Pooling drops each window's last conv row and column, so an odd-sized image yields one more
        # position whose 20th row/column lies outside; keep exactly the windows that fit.
        rows = _window_count(image.shape[-2], stride)
        cols = _window_count(image.shape[-1], stride)
        return logits[..., :rows, :cols]


class _ConvBlock(nn.Module):
    """A valid 3x3 convolution, batch normalisation (foldable) and ReLU, with an optional dilation at run time."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3)
        self.bn: nn.Module = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        conv = self.conv
        x = F.conv2d(x, conv.weight, conv.bias, dilation=dilation)
        return F.relu(self.bn(x))

    def fold(self) -> None:
        """Fold the (evaluation-mode) batch normalisation into the convolution; the block then has no ``bn``."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()


class Stage1NetPlus(nn.Module):
    """A stronger stage-1 classifier with the same contract as :class:`Stage1Net` (``cnn20plus``).

    Input 20x20 RGB -> 3x3 conv 16 -> 3x3 conv 32 -> MaxPool 2 -> 3x3 conv 32 -> 3x3 conv 32 (each with batch
    normalisation and ReLU, no padding) -> 4x4 conv 32 (the "dense" layer over the 4x4 map) -> ReLU -> Dropout
    -> 1x1 conv 2. Every layer is a valid convolution, so the receptive field is exactly 20x20, the output
    stride is 2 and :meth:`dense_logits` gives the logits of every window, like the original.

    Small 3x3 kernels in depth see shapes (a nucleus's round outline, its rim and texture) that a single 10x10
    filter bank at this size cannot; batch normalisation makes it train in a few epochs. It costs about three
    times the original per pixel (still a fraction of a second per field).

    Examples:
        >>> net = Stage1NetPlus().eval()
        >>> net(torch.zeros(2, 3, 20, 20)).shape
        torch.Size([2, 2])
        >>> net.dense_logits(torch.zeros(1, 3, 41, 60)).shape
        torch.Size([1, 2, 11, 21])
    """

    architecture = "cnn20plus"

    def __init__(self, width: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        if width < 2:
            raise ValueError(f"width must be at least 2, got {width}")
        self.width = width
        self.block1 = _ConvBlock(3, width // 2)
        self.block2 = _ConvBlock(width // 2, width)
        self.block3 = _ConvBlock(width, width)
        self.block4 = _ConvBlock(width, width)
        self.fc1 = nn.Conv2d(width, width, kernel_size=4)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Conv2d(width, 2, kernel_size=1)

    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this network (they go into a model card)."""
        return {"width": self.width, "dropout": float(self.dropout.p)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2) of N 20x20 patches, normalised RGB (N, 3, 20, 20)."""
        return self._logits(x, stride=DENSE_STRIDE).flatten(1)

    def dense_logits(self, image: torch.Tensor, stride: DenseStride = DENSE_STRIDE) -> torch.Tensor:
        """Logits (N, 2, H', W') of every 20x20 window on a stride-2 (or 1) grid; see :meth:`Stage1Net.dense_logits`.

        Examples:
            >>> net = Stage1NetPlus().eval()
            >>> net.dense_logits(torch.zeros(1, 3, 40, 60), stride=1).shape
            torch.Size([1, 2, 21, 41])
        """
        _check_stride(stride)
        logits = self._logits(image, stride)
        return logits[..., : _window_count(image.shape[-2], stride), : _window_count(image.shape[-1], stride)]

    def _logits(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        dilation = 2 if stride == 1 else 1
        x = self.block2(self.block1(x))
        x = F.max_pool2d(x, 2, stride=2 if stride == 2 else 1)
        x = self.block4(self.block3(x, dilation), dilation)
        x = F.relu(F.conv2d(x, self.fc1.weight, self.fc1.bias, dilation=dilation))
        return self.fc2(self.dropout(x))

    def folded(self) -> Stage1NetPlus:
        """An evaluation-mode copy with every batch normalisation folded into its convolution (same outputs).

        Examples:
            >>> net = Stage1NetPlus().eval()
            >>> x = torch.randn(1, 3, 30, 30)
            >>> bool(torch.allclose(net.dense_logits(x), net.folded().dense_logits(x), atol=1e-5))
            True
        """
        twin = copy.deepcopy(self).eval()
        for block in (twin.block1, twin.block2, twin.block3, twin.block4):
            block.fold()
        return twin


STAGE1_ARCHITECTURES: dict[str, type[nn.Module]] = {"cnn20": Stage1Net, "cnn20plus": Stage1NetPlus}
"""Stage-1 architectures by the name a model card gives them."""


def stage1_network_options(architecture: str) -> tuple[str, ...]:
    """Names of the keyword arguments an architecture takes (the rest of a card's options are the detector's).

    Examples:
        >>> stage1_network_options("cnn20")
        ('dense_activation', 'dropout')
    """
    if architecture == "cnn20":
        return ("dense_activation", "dropout")
    if architecture == "cnn20plus":
        return ("width", "dropout")
    raise ValueError(
        f"unknown stage-1 architecture {architecture!r}; expected one of {', '.join(STAGE1_ARCHITECTURES)}"
    )


def build_stage1_network(architecture: str = "cnn20", **options: Any) -> Stage1Net | Stage1NetPlus:
    """Build a stage-1 network by name: ``cnn20`` (the original) or ``cnn20plus`` (the stronger variant).

    Raises:
        ValueError: an unknown architecture or option.

    Examples:
        >>> build_stage1_network("cnn20", dense_activation="linear").dense_activation
        'linear'
        >>> build_stage1_network("cnn20plus").architecture
        'cnn20plus'
    """
    allowed = stage1_network_options(architecture)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{architecture} takes options {', '.join(allowed)}; not {', '.join(unknown)}")
    if architecture == "cnn20":
        return Stage1Net(**options)
    return Stage1NetPlus(**options)
