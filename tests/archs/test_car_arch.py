import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from basicsr_lmar.archs.car_arch import BicubicUpscaler, CARRescaler, CARResamplerNet
from basicsr_lmar.ops.adaptive_resample import adaptive_resample_reference, resize_equivalent_kernel
from basicsr_lmar.options import OptionError


def trainable(net):
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize('scale, count', [(2, 10_645_651), (4, 9_896_443)])
def test_parameter_count_matches_authors(scale, count):
    net = ARCH_REGISTRY.get('CARResamplerNet')(scale=scale)
    assert trainable(net) == count
    assert 'rgb_mean' not in dict(net.named_parameters())


@pytest.mark.parametrize('scale', [2, 4])
def test_map_shapes_normalisation_and_offset_range(scale):
    torch.manual_seed(0)
    net = CARResamplerNet(scale=scale, num_feat=8, body_feat=8, top_feat=16, num_block=1)
    hr = torch.rand(2, 3, 16, 24)
    kernels, offsets_h, offsets_v = net(hr)
    k = 3 * scale + 1
    for t in (kernels, offsets_h, offsets_v):
        assert t.shape == (2, k * k, 16 // scale, 24 // scale)
    torch.testing.assert_close(kernels.sum(1), torch.ones(2, 16 // scale, 24 // scale))
    assert kernels.min() > 0
    assert offsets_h.abs().max() < 1 and offsets_v.abs().max() < 1
    lr = net.downscale(hr)
    torch.testing.assert_close(lr, adaptive_resample_reference(hr, kernels, offsets_h, offsets_v, scale))


def test_size_not_multiple_of_8_is_a_clear_error():
    net = CARResamplerNet(scale=2, num_feat=4, body_feat=4, top_feat=4, num_block=0)
    with pytest.raises(ValueError, match=r'20x16 must be a multiple of 8.*crop to 16x16'):
        net(torch.rand(1, 3, 20, 16))


def test_bad_option_names_key():
    with pytest.raises(OptionError, match='scale'):
        CARResamplerNet(scale=3)
    with pytest.raises(OptionError, match='num_blocks'):
        CARResamplerNet(num_blocks=3)


def test_rescaler_round_trip_is_differentiable():
    torch.manual_seed(0)
    rescaler = CARRescaler(CARResamplerNet(scale=4, num_feat=4, body_feat=4, top_feat=8, num_block=1))
    assert rescaler.scale == 4 and isinstance(rescaler.upscaler, BicubicUpscaler)
    hr = torch.rand(1, 3, 16, 16, requires_grad=True)
    lr = rescaler.downscale(hr)
    assert lr.shape == (1, 3, 4, 4)
    lr_leaf = lr.detach().requires_grad_()
    up = rescaler.upscale(lr_leaf)
    assert up.shape == (1, 3, 16, 16)
    grad_lr, = torch.autograd.grad(up.square().sum(), lr_leaf)
    assert grad_lr.abs().sum() > 0
    grad_hr, = torch.autograd.grad(rescaler(hr).square().sum(), hr)
    assert grad_hr.abs().sum() > 0
    with pytest.raises(TypeError, match='CARResamplerNet'):
        CARRescaler(BicubicUpscaler(4))


def test_bicubic_upscaler_keeps_constants():
    up = BicubicUpscaler(scale=2)(torch.full((1, 3, 5, 6), 0.3))
    torch.testing.assert_close(up, torch.full((1, 3, 10, 12), 0.3))


def test_downscale_is_the_chain_and_honours_impl(monkeypatch):
    """downscale = adaptive_resample(impl) -> clamp -> 8-bit rounding; network_g.impl reaches the op."""
    from basicsr_lmar.archs import car_arch
    from basicsr_lmar.ops.rounding import quantize_8bit

    torch.manual_seed(0)
    net = CARResamplerNet(scale=2, num_feat=8, body_feat=8, top_feat=16, num_block=1, impl='chunked').eval()
    hr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        maps = net(hr)
        raw = adaptive_resample_reference(hr, *maps, 2)
        torch.testing.assert_close(net.downscale(hr), raw, atol=1e-6, rtol=0)
        torch.testing.assert_close(net.downscale(hr, rounding='round'), quantize_8bit(raw.clamp(0, 1), 'round'),
                                   atol=1e-6, rtol=0)
    seen = []
    real = car_arch.adaptive_resample
    monkeypatch.setattr(car_arch, 'adaptive_resample', lambda *a, impl='auto': seen.append(impl) or real(*a, impl=impl))
    net.downscale(hr)
    assert seen == ['chunked']
    with pytest.raises(ValueError, match='rounding'):
        net.downscale(hr, rounding='bankers')


@pytest.mark.parametrize('scale', [2, 4])
def test_signed_kernels_sum_to_one_and_may_be_negative(scale):
    torch.manual_seed(0)
    net = CARResamplerNet(scale=scale, num_feat=8, body_feat=8, top_feat=16, num_block=1, signed_kernels=True)
    with torch.no_grad():  # a head whose output straddles zero: the clamp would cut it, the signed path keeps it
        net.kernel_head[-1].bias.normal_(0, 1)
    hr = torch.rand(2, 3, 16, 24)
    kernels, offsets_h, offsets_v = net(hr)
    torch.testing.assert_close(kernels.sum(1), torch.ones(2, 16 // scale, 24 // scale))
    assert kernels.min() < 0
    torch.testing.assert_close(net.downscale(hr), adaptive_resample_reference(hr, kernels, offsets_h, offsets_v, scale))
    # every element keeps a gradient (no clamp): a loss on one element reaches the head's bias everywhere
    kernels[:, 0].sum().backward()
    assert (net.kernel_head[-1].bias.grad != 0).all()


def test_signed_kernels_share_the_parameters_and_default_is_the_clamp():
    """Same state dict either way, so the authors' checkpoints (converted to the default layout) load into
    both; the default still clamps (non-negative kernels)."""
    plain = CARResamplerNet(scale=4, num_feat=8, body_feat=8, top_feat=16, num_block=1)
    signed = CARResamplerNet(scale=4, num_feat=8, body_feat=8, top_feat=16, num_block=1, signed_kernels=True)
    assert plain.signed_kernels is False
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in signed.state_dict().items()}
    signed.load_state_dict(plain.state_dict(), strict=True)
    raw = torch.tensor([-0.5, 0.25, 2.0, 0.25]).view(1, 4, 1, 1)
    clamped = torch.tensor([1e-6, 0.25, 1, 0.25]) / (1.5 + 1e-6)
    torch.testing.assert_close(plain.normalise_kernels(raw).flatten(), clamped)
    torch.testing.assert_close(signed.normalise_kernels(raw).flatten(), torch.tensor([-0.75, 0.0, 1.75, 0.0]))
    with pytest.raises(OptionError, match='signed_kernels'):
        CARResamplerNet(signed_kernels='yes')


@pytest.mark.parametrize('scale, rmse', [(2, 1e-6), (4, 1e-3)])
def test_bicubic_start_downscales_like_bicubic_and_still_learns(scale, rmse):
    """kernel_init='bicubic': a joint run starts where bicubic LR + SR is, for every content (on a photo: exact
    at x2, > 60 dB at x4); the zero-weight heads still get gradients, so the kernels and offsets can become
    content-adaptive."""
    from basicsr_lmar.data.skimage_photos import load_photo
    from basicsr_lmar.ops.resize import resize

    torch.manual_seed(0)
    net = CARResamplerNet(scale=scale, num_feat=8, body_feat=8, top_feat=16, num_block=1, signed_kernels=True,
                          kernel_init='bicubic')
    hr = torch.from_numpy(load_photo('astronaut')[100:164, 180:260].transpose(2, 0, 1).copy())[None]
    kernels, offsets_h, offsets_v = net(hr)
    assert offsets_h.abs().max() == 0 and offsets_v.abs().max() == 0
    torch.testing.assert_close(kernels, resize_equivalent_kernel(scale).float().view(1, -1, 1, 1).expand_as(kernels))
    expected = resize(hr, (64 // scale, 80 // scale), 'bicubic', antialias=True, boundary='reflect')
    assert (net.downscale(hr) - expected).square().mean().sqrt() < rmse
    loss = (net.downscale(hr) - hr[..., ::scale, ::scale]).abs().mean()
    loss.backward()
    for head in (net.kernel_head[-1], net.offset_h_head[-2], net.offset_v_head[-2]):
        assert head.weight.grad.abs().sum() > 0


def test_box_start_for_both_heads_and_bicubic_needs_signed_kernels():
    k = 13
    box = torch.zeros(k, k)
    box[5:8, 5:8] = 1 / 9
    hr = torch.rand(1, 3, 16, 16)
    for signed in (False, True):
        net = CARResamplerNet(scale=4, num_feat=8, body_feat=8, top_feat=16, num_block=1, signed_kernels=signed,
                              kernel_init='box')
        kernels = net(hr)[0]
        torch.testing.assert_close(kernels[0, :, 0, 0], box.flatten(), atol=3e-4, rtol=0)
        kernels.square().sum().backward()
        assert (net.kernel_head[-1].bias.grad != 0).all()  # inside the clamp's range: every element learns
    with pytest.raises(OptionError, match='kernel_init: bicubic needs signed_kernels: true'):
        CARResamplerNet(scale=4, kernel_init='bicubic')
    with pytest.raises(OptionError, match='kernel_init'):
        CARResamplerNet(scale=4, kernel_init='lanczos')


def test_soft_ste_chain_gives_test_time_values_and_gradients_to_every_map():
    torch.manual_seed(0)
    net = CARResamplerNet(scale=2, num_feat=8, body_feat=8, top_feat=16, num_block=1, signed_kernels=True,
                          kernel_init='bicubic')
    hr = torch.rand(1, 3, 16, 16)
    maps = [m.detach().requires_grad_() for m in net(hr)]
    with torch.no_grad():
        maps[1].normal_(0, 0.1)  # offsets away from 0, where the bilinear weights have a slope
    lr = net.apply_maps(hr, maps, 'soft_ste')
    torch.testing.assert_close(lr, net.apply_maps(hr, maps, 'round'), atol=0, rtol=0)
    grads = torch.autograd.grad((lr - hr[..., ::2, ::2]).abs().mean(), maps)
    assert all(g.abs().sum() > 0 for g in grads)


def test_signed_kernels_have_bounded_gain():
    """A signed head whose raw output runs away (as it did in joint training at lr 5e-4) still gives kernels
    that sum to 1 with sum |K| <= kernel_l1_max, so the LR of a [0, 1] image stays within a bounded range;
    bicubic-like kernels are below the bound and pass unchanged, and the bound passes gradient."""
    raw = torch.randn(2, 169, 3, 3) * 100
    net = CARResamplerNet(scale=4, num_feat=8, body_feat=8, top_feat=16, num_block=1, signed_kernels=True)
    assert net.kernel_l1_max == 5.0
    kernels = net.normalise_kernels(raw.requires_grad_())
    torch.testing.assert_close(kernels.sum(1), torch.ones(2, 3, 3))
    assert kernels.abs().sum(1).max() <= 5.0 + 1e-5
    kernels[:, 0].sum().backward()
    assert raw.grad.abs().sum() > 0
    img = torch.rand(2, 3, 12, 12)
    zeros = torch.zeros_like(kernels)
    lr = adaptive_resample_reference(img, kernels.detach(), zeros, zeros, 4)
    assert lr.min() >= 0.5 - 2.5 and lr.max() <= 0.5 + 2.5  # 5 half-ranges around the mid-range 0.5
    unbounded = CARResamplerNet(scale=4, num_feat=8, body_feat=8, top_feat=16, num_block=1, signed_kernels=True,
                                kernel_l1_max=None)
    assert unbounded.normalise_kernels(raw.detach()).abs().sum(1).max() > 100
    bicubic = resize_equivalent_kernel(4).float().view(1, -1, 1, 1)
    torch.testing.assert_close(net.normalise_kernels(bicubic), bicubic)
    with pytest.raises(OptionError, match='kernel_l1_max'):
        CARResamplerNet(signed_kernels=True, kernel_l1_max=1.0)


@pytest.mark.parametrize('scale', [2, 4])
def test_adaptivity_is_zero_for_one_kernel_everywhere_and_measures_offsets(scale):
    net = CARResamplerNet(scale=scale, num_feat=4, body_feat=4, top_feat=8, num_block=0, signed_kernels=True,
                          kernel_init='bicubic')
    maps = net(torch.rand(1, 3, 64, 64))
    assert net.adaptivity(maps) == {'kernel_spread': 0.0, 'offset_length': 0.0}  # the start: bicubic everywhere
    kernels, offsets_h, offsets_v = (m.detach().clone() for m in maps)
    period = 8 // scale  # a pattern repeating with the pixel-shuffle's period is not adaptation
    periodic = kernels.clone()
    periodic[..., ::period, ::period] = torch.roll(kernels[..., ::period, ::period], 1, dims=1)
    assert net.adaptivity((periodic, offsets_h, offsets_v))['kernel_spread'] == pytest.approx(0.0, abs=1e-6)
    varying = kernels.clone()
    varying[:, :, 0, 0] = 1.0 / kernels.shape[1]  # one LR pixel with a flat kernel
    assert net.adaptivity((varying, offsets_h, offsets_v))['kernel_spread'] > 0.01
    offsets_h.fill_(0.3)
    offsets_v.fill_(0.4)  # length 0.5 in units of the scale
    assert net.adaptivity((kernels, offsets_h, offsets_v))['offset_length'] == pytest.approx(0.5 * scale)
