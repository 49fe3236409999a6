import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.irn_arch import AffineCoupling, InvRescaleNet, IRNRescaler, haar_downsample, haar_upsample
from basicsr_lmar.options import OptionError



def _randomise(net, std=0.05, seed=0):
    """The last conv of each subnet starts at zero (identity blocks); make the blocks non-trivial."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std)
    return net


@pytest.mark.parametrize('scale, block_num, expected', [(2, [8], 1_667_952), (4, [8, 8], 4_355_136)])
def test_parameter_count_matches_paper(scale, block_num, expected):
    net = ARCH_REGISTRY.get('InvRescaleNet')(scale=scale, block_num=block_num)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == expected


def test_haar_matches_grouped_conv_definition():
    # The authors' filters: rows of +-1 on 2x2 blocks, grouped conv with stride 2, divided by 4, then
    # channels ordered sub-band-major.
    x = torch.rand(2, 3, 6, 8, dtype=torch.float64)
    filters = torch.ones(4, 1, 2, 2, dtype=torch.float64)
    filters[1, 0, 0, 1] = filters[1, 0, 1, 1] = -1
    filters[2, 0, 1, 0] = filters[2, 0, 1, 1] = -1
    filters[3, 0, 1, 0] = filters[3, 0, 0, 1] = -1
    out = torch.nn.functional.conv2d(x, filters.repeat(3, 1, 1, 1), stride=2, groups=3) / 4
    expected = out.reshape(2, 3, 4, 3, 4).transpose(1, 2).reshape(2, 12, 3, 4)
    assert torch.allclose(haar_downsample(x), expected, atol=1e-12)
    assert torch.allclose(haar_upsample(haar_downsample(x)), x, atol=1e-12)


def test_haar_rejects_odd_sizes():
    with pytest.raises(ValueError, match='even'):
        haar_downsample(torch.rand(1, 3, 5, 6))


def test_coupling_inverse_and_gradcheck():
    block = _randomise(AffineCoupling(12, 3, growth=4).double())
    x = torch.randn(2, 12, 4, 4, dtype=torch.float64)
    assert torch.allclose(block(block(x), rev=True), x, atol=1e-12)
    tiny = _randomise(AffineCoupling(4, 1, growth=2).double())
    small = torch.randn(1, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tiny(t), (small, ), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: tiny(t, rev=True), (small, ), fast_mode=True)


@pytest.mark.parametrize('scale, block_num', [(2, [2]), (4, [1, 2])])
def test_network_exactly_invertible(scale, block_num):
    torch.manual_seed(0)
    net = _randomise(InvRescaleNet(scale=scale, block_num=block_num, growth=8))
    x = torch.rand(2, 3, 16, 16)
    y = net(x)
    assert y.shape == (2, 3 * scale**2, 16 // scale, 16 // scale)
    assert torch.allclose(net(y, rev=True), x, atol=1e-5)
    lr, z = net.downscale(x)
    assert lr.shape == (2, 3, 16 // scale, 16 // scale) and z.shape[1] == 3 * scale**2 - 3
    assert torch.allclose(net.upscale(lr, z), x, atol=1e-5)


def test_fresh_network_is_haar_average():
    # Zero-initialised last convs: the LR output of an untrained IRN is the s x s box average.
    net = InvRescaleNet(scale=4, block_num=[1, 1], growth=4)
    x = torch.rand(1, 3, 8, 8)
    lr = net.downscale(x)[0]
    assert torch.allclose(lr, torch.nn.functional.avg_pool2d(x, 4), atol=1e-6)


def test_option_errors_name_the_key():
    with pytest.raises(OptionError, match='scale'):
        InvRescaleNet(scale=3)
    with pytest.raises(ValueError, match='block_num'):
        InvRescaleNet(scale=4, block_num=[8])
    with pytest.raises(OptionError, match='blocks_num'):
        InvRescaleNet(blocks_num=[8, 8])


@pytest.mark.parametrize('policy', ['seeded', 'zero'])
def test_irn_rescaler_z_policy_is_deterministic_and_batch_independent(policy):
    net = _randomise(InvRescaleNet(scale=2, block_num=[1], growth=4)).eval()
    rescaler = IRNRescaler(net, z_policy=policy, z_seed=3)
    x = torch.rand(3, 3, 8, 8)
    lr = rescaler.downscale(x)
    assert lr.shape == (3, 3, 4, 4)
    up = rescaler.upscale(lr)
    assert up.shape == x.shape
    assert torch.equal(up, rescaler.upscale(lr))
    single = torch.cat([rescaler.upscale(lr[i:i + 1]) for i in range(3)])
    assert torch.allclose(up, single, atol=1e-6)
    z = rescaler.latent(lr)
    if policy == 'zero':
        assert torch.count_nonzero(z) == 0
    else:
        assert 0.5 < z.std() < 1.5 and torch.equal(z[0], z[1])
    # Upscaling with the true z of the forward pass reconstructs exactly; the policy's z does not.
    assert torch.allclose(net.upscale(*net.downscale(x))[:, :3], x, atol=1e-5)
