"""Restormer (Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image Restoration",
CVPR 2022) as a BasicSR arch, one of the frozen UHD enhancers of LMAR.

Structure (from the paper and the official release ``swz30/Restormer``):

- a 3x3 conv embeds the image into ``dim`` channels;
- a 4-level encoder-decoder of transformer blocks at widths ``dim, 2dim, 4dim, 8dim`` (resolutions
  1, 1/2, 1/4, 1/8). Downsampling: 3x3 conv halving the channels + pixel-unshuffle(2); upsampling:
  3x3 conv doubling the channels + pixel-shuffle(2). Decoder levels 3 and 2 concatenate the encoder
  feature and reduce the channels with a 1x1 conv; level 1 concatenates without reduction, so the
  level-1 decoder and the refinement stage run at ``2dim``;
- transformer block: ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``. MDTA (multi-Dconv head transposed
  attention) computes attention across channels: 1x1 conv + 3x3 depthwise conv give q, k, v;
  q and k are L2-normalised over the pixels; ``softmax(q k^T * temperature) v`` per head, with a
  learnable temperature per head; 1x1 output projection. GDFN (gated-Dconv feed-forward): 1x1 conv
  to ``2 * int(dim * ffn_expansion_factor)`` channels, 3x3 depthwise conv, ``gelu(x1) * x2``, 1x1 conv
  back. LayerNorm over channels, with bias (``'WithBias'``) or without mean subtraction and bias
  (``'BiasFree'``);
- a 3x3 conv to the output plus a global residual (the input).

Configurations: the standard one (the defaults: dim 48, blocks [4, 6, 6, 8], heads [1, 2, 4, 8],
refinement 4, FFN factor 2.66, no conv bias, WithBias LN) has **26,126,644** parameters. The LMAR paper
uses a Restormer of 1.660 MiB (~435 k parameters, Table 4) whose configuration is not published; the
compact configuration of ``options/train_restormer_4kil.yml`` (dim 8, blocks [1, 2, 2, 4], heads
[1, 2, 4, 8], refinement 4) has **421,484** (``docs/enhancers.md``).

Heights/widths that are not multiples of 8 are reflect-padded on the bottom/right (replicated when the
image is too small to reflect) and the output is cropped back.

The bottleneck feature (``8 dim`` channels at 1/8 resolution) is the output of the module named by
:attr:`Restormer.BOTTLENECK_LAYER` (``'latent'``).

State-dict keys follow the official release except LayerNorm (``norm1.weight`` for ``norm1.body.weight``)
and resampling (``down1_2.conv.weight`` for ``down1_2.body.0.weight``); see
:func:`basicsr_lmar.checkpoints.lmar.convert_official_restormer`.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from basicsr_lmar.ops.padding import pad_to_multiple
from basicsr_lmar.options import Option, configurable

LAYER_NORM_TYPES = ('WithBias', 'BiasFree')


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of (N, C, H, W). ``with_bias=False``: no mean subtraction, no bias."""

    def __init__(self, channels, with_bias=True, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None
        self.eps = eps

    def forward(self, x):
        variance = x.var(1, keepdim=True, unbiased=False)
        if self.bias is None:
            return x * torch.rsqrt(variance + self.eps) * self.weight[:, None, None]
        centred = x - x.mean(1, keepdim=True)
        return centred * torch.rsqrt(variance + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


class TransposedAttention(nn.Module):
    """MDTA: self-attention across channels (a ``C/heads x C/heads`` map per head), linear in pixels."""

    def __init__(self, dim, num_heads, bias):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'Restormer: channels {dim} are not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x):
        n, c, h, w = x.shape
        # (N, 3C, H, W) -> 3 x (N, heads, C/heads, H*W)
        q, k, v = self.qkv_dwconv(self.qkv(x)).reshape(n, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attention = (q @ k.transpose(-2, -1) * self.temperature).softmax(-1)
        return self.project_out((attention @ v).reshape(n, c, h, w))


class GatedDconvFeedForward(nn.Module):
    """GDFN: 1x1 expand to two branches, 3x3 depthwise conv, ``gelu(a) * b``, 1x1 project back."""

    def __init__(self, dim, expansion_factor, bias):
        super().__init__()
        hidden = int(dim * expansion_factor)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x):
        gate, value = self.dwconv(self.project_in(x)).chunk(2, 1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):

    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, layer_norm_type):
        super().__init__()
        with_bias = layer_norm_type == 'WithBias'
        self.norm1 = ChannelLayerNorm(dim, with_bias)
        self.attn = TransposedAttention(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim, with_bias)
        self.ffn = GatedDconvFeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class PixelUnshuffleDown(nn.Module):
    """3x3 conv ``C -> C/2`` then pixel-unshuffle(2): ``(C, H, W) -> (2C, H/2, W/2)``."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False)

    def forward(self, x):
        return F.pixel_unshuffle(self.conv(x), 2)


class PixelShuffleUp(nn.Module):
    """3x3 conv ``C -> 2C`` then pixel-shuffle(2): ``(C, H, W) -> (C/2, 2H, 2W)``."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=False)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2)


@ARCH_REGISTRY.register()
@configurable(
    inp_channels=Option(type=int, min=1, doc='input image channels'),
    out_channels=Option(type=int, min=1, doc='output image channels (= inp_channels for the global residual)'),
    dim=Option(type=int, min=2, doc='channels of level 1 (48 standard, 8 compact)'),
    num_blocks=Option(type=(list, tuple), length=4, min=1, doc='transformer blocks per level'),
    num_refinement_blocks=Option(type=int, min=0, doc='transformer blocks of the refinement stage'),
    heads=Option(type=(list, tuple), length=4, min=1, doc='attention heads per level'),
    ffn_expansion_factor=Option(type=float, exclusive_min=True, min=0, doc='GDFN hidden width / channels'),
    bias=Option(type=bool, doc='conv biases'),
    LayerNorm_type=Option(choices=LAYER_NORM_TYPES, doc='LayerNorm with or without bias'))
class Restormer(nn.Module):
    """Restormer; defaults are the standard configuration (26,126,644 parameters).

    Option names follow the official release so that its YAML files carry over.
    """

    #: Module whose output is the bottleneck feature (``8 dim`` channels at 1/8 resolution).
    BOTTLENECK_LAYER = 'latent'
    #: Resolution divisor of the bottleneck feature.
    BOTTLENECK_STRIDE = 8
    SIZE_MULTIPLE = 8

    def __init__(self, inp_channels=3, out_channels=3, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4,
                 heads=(1, 2, 4, 8), ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias'):
        super().__init__()
        if out_channels != inp_channels:
            raise ValueError(f'Restormer adds its input to the output: out_channels ({out_channels}) must equal '
                             f'inp_channels ({inp_channels})')
        for level, width in enumerate((dim, 2 * dim, 4 * dim, 8 * dim)):
            if width % heads[level]:
                raise ValueError(f'Restormer: level {level + 1} has {width} channels (dim={dim}), not divisible by '
                                 f'heads[{level}]={heads[level]}; choose dim as a multiple of the heads')
        if dim % 2:
            raise ValueError(f'Restormer: dim must be even (downsampling halves it), got {dim}')

        def stage(width, heads_, count):
            return nn.Sequential(*[
                TransformerBlock(width, heads_, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(count)])

        self.patch_embed = nn.Conv2d(inp_channels, dim, 3, padding=1, bias=False)  # bias-free whatever `bias` says
        self.encoder_level1 = stage(dim, heads[0], num_blocks[0])
        self.down1_2 = PixelUnshuffleDown(dim)
        self.encoder_level2 = stage(2 * dim, heads[1], num_blocks[1])
        self.down2_3 = PixelUnshuffleDown(2 * dim)
        self.encoder_level3 = stage(4 * dim, heads[2], num_blocks[2])
        self.down3_4 = PixelUnshuffleDown(4 * dim)
        self.latent = stage(8 * dim, heads[3], num_blocks[3])
        self.up4_3 = PixelShuffleUp(8 * dim)
        self.reduce_chan_level3 = nn.Conv2d(8 * dim, 4 * dim, 1, bias=bias)
        self.decoder_level3 = stage(4 * dim, heads[2], num_blocks[2])
        self.up3_2 = PixelShuffleUp(4 * dim)
        self.reduce_chan_level2 = nn.Conv2d(4 * dim, 2 * dim, 1, bias=bias)
        self.decoder_level2 = stage(2 * dim, heads[1], num_blocks[1])
        self.up2_1 = PixelShuffleUp(2 * dim)  # no channel reduction: level 1 decodes at 2 dim
        self.decoder_level1 = stage(2 * dim, heads[0], num_blocks[0])
        self.refinement = stage(2 * dim, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(2 * dim, out_channels, 3, padding=1, bias=bias)
        self.bottleneck_channels = 8 * dim

    def encode(self, x):
        """Encoder features ``(level1, level2, level3, latent)`` of an already padded input."""
        level1 = self.encoder_level1(self.patch_embed(x))
        level2 = self.encoder_level2(self.down1_2(level1))
        level3 = self.encoder_level3(self.down2_3(level2))
        return level1, level2, level3, self.latent(self.down3_4(level3))

    def bottleneck_features(self, image):
        """The bottleneck feature (``8 dim`` channels, ``ceil(H/8) x ceil(W/8)``), running only the encoder;
        equal to what a hook on :attr:`BOTTLENECK_LAYER` sees in ``forward``."""
        return self.encode(pad_to_multiple(image, self.SIZE_MULTIPLE)[0])[3]

    def forward(self, image):
        x, (h, w) = pad_to_multiple(image, self.SIZE_MULTIPLE)
        level1, level2, level3, latent = self.encode(x)

        decoded = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), level3], 1)))
        decoded = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(decoded), level2], 1)))
        decoded = self.decoder_level1(torch.cat([self.up2_1(decoded), level1], 1))
        decoded = self.refinement(decoded)
        return (self.output(decoded) + x)[..., :h, :w]
