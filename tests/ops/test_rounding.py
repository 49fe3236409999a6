import math

import pytest
import torch

from basicsr_lmar.ops.rounding import round_ste, soft_round


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
