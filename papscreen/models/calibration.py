"""Temperature scaling: make a network's probabilities mean what they say, without changing its decisions.

Networks trained with cross-entropy are usually over-confident: of the patches called HSIL at 0.95, far
fewer than 95 % are. Dividing every logit by one temperature ``T`` fitted on the validation set (Guo et al.,
2017) fixes most of that; ``T > 1`` softens, ``T < 1`` sharpens. The arg-max, hence accuracy and the
confusion matrix, never changes, so calibrating is safe to apply after model selection. The fitted ``T`` is
stored in the model card (``ModelCard.temperature``) and applied at inference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TEMPERATURE_BOUNDS", "apply_temperature", "fit_temperature"]

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""Fitted temperatures are clipped to this range: beyond it the validation set is too small or degenerate
(e.g. perfectly separated, where the NLL keeps falling as ``T`` goes to 0) for the fit to mean anything."""


def _as_logits(logits: torch.Tensor | np.ndarray) -> torch.Tensor:
    z = torch.as_tensor(logits).detach().to(device="cpu", dtype=torch.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, K) with K >= 2, got {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError("logits must be finite")
    return z


def fit_temperature(
    logits: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    max_iter: int = 100,
) -> float:
    """Fit the temperature that minimises the negative log-likelihood of ``labels`` under ``logits / T``.

    The search runs over ``log T`` (so ``T`` stays positive and the problem is well scaled either side of 1)
    with L-BFGS and a strong-Wolfe line search from ``T = 1``, in float64 on the CPU: the same inputs always
    give the same ``T``. The search is confined to ``TEMPERATURE_BOUNDS``.

    Args:
        logits: validation logits (N, K), before softmax.
        labels: true class indices (N,).
        max_iter: L-BFGS iterations; one scalar converges in a handful.

    Raises:
        ValueError: shapes disagree, labels out of range, or logits not finite.

    Examples:
        >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
        >>> labels = torch.tensor([0, 1, 1, 0])  # right half the time, yet 98 % sure: far too confident
        >>> fit_temperature(logits, labels) > 10
        True
    """
    z = _as_logits(logits)
    y = torch.as_tensor(labels).detach().to(device="cpu", dtype=torch.long)
    if y.shape != (z.shape[0],) or z.shape[0] == 0:
        raise ValueError(f"labels must have shape ({z.shape[0]},) and at least one sample, got {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be class indices 0..{z.shape[1] - 1}")

    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.clamp(low, high).exp(), y)  # flat beyond the bounds: L-BFGS stops
        loss.backward()
        return loss

    optimizer.step(closure)
    return math.exp(min(max(float(log_t.detach()), low), high))


def apply_temperature(logits: torch.Tensor | np.ndarray, temperature: float) -> torch.Tensor:
    """Calibrated probabilities ``softmax(logits / T)`` (float32, on the logits' device for a tensor).

    Examples:
        >>> apply_temperature(torch.tensor([[2.0, 0.0]]), 2.0)
        tensor([[0.7311, 0.2689]])
    """
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    z = torch.as_tensor(logits)
    return torch.softmax(z.to(torch.float32) / temperature, dim=-1)
