import pytest
import torch
from torch.nn import functional as F

from basicsr_lmar.ops import frozen_conv
from basicsr_lmar.ops.frozen_conv import NARROW_OUTPUT_CHANNELS, conv2d_frozen


def _uses_fast_path(output):
    return type(output.grad_fn).__name__ == '_FrozenConvInputGradBackward'


@pytest.mark.parametrize('in_ch, out_ch, kernel, padding', [(37, 3, 3, 1), (11, 9, 3, 1), (8, 2, 5, 2), (6, 3, 3, 0),
                                                            (5, 4, (3, 5), (1, 0)), (4, 3, 3, 2)])
def test_input_gradient_equals_autograd(in_ch, out_ch, kernel, padding):
    torch.manual_seed(0)
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(2, in_ch, 13, 17, requires_grad=True)
    weight, bias = torch.randn(out_ch, in_ch, *kernel), torch.randn(out_ch)
    out = conv2d_frozen(x, weight, bias, padding=padding)
    assert _uses_fast_path(out)
    reference = F.conv2d(x, weight, bias, padding=padding)
    torch.testing.assert_close(out, reference, rtol=0, atol=0)  # the forward is F.conv2d itself
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * upstream).sum(), x)
    (grad_reference,) = torch.autograd.grad((reference * upstream).sum(), x)
    torch.testing.assert_close(grad, grad_reference, rtol=1e-5, atol=1e-5)


def test_gradcheck_float64():
    x = torch.randn(1, 6, 7, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 6, 3, 3, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    assert _uses_fast_path(conv2d_frozen(x, weight, bias, padding=1))
    assert torch.autograd.gradcheck(lambda t: conv2d_frozen(t, weight, bias, padding=1), (x, ))
    assert torch.autograd.gradcheck(lambda t: conv2d_frozen(t, weight, None, padding=0), (x, ))


def test_reference_path_when_weights_train_or_output_is_wide():
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    trained = torch.randn(3, 4, 3, 3, requires_grad=True)
    out = conv2d_frozen(x, trained, None, padding=1)
    assert not _uses_fast_path(out)
    out.sum().backward()
    assert trained.grad is not None and trained.grad.abs().sum() > 0  # training still gets weight gradients
    trained_bias = torch.zeros(3, requires_grad=True)
    assert not _uses_fast_path(conv2d_frozen(x, trained.detach(), trained_bias, padding=1))
    wide = torch.randn(NARROW_OUTPUT_CHANNELS, 4, 3, 3)
    assert not _uses_fast_path(conv2d_frozen(x, wide, None, padding=1))
    assert not _uses_fast_path(conv2d_frozen(x, trained.detach(), None, padding=3))  # adjoint would crop
    with torch.no_grad():
        assert conv2d_frozen(x, trained, None, padding=1).grad_fn is None


def test_irn_dense_subnet_frozen_gradient_matches_autograd(monkeypatch):
    from basicsr_lmar.archs.irn_arch import DenseSubnet
    torch.manual_seed(0)
    subnet = DenseSubnet(9, 3, growth=8)
    for p in subnet.parameters():
        p.data.normal_(0, 0.1)
        p.requires_grad_(False)
    x = torch.randn(2, 9, 10, 12, requires_grad=True)
    (fast,) = torch.autograd.grad(subnet(x).square().sum(), x)
    monkeypatch.setattr(frozen_conv, 'NARROW_OUTPUT_CHANNELS', 0)  # every conv through F.conv2d's autograd
    (reference,) = torch.autograd.grad(subnet(x).square().sum(), x)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
