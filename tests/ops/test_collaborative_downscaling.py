import numpy as np
import pytest
import torch
from skimage import data
from torch import nn

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.bicubic_rescaler_arch import BicubicSRRescaler
from basicsr_lmar.archs.irn_arch import InvRescaleNet, IRNRescaler
from basicsr_lmar.ops.collaborative_downscaling import (Rescaler, _generators, collaborative_downscale,
                                                        mse_per_image, random_start)
from basicsr_lmar.ops.rounding import quantize



def _photos(size=16, dtype=torch.float32):
    crops = [im[120:120 + size, 180:180 + size] for im in (data.astronaut(), data.coffee(), data.chelsea())]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(dtype) / 255


def _tiny_irn(scale=2, dtype=torch.float32, z_policy='seeded'):
    torch.manual_seed(0)
    net = InvRescaleNet(scale=scale, block_num=[1] * (scale // 2), growth=4)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    return IRNRescaler(net.to(dtype).eval(), z_policy=z_policy)


class _TinySR(nn.Module):
    """A small SR net: nearest upsampling + a learned residual."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        nn.init.normal_(self.conv.weight, std=0.05)

    def forward(self, lr):
        up = nn.functional.interpolate(lr, scale_factor=self.scale, mode='nearest')
        return up + self.conv(up)


def _rescalers(dtype=torch.float32):
    return {
        'irn': _tiny_irn(dtype=dtype),
        'bicubic+sr': BicubicSRRescaler(_TinySR(2).to(dtype).eval(), scale=2),
        'bicubic': BicubicSRRescaler(None, scale=2),
    }


def test_adapters_follow_the_protocol():
    for rescaler in _rescalers().values():
        assert isinstance(rescaler, Rescaler)


@pytest.mark.parametrize('name', ['irn', 'bicubic+sr', 'bicubic'])
def test_every_adapter_improves_each_image_and_stays_in_ball(name):
    rescaler = _rescalers()[name]
    hr = _photos()
    result = collaborative_downscale(rescaler, hr, steps_hr=4, steps_lr=4, seed=0)
    # The loss after N steps is below the loss at the (random) start, on every image, in both stages.
    assert torch.all(result.loss_hr <= result.loss_hr_start)
    assert torch.all(result.loss_lr <= result.loss_lr_start)
    # HR perturbation: inside the l2 ball and the image range.
    delta_hr = result.hr_perturbed - hr
    assert torch.all(delta_hr.flatten(1).norm(dim=1) <= 0.3 + 1e-5)
    assert result.hr_perturbed.min() >= 0 and result.hr_perturbed.max() <= 1
    # LR perturbation around the quantised LR of the perturbed HR.
    with torch.no_grad():
        lr_start = quantize(rescaler.downscale(result.hr_perturbed))
    delta_lr = result.lr_continuous - lr_start
    assert torch.all(delta_lr.flatten(1).norm(dim=1) <= 0.3 + 1e-5)
    assert result.lr_continuous.min() >= 0 and result.lr_continuous.max() <= 1
    # The stored LR is an 8-bit image and its reported loss is that of its reconstruction.
    levels = result.lr * 255
    assert torch.equal(levels, levels.round())
    with torch.no_grad():
        assert torch.allclose(result.loss, mse_per_image(rescaler.upscale(result.lr), hr), rtol=1e-5)
        base = mse_per_image(rescaler.upscale(quantize(rescaler.downscale(hr))), hr)
    assert torch.all(result.loss < base), (result.loss, base)


def test_linf_ball():
    hr = _photos()
    result = collaborative_downscale(_tiny_irn(), hr, steps_hr=2, steps_lr=2, epsilon=2 / 255, norm='linf', seed=0)
    assert (result.hr_perturbed - hr).abs().max() <= 2 / 255 + 1e-6
    assert result.hr_perturbed.min() >= 0 and result.hr_perturbed.max() <= 1
    assert torch.all(result.loss_lr <= result.loss_lr_start)


def test_one_step_is_a_normalised_gradient_step():
    # Large ball, image away from 0 and 1: no projection, so ||d_1 - d_0|| = alpha for every image and
    # d_1 - d_0 points against the gradient at d_0.
    rescaler = _tiny_irn(dtype=torch.float64)
    hr = 0.25 + 0.5 * _photos(dtype=torch.float64)
    result = collaborative_downscale(rescaler, hr, steps_hr=1, steps_lr=0, epsilon=10.0, step_size=0.05, seed=7,
                                     quantize_hr_stage=False)
    start = random_start(hr, 10.0, 'l2', _generators(7, 3))
    step = result.hr_perturbed - hr - start
    assert torch.allclose(step.flatten(1).norm(dim=1), torch.full((3, ), 0.05, dtype=torch.float64), atol=1e-9)
    point = (hr + start).requires_grad_(True)
    loss = mse_per_image(rescaler.upscale(rescaler.downscale(point)), hr).sum()
    grad, = torch.autograd.grad(loss, point)
    cosine = nn.functional.cosine_similarity(step.flatten(1), -grad.flatten(1), dim=1)
    assert torch.allclose(cosine, torch.ones(3, dtype=torch.float64), atol=1e-9)


def test_unseeded_start_follows_the_authors_draws():
    # Without a seed, the start consumes the global RNG as the authors' code: normal_ on the image shape,
    # then one uniform radius factor per image; l2-normalised, scaled by eps, clamped to the image range.
    hr = _photos().contiguous()
    torch.manual_seed(11)
    ours = random_start(hr, 0.3, 'l2')
    torch.manual_seed(11)
    delta = torch.zeros_like(hr).normal_()
    norms = delta.view(3, -1).norm(p=2, dim=1).view(3, 1, 1, 1)
    radius = torch.zeros_like(norms).uniform_(0, 1)
    delta = delta * radius / norms * 0.3
    expected = torch.max(torch.min(delta, 1 - hr), 0 - hr)
    assert torch.allclose(ours, expected, atol=1e-7)


def test_zero_radius_is_the_base_rescaler():
    rescaler = _tiny_irn()
    hr = _photos()
    result = collaborative_downscale(rescaler, hr, steps_hr=3, steps_lr=3, epsilon=0.0, seed=0)
    with torch.no_grad():
        assert torch.equal(result.lr, quantize(rescaler.downscale(hr)))


@pytest.mark.parametrize('name', ['irn', 'bicubic+sr'])
def test_batched_equals_per_image_runs(name):
    rescaler = _rescalers(torch.float64)[name]
    hr = _photos(dtype=torch.float64)
    batched = collaborative_downscale(rescaler, hr, steps_hr=3, steps_lr=3, restarts=2, seed=[3, 4, 5])
    for i in range(3):
        single = collaborative_downscale(rescaler, hr[i:i + 1], steps_hr=3, steps_lr=3, restarts=2, seed=3 + i)
        assert torch.equal(batched.lr[i], single.lr[0])
        assert torch.allclose(batched.lr_continuous[i], single.lr_continuous[0], atol=1e-10)
        assert torch.allclose(batched.hr_perturbed[i], single.hr_perturbed[0], atol=1e-10)
    reference = collaborative_downscale(rescaler, hr, steps_hr=3, steps_lr=3, restarts=2, seed=[3, 4, 5],
                                        batched=False)
    assert torch.equal(reference.lr, batched.lr)


def test_restarts_keep_the_best_per_image_and_keep_best_never_worsens():
    rescaler = _tiny_irn(dtype=torch.float64)
    hr = _photos(dtype=torch.float64)
    one = collaborative_downscale(rescaler, hr, steps_hr=2, steps_lr=0, restarts=1, seed=0)
    three = collaborative_downscale(rescaler, hr, steps_hr=2, steps_lr=0, restarts=3, seed=0)
    assert torch.all(three.loss_hr <= one.loss_hr)  # restart 1 of `three` is the run of `one`
    best = collaborative_downscale(rescaler, hr, steps_hr=4, steps_lr=4, step_size=0.2, keep_best=True, seed=0)
    last = collaborative_downscale(rescaler, hr, steps_hr=4, steps_lr=4, step_size=0.2, keep_best=False, seed=0)
    assert torch.all(best.loss_hr <= best.loss_hr_start) and torch.all(best.loss_hr <= last.loss_hr)


@pytest.mark.parametrize('kwargs, key', [
    ({'epsilon': -0.1}, 'epsilon'),
    ({'steps_hr': -1}, 'steps_hr'),
    ({'steps_lr': 1.5}, 'steps_lr'),
    ({'norm': 'l1'}, 'norm'),
    ({'restarts': 0}, 'restarts'),
    ({'step_size': 0}, 'step_size'),
])
def test_option_errors_name_the_option(kwargs, key):
    with pytest.raises(ValueError, match=key):
        collaborative_downscale(_rescalers()['bicubic'], _photos(), **kwargs)


def test_size_not_multiple_of_scale_is_named():
    with pytest.raises(ValueError, match='multiple of the rescaler scale'):
        collaborative_downscale(_rescalers()['bicubic'], torch.rand(1, 3, 15, 16))
