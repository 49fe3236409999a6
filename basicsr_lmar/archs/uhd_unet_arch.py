"""UHD U-Net enhancers of the LMAR paper: "CNN-I" (invertible blocks) and "CNN-H" (half-instance-norm blocks).

LMAR (Yu et al., CVPR 2024) puts a learned resampler in front of a *frozen* UHD low-light enhancer.
The enhancer released with the paper (``base_model.bin`` in the authors' repository) is a small
encoder-decoder; this module re-implements it from the facts of the authors' code and checkpoint:

- stem: two bias-free 3x3 convs ``in -> 2C -> 2C`` with ReLU (``C = model_channel = 8``), so the body
  runs at ``2C = 16`` channels; head: a bias-free 1x1 conv ``2C -> out``; no global residual;
- body: a two-level U-Net at widths 16/32/64 (full, 1/2 and 1/4 resolution). Resampling is a 4x4
  stride-2 (transposed) conv + InstanceNorm(affine) + LeakyReLU(0.2). A processing block runs at each
  encoder level, at the bottom and at each decoder level. Cross-scale shortcuts bring the previous
  level's input down (strided conv) into the encoder and the level below up (transposed conv) into the
  decoder; encoder features join the decoder through half-instance-norm blocks. Every fusion computes
  ``transform_scale * transform(cat(side, main)) + main_scale * main`` with learnable scalars
  initialised to 1.0 and 0.5.

Parameter counts (paper, Table 4): CNN-I 264,460 and CNN-H 295,756 for ``model_channel=8``.

The bottleneck feature that LMAR's losses compare is the output of the module named by
:attr:`UHDUNet.BOTTLENECK_LAYER` (``'body.down_fusion2'``: 64 channels at 1/4 resolution, the
equivalent of the authors' ``hr_backbone.skip2``). Register a forward hook on
``net.get_submodule(UHDUNet.BOTTLENECK_LAYER)`` or call :meth:`UHDUNet.bottleneck_features`.

Input sizes: the body halves the resolution twice, so height and width must be multiples of 4. Other
sizes are padded on the bottom/right by reflection (replication when the image is too small to
reflect) up to the next multiple of 4 (and to at least 8, so that instance norm sees more than
one value per channel at the bottleneck), and the output is cropped back. Instance norm statistics then
include the padded border, so results differ slightly from an unpadded run of a (hypothetical) exact
size; UHD frames (2160x3840) need no padding.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from basicsr_lmar.ops.padding import pad_to_multiple
from basicsr_lmar.options import Option, configurable

BLOCK_TYPES = ('invertible', 'half_instance_norm')
SIZE_MULTIPLE = 4
# Instance norm needs more than one value per channel at the bottleneck (1/4 resolution) when training.
MIN_SIZE = 8


class HalfInstanceNormBlock(nn.Module):
    """HIN block (HINet): 3x3 conv, InstanceNorm on the first half of the channels, LeakyReLU(0.2),
    3x3 conv + LeakyReLU(0.2), plus a 1x1 conv shortcut from the input."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.half_norm = nn.InstanceNorm2d(out_channels // 2, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        out = self.conv1(x)
        normalised, kept = out.split([self.half_norm.num_features, out.shape[1] - self.half_norm.num_features], 1)
        out = F.leaky_relu(torch.cat([self.half_norm(normalised), kept], 1), 0.2)
        out = F.leaky_relu(self.conv2(out), 0.2)
        return out + self.shortcut(x)


class InvertibleBlock(nn.Module):
    """Affine coupling block with a residual connection (channels split into halves x1, x2):

    ``y1 = x1 + shift_first(x2)``; ``s = clamp * (2 * sigmoid(log_scale_second(y1)) - 1)``;
    ``y2 = x2 * exp(s) + shift_second(y1)``; output ``cat(y1, y2) + x``. The three sub-networks are
    :class:`HalfInstanceNormBlock` s.
    """

    def __init__(self, channels, clamp=0.8):
        super().__init__()
        self.first_channels = channels // 2
        self.second_channels = channels - self.first_channels
        self.clamp = clamp
        self.shift_first = HalfInstanceNormBlock(self.second_channels, self.first_channels)
        self.shift_second = HalfInstanceNormBlock(self.first_channels, self.second_channels)
        self.log_scale_second = HalfInstanceNormBlock(self.first_channels, self.second_channels)

    def forward(self, x):
        x1, x2 = x.split([self.first_channels, self.second_channels], 1)
        y1 = x1 + self.shift_first(x2)
        log_scale = self.clamp * (2 * torch.sigmoid(self.log_scale_second(y1)) - 1)
        y2 = x2 * torch.exp(log_scale) + self.shift_second(y1)
        return torch.cat([y1, y2], 1) + x


class ConvNormAct(nn.Module):
    """conv (or transposed conv) -> InstanceNorm(affine) -> activation."""

    def __init__(self, conv, activation):
        super().__init__()
        self.conv = conv
        self.norm = nn.InstanceNorm2d(conv.out_channels, affine=True)
        self.activation = activation

    def forward(self, x):
        return self.activation(self.norm(self.conv(x)))


def downsample(in_channels, out_channels):
    """4x4 stride-2 conv + IN + LeakyReLU(0.2): halves height and width."""
    return ConvNormAct(nn.Conv2d(in_channels, out_channels, 4, 2, 1), nn.LeakyReLU(0.2))


def upsample(in_channels, out_channels):
    """4x4 stride-2 transposed conv + IN + LeakyReLU(0.2): doubles height and width."""
    return ConvNormAct(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1), nn.LeakyReLU(0.2))


class ScaledFusion(nn.Module):
    """``transform_scale * transform(cat(side, main)) + main_scale * main`` (scalars init 1.0 and 0.5)."""

    def __init__(self, transform):
        super().__init__()
        self.transform = transform
        self.transform_scale = nn.Parameter(torch.tensor([1.0]))
        self.main_scale = nn.Parameter(torch.tensor([0.5]))

    def forward(self, side, main):
        return self.transform_scale * self.transform(torch.cat([side, main], 1)) + self.main_scale * main


def conv_fusion(in_channels, out_channels):
    """Fusion whose transform is a 1x1 conv + IN + ReLU (the cross-scale shortcuts)."""
    return ScaledFusion(ConvNormAct(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU()))


def hin_fusion(in_channels, out_channels):
    """Fusion whose transform is a half-instance-norm block (encoder -> decoder skips)."""
    return ScaledFusion(HalfInstanceNormBlock(in_channels, out_channels))


def processing_block(channels, block):
    if block == 'invertible':
        return InvertibleBlock(channels)
    return HalfInstanceNormBlock(channels, channels)


class CrossScaleUNet(nn.Module):
    """Two-level encoder-decoder at widths c, 2c, 4c with cross-scale shortcuts and scaled fusions.

    ``forward`` returns ``(features, bottleneck)``: the full-resolution ``c``-channel output and the
    ``4c``-channel 1/4-resolution output of :attr:`down_fusion2`.
    """

    def __init__(self, channels, block='invertible'):
        super().__init__()
        c = channels
        # encoder, level 1 (full -> 1/2)
        self.encoder_block1 = processing_block(c, block)
        self.downsample1 = downsample(c, 2 * c)
        self.down_shortcut1 = downsample(c, c)  # from the level's input, before its block
        self.down_fusion1 = conv_fusion(c + 2 * c, 2 * c)
        # encoder, level 2 (1/2 -> 1/4)
        self.encoder_block2 = processing_block(2 * c, block)
        self.downsample2 = downsample(2 * c, 4 * c)
        self.down_shortcut2 = downsample(2 * c, c)
        self.down_fusion2 = conv_fusion(c + 4 * c, 4 * c)  # its output is the bottleneck feature
        # bottom
        self.bottom_block = processing_block(4 * c, block)
        # decoder, level 2 (1/4 -> 1/2)
        self.upsample2 = upsample(4 * c, 2 * c)
        self.decoder_block2 = processing_block(2 * c, block)
        self.up_shortcut2 = upsample(4 * c, c)
        self.up_fusion2 = conv_fusion(c + 2 * c, 2 * c)
        self.skip_fusion2 = hin_fusion(2 * c + 2 * c, 2 * c)
        # decoder, level 1 (1/2 -> full)
        self.upsample1 = upsample(2 * c, c)
        self.decoder_block1 = processing_block(c, block)
        self.up_shortcut1 = upsample(2 * c, c)
        self.up_fusion1 = conv_fusion(c + c, c)
        self.skip_fusion1 = hin_fusion(c + c, c)

    def encode(self, x):
        """Returns the encoder features ``(level1, level2, bottleneck)``."""
        level1 = self.encoder_block1(x)
        half = self.down_fusion1(self.down_shortcut1(x), self.downsample1(level1))
        level2 = self.encoder_block2(half)
        bottleneck = self.down_fusion2(self.down_shortcut2(half), self.downsample2(level2))
        return level1, level2, bottleneck

    def forward(self, x):
        level1, level2, bottleneck = self.encode(x)
        bottom = self.bottom_block(bottleneck)

        decoded2 = self.decoder_block2(self.upsample2(bottom))
        decoded2 = self.up_fusion2(self.up_shortcut2(bottom), decoded2)
        decoded2 = self.skip_fusion2(level2, decoded2)

        decoded1 = self.decoder_block1(self.upsample1(decoded2))
        decoded1 = self.up_fusion1(self.up_shortcut1(decoded2), decoded1)
        decoded1 = self.skip_fusion1(level1, decoded1)
        return decoded1, bottleneck


@ARCH_REGISTRY.register()
@configurable(
    num_in_ch=Option(type=int, min=1, doc='input image channels'),
    num_out_ch=Option(type=int, min=1, doc='output image channels'),
    model_channel=Option(type=int, min=1, doc='C: the body runs at 2C/4C/8C channels (8 in the paper)'),
    block=Option(choices=BLOCK_TYPES, doc='processing block: invertible = CNN-I, half_instance_norm = CNN-H'))
class UHDUNet(nn.Module):
    """UHD low-light enhancer of LMAR: CNN-I (``block='invertible'``) or CNN-H (``block='half_instance_norm'``).

    Args:
        num_in_ch: input channels (3).
        num_out_ch: output channels (3).
        model_channel: ``C``; the stem outputs ``2C`` channels and the U-Net runs at ``2C/4C/8C``.
        block: the processing block at every U-Net level.

    Heights/widths that are not multiples of 4 are padded and the output cropped back (module doc).
    """

    #: Module whose output is LMAR's bottleneck feature (``8C`` channels at 1/4 resolution; authors'
    #: ``hr_backbone.skip2``). Use with ``net.get_submodule(UHDUNet.BOTTLENECK_LAYER)``.
    BOTTLENECK_LAYER = 'body.down_fusion2'
    #: Resolution divisor of the bottleneck feature.
    BOTTLENECK_STRIDE = 4

    def __init__(self, num_in_ch=3, num_out_ch=3, model_channel=8, block='invertible'):
        super().__init__()
        width = 2 * model_channel
        self.stem = nn.Sequential(
            nn.Conv2d(num_in_ch, width, 3, padding=1, bias=False), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.ReLU())
        self.body = CrossScaleUNet(width, block)
        self.head = nn.Conv2d(width, num_out_ch, 1, bias=False)
        self.bottleneck_channels = 4 * width

    def forward(self, x):
        x, (h, w) = pad_to_multiple(x, SIZE_MULTIPLE, MIN_SIZE)
        features, _ = self.body(self.stem(x))
        return self.head(features)[..., :h, :w]

    def bottleneck_features(self, x):
        """The bottleneck feature of ``x`` (``8C`` channels, ``ceil(H/4) x ceil(W/4)``), running only the
        stem and the encoder; equal to what a hook on :attr:`BOTTLENECK_LAYER` sees in ``forward``."""
        x, _ = pad_to_multiple(x, SIZE_MULTIPLE, MIN_SIZE)
        return self.body.encode(self.stem(x))[2]
