import pytest
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss

from basicsr_lmar.losses.lmar_loss import (AttentionTransferLoss, FeatureEdgeLoss, ResamplingConsistencyLoss,
                                           scharr_edges, spatial_attention)
from basicsr_lmar.ops.resize import resize
from basicsr_lmar.options import OptionError


def test_resampling_consistency_resizes_then_smooth_l1():
    torch.manual_seed(0)
    target = torch.randn(2, 4, 8, 10)
    pred = torch.randn(2, 4, 4, 5)
    loss = build_loss({'type': 'ResamplingConsistencyLoss', 'loss_weight': 2.0})
    expected = 2.0 * F.smooth_l1_loss(resize(pred, (8, 10), 'lanczos3', antialias=False), target)
    torch.testing.assert_close(loss(pred, target), expected)
    assert loss(target, target).item() == 0


def test_attention_transfer_matches_definition_and_ignores_scale():
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 5, 6, 6), torch.randn(2, 5, 6, 6)
    att = (teacher**2).mean(1).flatten(1)
    torch.testing.assert_close(spatial_attention(teacher), att / att.norm(dim=1, keepdim=True))
    mse = AttentionTransferLoss(loss_weight=5000)
    expected = 5000 * (spatial_attention(student) - spatial_attention(teacher)).pow(2).mean()
    torch.testing.assert_close(mse(student, teacher), expected)
    # the maps are normalised: a global rescaling of one feature changes nothing
    torch.testing.assert_close(mse(3 * teacher, teacher), torch.tensor(0.), atol=1e-6, rtol=0)
    paper = AttentionTransferLoss(criterion='l2')
    diff = spatial_attention(student) - spatial_attention(teacher)
    torch.testing.assert_close(paper(student, teacher), diff.norm(dim=1).mean())


def test_scharr_edges_on_a_step():
    image = torch.zeros(1, 3, 6, 6)
    image[..., 3:] = 1.0  # vertical edge between columns 2 and 3
    edges = scharr_edges(image)
    assert edges[0, 0, :, 0].abs().max() == 0  # flat far from the edge
    assert edges[0, 0, 2, 2] == pytest.approx(0.5)  # |g_x| clamped to 255 -> (1 + 0) / 2
    assert edges[0, 0, 2, 3] == pytest.approx(0.5)


def test_feature_edge_loss_weights_by_edges():
    image = torch.zeros(1, 3, 16, 16)
    pred, target = torch.ones(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    assert FeatureEdgeLoss()(pred, target, image).item() == 0  # no edges -> no loss
    image[..., 8:] = 1.0
    assert FeatureEdgeLoss()(pred, target, image).item() > 0


def test_losses_go_down_when_optimised():
    torch.manual_seed(2)
    target = torch.randn(1, 4, 8, 8)
    pred = torch.randn(1, 4, 4, 4, requires_grad=True)
    loss_rc, loss_at = ResamplingConsistencyLoss(), AttentionTransferLoss(loss_weight=100)
    optimiser = torch.optim.Adam([pred], lr=0.05)
    first = None
    for _ in range(30):
        optimiser.zero_grad()
        loss = loss_rc(pred, target) + loss_at(pred, target)
        loss.backward()
        optimiser.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.7 * first


def test_option_errors_name_the_key():
    with pytest.raises(OptionError, match='criterion'):
        AttentionTransferLoss(criterion='l1')
    with pytest.raises(OptionError, match='beta'):
        ResamplingConsistencyLoss(beta=0)
    with pytest.raises(OptionError, match='resize_kernel'):
        FeatureEdgeLoss(resize_kernel='cubic3')


def test_resize_options_act_over_the_callers_upscale():
    """U: the loss's own resize_kernel/antialias where set, else the caller's (LMARModel: the resizer of
    the iteration), else lanczos3 without antialiasing."""
    torch.manual_seed(3)
    target, pred = torch.randn(1, 2, 12, 12), torch.randn(1, 2, 5, 5)
    caller = {'kernel': 'nearest', 'antialias': False, 'boundary': 'replicate'}

    def rc(kernel, antialias=False, boundary='constant'):
        return F.smooth_l1_loss(resize(pred, (12, 12), kernel, antialias, boundary), target)

    torch.testing.assert_close(ResamplingConsistencyLoss()(pred, target, caller), rc('nearest', boundary='replicate'))
    torch.testing.assert_close(ResamplingConsistencyLoss(resize_kernel='bilinear')(pred, target, caller),
                               rc('bilinear', boundary='replicate'))
    torch.testing.assert_close(ResamplingConsistencyLoss(resize_kernel='bicubic', antialias=True)(pred, target),
                               rc('bicubic', antialias=True))
    torch.testing.assert_close(ResamplingConsistencyLoss()(pred, target), rc('lanczos3'))
    expected = spatial_attention(resize(pred, (12, 12), 'bilinear', False, 'replicate'))
    expected = (expected - spatial_attention(target)).pow(2).mean()
    torch.testing.assert_close(AttentionTransferLoss(resize_kernel='bilinear')(pred, target, caller), expected)
    image = torch.rand(1, 3, 24, 24)
    assert FeatureEdgeLoss(resize_kernel='nearest')(pred, target, image, caller) != FeatureEdgeLoss()(
        pred, target, image, {'kernel': 'bicubic'})
