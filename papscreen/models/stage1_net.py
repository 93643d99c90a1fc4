"""The stage-1 network: the original project's small cell-versus-background CNN, in PyTorch.

Architecture (input 20x20 RGB): Conv 10 filters 10x10 -> ReLU -> MaxPool 2 -> Dropout 0.3 -> Flatten (250)
-> Dense 16 -> Dense 2 (softmax). The original's Dense 16 activation is kept as an option (``relu`` by
default; ``linear`` when an imported Keras model had none).

The same weights run *densely* over a whole field: the Dense layers are convolutions in disguise
(Dense 250->16 is a 5x5 convolution over the 10-channel pooled map, Dense 16->2 a 1x1 convolution), so one
pass over an HxW image gives the logits of every 20x20 window whose top-left corner lies on a stride-2 grid.
Weights are stored once (``fc1``/``fc2``, flattened in PyTorch's channel-height-width order) and reshaped
on the fly, so the per-window and dense paths can never disagree.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DENSE_STRIDE", "INPUT_PX", "Stage1Net"]

INPUT_PX = 20
DENSE_STRIDE = 2
"""Distance, in working-scale pixels, between neighbouring windows of one dense pass (the pooling stride)."""

DenseActivation = Literal["relu", "linear"]


class Stage1Net(nn.Module):
    """Cell-versus-background classifier of 20x20 patches; class 1 is *cell*.

    Examples:
        >>> net = Stage1Net().eval()
        >>> net(torch.zeros(2, 3, 20, 20)).shape
        torch.Size([2, 2])
        >>> net.dense_logits(torch.zeros(1, 3, 40, 60)).shape  # windows at x = 0, 2, ..., 40
        torch.Size([1, 2, 11, 21])
    """

    def __init__(self, dense_activation: DenseActivation = "relu", dropout: float = 0.3) -> None:
        super().__init__()
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

    def dense_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2, H', W') of every 20x20 window on a stride-2 grid, from one pass over (N, 3, H, W).

        Output ``[:, :, i, j]`` belongs to the window whose top-left corner is ``(2*i, 2*j)``; so
        ``H' = (H - 20) // 2 + 1``. Dropout is skipped (this is inference).
        """
        x = self.pool(F.relu(self.conv(image)))
        x = F.conv2d(x, self.fc1.weight.view(16, 10, 5, 5), self.fc1.bias)
        x = self._activate(x)
        logits = F.conv2d(x, self.fc2.weight.view(2, 16, 1, 1), self.fc2.bias)
        # Pooling drops each window's last conv row and column, so an odd-sized image yields one more
        # position whose 20th row/column lies outside; keep exactly the windows that fit.
        rows = (image.shape[-2] - INPUT_PX) // DENSE_STRIDE + 1
        cols = (image.shape[-1] - INPUT_PX) // DENSE_STRIDE + 1
        return logits[..., :rows, :cols]
