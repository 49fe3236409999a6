import math

import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network

import basicsr_lmar  # noqa: F401  (registers the archs)
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet
from basicsr_lmar.options import OptionError
from tests.archs.training_checks import l1_losses_of_adam_steps


def count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('block, expected', [('invertible', 264_460), ('half_instance_norm', 295_756)])
def test_parameter_counts_match_the_paper(block, expected):
    # LMAR paper, Table 4: CNN-I 1.009 MiB and CNN-H 1.128 MiB of fp32.
    net = UHDUNet(block=block)
    assert count(net) == expected
    assert round(count(net) * 4 / 2**20, 3) == {'invertible': 1.009, 'half_instance_norm': 1.128}[block]


def test_built_through_basicsr_registry():
    net = build_network({'type': 'UHDUNet', 'block': 'half_instance_norm', 'model_channel': 4})
    assert isinstance(net, UHDUNet)
    assert net.body.encoder_block1.conv1.in_channels == 8


def test_fusion_scales_start_at_one_and_a_half():
    net = UHDUNet(model_channel=2)
    fusion = net.get_submodule(UHDUNet.BOTTLENECK_LAYER)
    assert fusion.transform_scale.item() == 1.0 and fusion.main_scale.item() == 0.5


@pytest.mark.parametrize('block', ['invertible', 'half_instance_norm'])
@pytest.mark.parametrize('size', [(32, 48), (17, 23), (5, 7), (2, 3)])
def test_any_input_size_gives_the_same_size(block, size):
    net = UHDUNet(model_channel=2, block=block)
    x = torch.rand(2, 3, *size)
    out = net(x)
    assert out.shape == x.shape
    out.mean().backward()  # training-mode instance norm works on the padded tiny inputs too


def test_padding_matches_a_manual_reflect_pad_then_crop():
    torch.manual_seed(0)
    net = UHDUNet(model_channel=2).eval()
    x = torch.rand(1, 3, 18, 21)
    padded = F.pad(x, (0, 3, 0, 2), mode='reflect')
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(padded)[..., :18, :21], rtol=0, atol=0)


@pytest.mark.parametrize('size', [(32, 48), (18, 21)])
def test_bottleneck_hook_and_bottleneck_features(size):
    net = UHDUNet().eval()
    seen = []
    handle = net.get_submodule(UHDUNet.BOTTLENECK_LAYER).register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        net(x)
        direct = net.bottleneck_features(x)
    handle.remove()
    expected_shape = (1, 64, math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    assert seen[0].shape == expected_shape == (1, net.bottleneck_channels, *expected_shape[2:])
    torch.testing.assert_close(direct, seen[0], rtol=0, atol=0)


def test_bottleneck_features_carry_gradients_to_the_input():
    net = UHDUNet(model_channel=2)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    net.bottleneck_features(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize('block', ['invertible', 'half_instance_norm'])
def test_a_few_adam_steps_lower_the_l1_loss(block):
    torch.manual_seed(0)
    net = UHDUNet(model_channel=2, block=block)
    losses = l1_losses_of_adam_steps(net, 24)
    assert losses[-1] < 0.85 * losses[0]


def test_unknown_block_is_rejected_with_the_key_and_choices():
    with pytest.raises(OptionError, match=r"'block'.*invertible.*half_instance_norm"):
        UHDUNet(block='inv')
