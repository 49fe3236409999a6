import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from basicsr_lmar.archs.residual_downscaler_arch import Y_WEIGHTS, ResidualDownscaler
from basicsr_lmar.ops.resize import resize
from basicsr_lmar.options import OptionError


def bicubic(hr, scale):
    return resize(hr, (hr.shape[-2] // scale, hr.shape[-1] // scale), 'bicubic', antialias=True, boundary='reflect')


def luma(x):
    return (x * torch.tensor(Y_WEIGHTS).view(1, 3, 1, 1)).sum(1)


@pytest.mark.parametrize('scale', [2, 4, 8])
def test_starts_at_bicubic_and_learns(scale):
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('ResidualDownscaler')(scale=scale, num_feat=8)
    hr = torch.rand(2, 3, 8 * scale, 4 * scale)
    torch.testing.assert_close(net(hr), bicubic(hr, scale))
    torch.testing.assert_close(net.downscale(hr, 'round'), torch.round(bicubic(hr, scale).clamp(0, 1) * 255) / 255)
    # the zero-initialised last convolution gets a gradient, and after a step the encoder does too
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    target = hr[..., ::scale, ::scale]
    for _ in range(2):
        optimizer.zero_grad()
        (net.downscale(hr, 'ste') - target).abs().mean().backward()
        optimizer.step()
    assert net.encoder[0].weight.grad.abs().sum() > 0
    assert not torch.allclose(net(hr), bicubic(hr, scale))


def train_a_little(net, hr):
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    target = hr[..., ::4, ::4] * torch.tensor([1.2, 1.0, 0.8]).view(1, 3, 1, 1)  # a colour cast to pull towards
    for _ in range(3):  # move away from the residual's zero start
        optimizer.zero_grad()
        (net(hr) - target).abs().mean().backward()
        optimizer.step()
    return net(hr).detach()


def test_luma_keeps_colour_differences_and_chroma_keeps_y():
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 16, 16)
    reference = bicubic(hr, 4)
    lr = train_a_little(ResidualDownscaler(scale=4, num_feat=8, channels='luma'), hr)
    torch.testing.assert_close(lr - lr.mean(1, keepdim=True), reference - reference.mean(1, keepdim=True))
    assert not torch.allclose(lr, reference)
    lr = train_a_little(ResidualDownscaler(scale=4, num_feat=8, channels='chroma'), hr)
    torch.testing.assert_close(luma(lr), luma(reference))
    assert not torch.allclose(lr, reference)
    gray = hr.mean(1, keepdim=True).expand(1, 3, 16, 16)  # a grayscale photo: 'rgb' can colour its LR, 'luma' not
    lr = train_a_little(ResidualDownscaler(scale=4, num_feat=8, channels='rgb'), gray)
    assert (lr - lr.mean(1, keepdim=True)).abs().max() > 1e-3
    lr = train_a_little(ResidualDownscaler(scale=4, num_feat=8, channels='luma'), gray)
    assert (lr - lr.mean(1, keepdim=True)).abs().max() < 1e-6


def test_bad_input_and_options_are_named():
    net = ResidualDownscaler(scale=4, num_feat=4)
    with pytest.raises(ValueError, match=r'multiples of the scale 4.*crop to 16x16'):
        net(torch.rand(1, 3, 18, 16))
    with pytest.raises(ValueError, match='rounding'):
        net.downscale(torch.rand(1, 3, 16, 16), 'bankers')
    with pytest.raises(OptionError, match='channels'):
        ResidualDownscaler(channels='yuv')
    with pytest.raises(OptionError, match='scale'):
        ResidualDownscaler(scale=3)


def test_channels_none_is_bicubic_without_parameters():
    net = ResidualDownscaler(scale=4, channels='none')
    assert not list(net.parameters()) and net.state_dict() == {}
    hr = torch.rand(1, 3, 16, 24)
    torch.testing.assert_close(net(hr), bicubic(hr, 4))
    torch.testing.assert_close(net.downscale(hr, 'round'), torch.round(bicubic(hr, 4).clamp(0, 1) * 255) / 255)
    torch.testing.assert_close(net.quantize(net(hr), 'soft_ste'), net.downscale(hr, 'round'))
