import math

import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from basicsr_lmar.losses.car_loss import CAROffsetLoss, PartialTVLoss, centre_distance_weights
from basicsr_lmar.options import OptionError


def test_centre_distance_weights():
    w = centre_distance_weights(7).view(7, 7)
    assert w[3, 3] == 0
    torch.testing.assert_close(w[0, 0], torch.tensor(math.sqrt(18) / math.sqrt(49.0)))
    torch.testing.assert_close(w[3, 6], torch.tensor(3 / 7.0))


def test_offset_loss_on_hand_made_maps():
    loss = LOSS_REGISTRY.get('CAROffsetLoss')(loss_weight=2.0, gamma=1.0, eps=0.0)
    offsets_h = torch.zeros(2, 49, 3, 4)
    offsets_v = torch.zeros(2, 49, 3, 4)
    assert loss(offsets_h, offsets_v) == 0
    # Centre element moved by (0.3, 0.4) at one of the 24 kernels: (1 + 0) * 0.5 / 24, times loss_weight 2.
    offsets_h[0, 24, 1, 2], offsets_v[0, 24, 1, 2] = 0.3, 0.4
    torch.testing.assert_close(loss(offsets_h, offsets_v), torch.tensor(2 * 0.5 / 24))
    # The corner element costs (1 + w) with w = sqrt(18)/7.
    offsets_h.zero_(), offsets_v.zero_()
    offsets_h[1, 0, 0, 0] = -1.0
    torch.testing.assert_close(loss(offsets_h, offsets_v), torch.tensor(2 * (1 + math.sqrt(18) / 7) / 24))


def test_offset_loss_gradient_finite_at_zero_and_shape_errors():
    offsets = torch.zeros(1, 9, 2, 2, requires_grad=True)
    CAROffsetLoss()(offsets, offsets).backward()
    assert torch.isfinite(offsets.grad).all()
    with pytest.raises(ValueError, match='not a square'):
        CAROffsetLoss()(torch.zeros(1, 8, 2, 2), torch.zeros(1, 8, 2, 2))
    with pytest.raises(ValueError, match='share one shape'):
        CAROffsetLoss()(torch.zeros(1, 9, 2, 2), torch.zeros(1, 9, 2, 3))
    with pytest.raises(OptionError, match='gamma'):
        CAROffsetLoss(gamma=-1.0)


def test_partial_tv_on_hand_made_maps():
    loss = LOSS_REGISTRY.get('PartialTVLoss')(loss_weight=1.0)
    kernels = torch.zeros(1, 9, 3, 3)
    kernels[:, 4] = 1.0  # all weight on the centre element
    offsets_h = torch.zeros(1, 9, 3, 3)
    offsets_v = torch.zeros(1, 9, 3, 3)
    # Horizontal offsets varying horizontally and vertical offsets varying vertically cost nothing.
    offsets_h[:, 4] = torch.tensor([0.0, 0.5, 1.0]).view(1, 3)
    offsets_v[:, 4] = torch.tensor([0.0, 0.5, 1.0]).view(3, 1)
    assert loss(kernels, offsets_h, offsets_v) == 0
    # Horizontal offsets varying vertically: |0.5| steps on 2x3 vertical pairs -> mean 0.5; likewise the other.
    offsets_h[:, 4] = torch.tensor([0.0, 0.5, 1.0]).view(3, 1)
    torch.testing.assert_close(loss(kernels, offsets_h, offsets_v), torch.tensor(0.5))
    offsets_v[:, 4] = torch.tensor([0.0, -0.5, 0.5]).view(1, 3)
    torch.testing.assert_close(loss(kernels, offsets_h, offsets_v), torch.tensor(0.5 + (0.5 + 1.0) / 2))
    # Variation on an element with zero kernel weight is free.
    offsets_h[:, 0] = torch.rand(3, 3)
    torch.testing.assert_close(loss(kernels, offsets_h, offsets_v), torch.tensor(1.25))


def test_partial_tv_is_non_negative_for_signed_kernels():
    loss = PartialTVLoss(loss_weight=1.0)
    kernels = torch.zeros(1, 9, 3, 3)
    kernels[:, 4], kernels[:, 0] = 2.0, -1.0  # a signed kernel: sums to 1, one negative lobe
    offsets_h = torch.zeros(1, 9, 3, 3)
    offsets_h[:, 0] = torch.tensor([0.0, 0.5, 1.0]).view(3, 1)  # varies vertically on the negative element
    value = loss(kernels, offsets_h, torch.zeros_like(offsets_h))
    torch.testing.assert_close(value, torch.tensor(0.5))  # |-1| * 0.5, not -0.5
    assert loss(kernels.abs(), offsets_h, torch.zeros_like(offsets_h)) == value
