import math

import pytest
import torch

from basicsr_lmar.ops.rounding import quantize_8bit, round_soft_gradient, round_ste, soft_round


def test_round_ste_rounds_to_levels_and_passes_gradient_through():
    x = torch.tensor([0.0, 0.4 / 255, 0.6 / 255, 100.5 / 255 + 1e-4, 1.0], dtype=torch.float64, requires_grad=True)
    y = round_ste(x)
    torch.testing.assert_close(y, torch.tensor([0., 0., 1., 101., 255.], dtype=torch.float64) / 255)
    upstream = torch.tensor([1., -2., 3., 0.5, 7.], dtype=torch.float64)
    (grad,) = torch.autograd.grad((y * upstream).sum(), x)
    torch.testing.assert_close(grad, upstream)
    torch.testing.assert_close(round_ste(torch.tensor([0.26]), levels=4), torch.tensor([0.25]))


def test_soft_round_values():
    levels = 255
    integers = torch.arange(0, 256, dtype=torch.float64) / levels
    torch.testing.assert_close(soft_round(integers, alpha=0.7), integers)  # integer levels stay fixed
    x = torch.rand(100, dtype=torch.float64)
    torch.testing.assert_close(soft_round(x, alpha=0.0), x)  # alpha 0 is the identity
    y = 10.25  # a quarter level above an integer: sin(pi/2) = 1
    assert soft_round(torch.tensor(y / levels, dtype=torch.float64), alpha=1.0).item() * levels == pytest.approx(
        y - 1 / (2 * math.pi))
    # closer to the rounded value than the input, never past it
    soft = soft_round(x, alpha=1.0)
    hard = torch.round(x * levels) / levels
    assert torch.all((soft - hard).abs() <= (x - hard).abs() + 1e-12)


def test_soft_round_gradients():
    x = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: soft_round(t, alpha=0.5), (x,))
    assert torch.autograd.gradcheck(lambda t: soft_round(t, alpha=1.0, levels=15), (x,))
    integers = (torch.arange(5, dtype=torch.float64) / 255).requires_grad_()
    (grad,) = torch.autograd.grad(soft_round(integers, alpha=1.0).sum(), integers)
    torch.testing.assert_close(grad, torch.zeros(5, dtype=torch.float64))  # flat at the levels when alpha = 1
    alpha = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)  # a tensor alpha (annealing) works
    assert torch.autograd.gradcheck(lambda t, a: soft_round(t, alpha=a), (x, alpha))


def test_rounding_errors():
    with pytest.raises(ValueError, match=r'alpha must be in \[0, 1\].*got 1.5'):
        soft_round(torch.rand(2), alpha=1.5)
    with pytest.raises(ValueError, match='levels must be a positive number.*got 0'):
        round_ste(torch.rand(2), levels=0)


def test_soft_ste_trains_on_the_values_of_test_time_rounding():
    """'soft_ste': the forward pass is the hard 8-bit rounding used at test time (the 'soft' forward pass is a
    bijection, so it keeps the sub-level detail that test-time rounding removes); the backward pass is the
    soft rounding's derivative."""
    x = torch.rand(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    for alpha in (1.0, 0.5):
        soft = quantize_8bit(x, 'soft_ste', alpha)
        torch.testing.assert_close(soft, quantize_8bit(x, 'round'), atol=0, rtol=0)
        assert torch.equal(soft, round_soft_gradient(x, alpha))
        upstream = torch.randn_like(x)
        (grad,) = torch.autograd.grad((soft * upstream).sum(), x)
        torch.testing.assert_close(grad, upstream * (1 - alpha * torch.cos(2 * math.pi * 255 * x.detach())))
    torch.testing.assert_close(round_soft_gradient(torch.tensor([0.26]), levels=4), torch.tensor([0.25]))
    assert not torch.equal(quantize_8bit(x, 'soft'), quantize_8bit(x, 'round'))  # 'soft' stays off the grid
