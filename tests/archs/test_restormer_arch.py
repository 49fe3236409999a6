import math

import pytest
import torch
import torch.nn.functional as F

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.restormer_arch import ChannelLayerNorm, Restormer, TransposedAttention
from basicsr_lmar.checkpoints.lmar import convert_official_restormer
from basicsr_lmar.options import OptionError
from tests.archs.training_checks import l1_losses_of_adam_steps

COMPACT = dict(dim=8, num_blocks=[1, 2, 2, 4], num_refinement_blocks=4)


def official_parameter_count(dim=48, num_blocks=(4, 6, 6, 8), refinement=4, heads=(1, 2, 4, 8), ffn=2.66,
                             bias=False, with_bias_norm=True, channels=3):
    """Parameters of the official Restormer, counted layer by layer from its published structure."""
    b = int(bias)

    def block(d, h):
        hidden = int(d * ffn)
        norms = 2 * (2 * d if with_bias_norm else d)
        attention = h + (d * 3 * d + b * 3 * d) + (3 * d * 9 + b * 3 * d) + (d * d + b * d)
        feed_forward = (d * 2 * hidden + b * 2 * hidden) + (2 * hidden * 9 + b * 2 * hidden) + (hidden * d + b * d)
        return norms + attention + feed_forward

    d = dim
    total = channels * d * 9  # patch embedding, never biased
    total += num_blocks[0] * block(d, heads[0]) + d * (d // 2) * 9
    total += num_blocks[1] * block(2 * d, heads[1]) + 2 * d * d * 9
    total += num_blocks[2] * block(4 * d, heads[2]) + 4 * d * 2 * d * 9
    total += num_blocks[3] * block(8 * d, heads[3])
    total += 8 * d * 16 * d * 9 + (8 * d * 4 * d + b * 4 * d) + num_blocks[2] * block(4 * d, heads[2])
    total += 4 * d * 8 * d * 9 + (4 * d * 2 * d + b * 2 * d) + num_blocks[1] * block(2 * d, heads[1])
    total += 2 * d * 4 * d * 9 + num_blocks[0] * block(2 * d, heads[0])
    total += refinement * block(2 * d, heads[0])
    return total + 2 * d * channels * 9 + b * channels


def count(net):
    return sum(p.numel() for p in net.parameters())


def test_standard_configuration_has_the_official_parameter_count():
    assert official_parameter_count() == 26_126_644
    assert count(Restormer()) == 26_126_644


@pytest.mark.parametrize('config, counted', [
    (COMPACT, dict(dim=8, num_blocks=(1, 2, 2, 4), refinement=4)),
    (dict(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, bias=True, LayerNorm_type='BiasFree'),
     dict(dim=16, num_blocks=(1, 1, 1, 1), refinement=1, bias=True, with_bias_norm=False)),
])
def test_other_configurations_match_the_layer_by_layer_count(config, counted):
    assert count(Restormer(**config)) == official_parameter_count(**counted)


def test_compact_configuration_is_lmar_sized():
    # LMAR Table 4: 1.660 MiB of fp32 (~435 k); the compact configuration is 421,484 (1.608 MiB).
    assert count(Restormer(**COMPACT)) == 421_484


@pytest.mark.parametrize('size', [(32, 40), (13, 21), (3, 5)])
def test_any_input_size_gives_the_same_size(size):
    net = Restormer(**COMPACT)
    x = torch.rand(1, 3, *size)
    out = net(x)
    assert out.shape == x.shape
    out.mean().backward()


def test_bottleneck_hook_shape():
    net = Restormer(**COMPACT).eval()
    seen = []
    net.get_submodule(Restormer.BOTTLENECK_LAYER).register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.rand(1, 3, 20, 33)
    with torch.no_grad():
        net(x)
        direct = net.bottleneck_features(x)
    assert seen[0].shape == (1, net.bottleneck_channels, math.ceil(20 / 8), math.ceil(33 / 8)) == (1, 64, 3, 5)
    torch.testing.assert_close(direct, seen[0], rtol=0, atol=0)


def test_zero_output_conv_gives_the_identity():
    net = Restormer(**COMPACT)
    torch.nn.init.zeros_(net.output.weight)
    x = torch.rand(1, 3, 12, 20)
    torch.testing.assert_close(net(x), x)


def test_channel_layer_norm_matches_torch_layer_norm():
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    norm = ChannelLayerNorm(6).double()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6, ), norm.weight, norm.bias, 1e-5).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
    bias_free = ChannelLayerNorm(6, with_bias=False).double()
    torch.testing.assert_close(bias_free(x), x / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5))


def test_transposed_attention_matches_a_per_head_loop():
    torch.manual_seed(0)
    attention = TransposedAttention(8, 2, bias=True).double()
    torch.nn.init.normal_(attention.temperature)
    x = torch.randn(1, 8, 4, 5, dtype=torch.float64)
    q, k, v = attention.qkv_dwconv(attention.qkv(x)).flatten(2)[0].chunk(3, 0)  # (8, 20) each
    heads = []
    for head in range(2):
        rows = slice(4 * head, 4 * head + 4)
        qh, kh = F.normalize(q[rows], dim=1), F.normalize(k[rows], dim=1)
        weights = torch.softmax(qh @ kh.T * attention.temperature[head, 0, 0], dim=1)
        heads.append(weights @ v[rows])
    expected = attention.project_out(torch.cat(heads).reshape(1, 8, 4, 5))
    torch.testing.assert_close(attention(x), expected)


def test_a_few_adam_steps_lower_the_l1_loss():
    torch.manual_seed(0)
    net = Restormer(dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])
    losses = l1_losses_of_adam_steps(net, 16)
    assert losses[-1] < 0.85 * losses[0]


def test_official_key_layout_converts_and_loads_strictly():
    net = Restormer(dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])
    official = {}
    for key, tensor in net.state_dict().items():  # the official release's names for the same tensors
        key = key.replace('.norm1.', '.norm1.body.').replace('.norm2.', '.norm2.body.')
        for resampler in ('down1_2', 'down2_3', 'down3_4', 'up4_3', 'up3_2', 'up2_1'):
            key = key.replace(f'{resampler}.conv.', f'{resampler}.body.0.')
        official[key.replace('patch_embed.', 'patch_embed.proj.')] = tensor
    assert 'encoder_level1.0.norm1.body.weight' in official and 'down1_2.body.0.weight' in official
    Restormer(dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1]).load_state_dict(
        convert_official_restormer({'params': official}), strict=True)


def test_bad_options_are_named():
    with pytest.raises(OptionError, match="'LayerNorm_type'"):
        Restormer(LayerNorm_type='withbias')
    with pytest.raises(OptionError, match="'num_blocks'.*length 4"):
        Restormer(num_blocks=[1, 2, 3])
    with pytest.raises(ValueError, match=r'6 channels.*heads\[0\]=4'):
        Restormer(dim=6, heads=[4, 2, 4, 8])
    with pytest.raises(ValueError, match='out_channels'):
        Restormer(out_channels=1)
