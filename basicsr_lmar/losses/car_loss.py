"""Offset regularisers of CAR (Sun & Chen, TIP 2020, eqs 9-11).

Both take the maps of :class:`basicsr_lmar.archs.car_arch.CARResamplerNet`, shaped (N, k*k, h, w) with
kernel element ``e = i*k + j`` (row i, column j); offsets are in the network's units (multiples of the
scale, in (-1, 1)). The total CAR objective is ``L1 + lambda * L_offset + gamma_tv * L_TV``.
"""
import math

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from basicsr_lmar.options import Option, configurable


def _kernel_size(maps, owner):
    if maps.dim() != 4:
        raise ValueError(f'{owner}: expected (N, k*k, h, w) maps, got shape {tuple(maps.shape)}')
    k = int(round(maps.shape[1]**0.5))
    if k * k != maps.shape[1]:
        raise ValueError(f'{owner}: {maps.shape[1]} channels in shape {tuple(maps.shape)} is not a square k*k')
    return k


def _same_shape(owner, **maps):
    shapes = {name: tuple(t.shape) for name, t in maps.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f'{owner}: maps must share one shape, got {shapes}')


def centre_distance_weights(k, dtype=None, device=None):
    """w(i, j) = sqrt((i - c)^2 + (j - c)^2) / sqrt(k^2/2 + k^2/2), c = (k - 1)/2, as a (k*k,) vector."""
    index = torch.arange(k, dtype=dtype or torch.float32, device=device) - (k - 1) / 2
    distance = (index.view(k, 1)**2 + index.view(1, k)**2).sqrt()
    return (distance / math.sqrt(k * k / 2 + k * k / 2)).flatten()


@LOSS_REGISTRY.register()
@configurable(loss_weight=Option(min=0.0), gamma=Option(min=0.0), eps=Option(min=0.0))
class CAROffsetLoss(nn.Module):
    """Offset-length penalty, eq 9 averaged over kernels (the L-bar_offset of eq 11).

    ``L = mean over kernels (N, y, x) of sum_(i,j) (gamma + w(i, j)) * sqrt(dX_ij^2 + dY_ij^2 + eps)``
    where ``w(i, j)`` is the element's distance from the kernel centre normalised by
    ``sqrt(m^2/2 + n^2/2)`` (m = n = k). The printed eq 9 is garbled by extraction; this is the reading
    where the regulator gamma (1 in the paper) keeps the centre element regularised too and elements far
    from the centre are penalised more: the weight is ``gamma + w``. The centre is the geometric centre
    ``(k - 1)/2`` of 0-based indices, so the centre element has ``w = 0``. ``eps`` keeps the gradient
    finite at zero offsets.

    Args:
        loss_weight: lambda, the weight of this term in the total loss.
        gamma: the regulator gamma (1.0).
        eps: added under the square root (1e-8).
    """

    def __init__(self, loss_weight=1.0, gamma=1.0, eps=1e-8):
        super().__init__()
        self.loss_weight = loss_weight
        self.gamma = gamma
        self.eps = eps

    def forward(self, offsets_h, offsets_v):
        k = _kernel_size(offsets_h, 'CAROffsetLoss')
        _same_shape('CAROffsetLoss', offsets_h=offsets_h, offsets_v=offsets_v)
        weights = self.gamma + centre_distance_weights(k, offsets_h.dtype, offsets_h.device).view(1, -1, 1, 1)
        length = (offsets_h.square() + offsets_v.square() + self.eps).sqrt()
        return self.loss_weight * (weights * length).sum(1).mean()


@LOSS_REGISTRY.register()
@configurable(loss_weight=Option(min=0.0))
class PartialTVLoss(nn.Module):
    """Partial total variation of the offsets, eq 10, weighted by the kernel weights.

    Horizontal offsets are penalised for varying vertically and vertical offsets for varying
    horizontally: ``K_e(y, x) * |dX_e(y + 1, x) - dX_e(y, x)|`` and ``K_e(y, x) * |dY_e(y, x + 1) - dY_e(y, x)|``,
    summed over the kernel elements e and averaged over the positions where each difference exists.
    The kernel weights are not detached (literal reading of eq 10). They enter as ``|K_e|``: equal to K for
    the paper's kernels (clamped to be positive), and it keeps the term non-negative for signed kernels
    (``CARResamplerNet(signed_kernels=True)``), where ``K_e`` times the variation is unbounded below (a joint
    run drove the loss to -8.7e4 within 600 iterations).

    Args:
        loss_weight: gamma_tv, the weight of this term in the total loss.
    """

    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, kernels, offsets_h, offsets_v):
        _kernel_size(kernels, 'PartialTVLoss')
        _same_shape('PartialTVLoss', kernels=kernels, offsets_h=offsets_h, offsets_v=offsets_v)
        zero = kernels.new_zeros(())
        kernels = kernels.abs()
        vertical = (kernels[:, :, :-1] * (offsets_h[:, :, 1:] - offsets_h[:, :, :-1]).abs()).sum(1).mean() \
            if kernels.shape[2] > 1 else zero
        horizontal = (kernels[..., :-1] * (offsets_v[..., 1:] - offsets_v[..., :-1]).abs()).sum(1).mean() \
            if kernels.shape[3] > 1 else zero
        return self.loss_weight * (vertical + horizontal)
