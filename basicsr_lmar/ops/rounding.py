"""Rounding to 8-bit levels, with and without gradients passing through.

``round_ste``: exact rounding in the forward pass, identity gradient (straight-through estimator), as
used to quantise downscaled images during training (e.g. IRN, HCD).
``soft_round``: a smooth stand-in for rounding, ``y - α sin(2π y) / (2π)`` in the integer domain
``y = x · levels``. α = 0 is the identity, α = 1 has zero slope at the integers (closest to rounding);
for 0 ≤ α ≤ 1 it is monotonic and keeps every integer level fixed.
``quantize`` / ``quantize_ste``: what a stored image needs: clamp to [0, 1], then round (without a
graph, or with the straight-through gradient, which also passes through the clamp as in the IRN and
HCD authors' ``Quantization``). ``quantize(x) * 255`` holds exact integers.
``round_soft_gradient``: exact rounding in the forward pass, the derivative of ``soft_round`` in the backward
pass (``1 - α cos(2π y)``), the quantiser of CAR training as the public MindSpore training port of CAR
implements it: the SR network trains on the 8-bit values it sees at test time.
``quantize_8bit``: the LR quantisation modes of CAR training (``round`` | ``soft`` | ``soft_ste`` | ``ste`` |
``none``).
"""
import math
import numbers

import torch


def _check_levels(levels):
    if isinstance(levels, bool) or not isinstance(levels, numbers.Real) or levels <= 0:
        raise ValueError(f'levels must be a positive number (255 for 8-bit images in [0, 1]), got {levels!r}')
    return levels


def round_ste(x: torch.Tensor, levels=255) -> torch.Tensor:
    """``round(x · levels) / levels`` in the forward pass; the gradient w.r.t. ``x`` is the identity."""
    levels = _check_levels(levels)
    rounded = torch.round(x * levels) / levels
    return x + (rounded - x).detach()


def soft_round(x: torch.Tensor, alpha=1.0, levels=255) -> torch.Tensor:
    """Soft rounding ``(y - α sin(2π y) / (2π)) / levels`` with ``y = x · levels``; differentiable.

    ``alpha`` in [0, 1] (a float, or a tensor broadcastable to ``x`` for annealing schedules).
    """
    levels = _check_levels(levels)
    if isinstance(alpha, numbers.Real) and not 0 <= alpha <= 1:
        raise ValueError(f'soft_round: alpha must be in [0, 1] (0 = identity, 1 = flat at integers), got {alpha!r}')
    y = x * levels
    return (y - alpha * torch.sin(2 * math.pi * y) / (2 * math.pi)) / levels


def round_soft_gradient(x: torch.Tensor, alpha=1.0, levels=255) -> torch.Tensor:
    """``round(x · levels) / levels`` in the forward pass; the gradient is that of :func:`soft_round`.

    The forward value is exactly the hard-rounded one, so nothing that rounding removes (the fraction of a
    level) can carry information in training that is gone at test time; the backward pass sees the smooth
    stand-in, ``1 - α cos(2π y)`` per element with ``y = x · levels`` (mean 1 over a level).
    """
    soft = soft_round(x, alpha, levels)
    return soft + (torch.round(x * levels) / levels - soft).detach()


def quantize(x: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """Clamps to [0, 1] and rounds to multiples of 1/levels. Not differentiable (zero gradient)."""
    return torch.round(x.clamp(0, 1) * levels) / levels


def quantize_ste(x: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """:func:`quantize` in the forward pass, identity gradient in the backward pass."""
    _check_levels(levels)
    return x + (quantize(x, levels) - x).detach()


QUANTIZE_MODES = ('round', 'soft', 'soft_ste', 'ste', 'none')


def quantize_8bit(x: torch.Tensor, mode: str, alpha=1.0) -> torch.Tensor:
    """Values on the 8-bit grid: ``round`` (hard, test time), ``soft`` (:func:`soft_round` with ``alpha``:
    smooth values, off the grid), ``soft_ste`` (:func:`round_soft_gradient` with ``alpha``: rounded values,
    soft-rounding gradient), ``ste`` (:func:`round_ste`: rounded values, identity gradient) or ``none``
    (unchanged). The input is not clamped."""
    if mode == 'round':
        return torch.round(x * 255.0) / 255.0
    if mode == 'soft':
        return soft_round(x, alpha)
    if mode == 'soft_ste':
        return round_soft_gradient(x, alpha)
    if mode == 'ste':
        return round_ste(x)
    if mode == 'none':
        return x
    raise ValueError(f'quantize_8bit: mode must be one of {QUANTIZE_MODES}, got {mode!r}')


def check_rounding(rounding, owner):
    """Raises ``ValueError`` (naming ``owner``) unless ``rounding`` is None or one of :data:`QUANTIZE_MODES`."""
    if rounding is not None and rounding not in QUANTIZE_MODES:
        raise ValueError(f'{owner}: rounding {rounding!r} must be None or one of {QUANTIZE_MODES}')


def quantize_lr(lr, rounding, alpha=1.0):
    """A downscaler's LR as stored: ``None`` leaves ``lr`` as it is (raw, differentiable, unclamped), a mode
    clamps it to [0, 1] and applies :func:`quantize_8bit`."""
    return lr if rounding is None else quantize_8bit(lr.clamp(0, 1), rounding, alpha)
