"""CAR (Sun & Chen, "Learned Image Downscaling for Upscaling using Content Adaptive Resampler", TIP 2020).

* :class:`CARResamplerNet` -- the kernel-generation network: HR image -> per-LR-pixel kernels and offsets
  for :func:`basicsr_lmar.ops.adaptive_resample.adaptive_resample`. Layer for layer the authors'
  network (``sunwj/CAR``, ``modules.py``), with its trainable parameter counts (10,645,651 at x2,
  9,896,443 at x4); the DIV2K mean subtraction is a fixed buffer.
* :class:`BicubicUpscaler` -- a parameter-free, differentiable bicubic upscaler (``network_sr`` for the
  paper's "CAR trained under bicubic upscaling").
* :class:`CARRescaler` -- the rescaler adapter (in ``RESCALER_REGISTRY``) pairing a resampler net with an upscaler, exposing
  ``downscale(hr) -> lr``, ``upscale(lr) -> hr`` and ``scale`` (both differentiable; no quantisation).
  This is the interface test-time methods such as HCD use.

Size policy: the resampler works on HR images whose height and width are multiples of 8 (three
pixel-unshuffles) and of ``scale``; other sizes raise an error naming the size and the nearest valid
crop. Crop (or pad) before calling; ``scripts/car_rescale.py`` crops to the multiple by default, as the
authors did (``--size-policy pad`` pads); :attr:`CARRescaler.hr_size_multiple` states the multiple.
"""
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from basicsr_lmar.ops.adaptive_resample import (IMPLEMENTATIONS, adaptive_resample, kernel_size_for_scale,
                                                resize_equivalent_kernel)
from basicsr_lmar.ops.resize import resize
from basicsr_lmar.ops.rounding import check_rounding, quantize_lr
from basicsr_lmar.options import Option, OptionError, configurable
from basicsr_lmar.registry import RESCALER_REGISTRY

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
SIZE_MULTIPLE = 8
KERNEL_INITS = ('default', 'bicubic', 'box')


def _conv3x3(in_channels, out_channels):
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode='reflect')


class _ResidualBlock(nn.Module):
    """x + conv(lrelu(conv(x))), reflection-padded 3x3 convolutions."""

    def __init__(self, channels, negative_slope=0.2):
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.act = nn.LeakyReLU(negative_slope)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


def _downsample(in_channels, out_channels):
    """Pixel-unshuffle by 2 then a 1x1 convolution."""
    return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(in_channels * 4, out_channels, 1))


def _branch_trunk(channels, upscale):
    """Three 3x3 conv + ReLU, a 1x1 conv + pixel-shuffle up to the LR grid, a 3x3 conv + ReLU."""
    layers = []
    for _ in range(3):
        layers += [_conv3x3(channels, channels), nn.ReLU()]
    layers += [nn.Conv2d(channels, channels * upscale**2, 1), nn.PixelShuffle(upscale)]
    layers += [_conv3x3(channels, channels), nn.ReLU()]
    return nn.Sequential(*layers)


def _map_head(channels, elements, final=None):
    layers = [_conv3x3(channels, channels), nn.ReLU(), _conv3x3(channels, elements)]
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


def check_hr_size(height, width, scale, owner='CARResamplerNet'):
    """Raises a ValueError naming the size when it is not a multiple of 8 and of ``scale``."""
    multiple = math.lcm(SIZE_MULTIPLE, scale)
    if height % multiple or width % multiple:
        raise ValueError(f'{owner}: HR size {height}x{width} must be a multiple of {multiple} (8 for the three '
                         f'pixel-unshuffles, and the scale {scale}); crop to '
                         f'{height - height % multiple}x{width - width % multiple} or pad the image first')
    return multiple


@ARCH_REGISTRY.register()
@configurable(
    scale=Option(type=int, choices=(2, 4, 8), doc='downscaling factor; kernels are (3*scale+1)^2'),
    in_channels=Option(min=1), num_feat=Option(min=1), body_feat=Option(min=1), top_feat=Option(min=1),
    num_block=Option(min=0), negative_slope=Option(min=0.0), kernel_min=Option(min=0.0, exclusive_min=True),
    impl=Option(choices=IMPLEMENTATIONS, doc='adaptive_resample implementation used by downscale()'),
    signed_kernels=Option(doc='kernels may be negative (shifted to sum 1, no clamp); a departure from the paper'),
    kernel_init=Option(choices=KERNEL_INITS, doc="start of the kernel and offset heads: default (PyTorch's), bicubic "
                       '(exactly bicubic downscaling; needs signed_kernels) or box'),
    kernel_l1_max=Option(min=1.0, exclusive_min=True, nullable=True,
                         doc='signed kernels: largest L1 norm (gain on contrast) a kernel may reach; ~ = unbounded'))
class CARResamplerNet(nn.Module):
    """The CAR kernel-generation network.

    ``forward(hr)`` returns ``(kernels, offsets_h, offsets_v)``, each (N, k*k, H/s, W/s) with k = 3s + 1:
    kernels clamped to [kernel_min, 1] and normalised to sum 1 over the k*k elements (with
    ``signed_kernels``: unclamped, shifted to sum 1, so elements may be negative); offsets in (-1, 1)
    (units of ``scale`` HR pixels). ``downscale(hr)`` applies them with ``adaptive_resample``.

    Args:
        scale: downscaling factor (2, 4 or 8; the authors released 2 and 4).
        in_channels: image channels (3; the DIV2K mean is subtracted only for 3 channels).
        num_feat: channels of the full-resolution 5x5 head (64).
        body_feat: channels at 1/2 and 1/4 resolution and in the residual blocks (128).
        top_feat: channels at 1/8 resolution and in both branches (256).
        num_block: residual blocks at 1/4 resolution (5).
        negative_slope: LeakyReLU slope of the encoder (0.2).
        kernel_min: lower clamp of the raw kernel weights before normalisation (1e-6).
        impl: implementation of the resampling op used by :meth:`downscale` ('auto').
        signed_kernels: False (the paper): raw weights clamped to [kernel_min, 1], divided by their sum.
            True (beyond the paper): ``raw - mean(raw) + 1/k^2`` -- sums to 1, any sign, every element
            keeps its gradient. Under a fixed linear upscaler the best LR is one signed (negative-lobed)
            kernel, which the clamp cannot express (docs/car.md). The parameters are the same, so
            checkpoints load either way; only the mapping from the head's output changes.
        kernel_l1_max: with ``signed_kernels``, the deviation ``raw - mean(raw)`` from the flat kernel is
            scaled down where its L1 norm exceeds ``kernel_l1_max - 1``, so that ``sum |K| <= kernel_l1_max``:
            an LR pixel stays within ``kernel_l1_max`` half-ranges of its samples around their mid-range.
            Unbounded, a jointly trained head keeps raising its gain (8-bit rounding noise is fixed, so a
            louder LR carries more detail until it clips), and at a learning rate of 5e-4 it produced kernels
            that wrecked a photo unlike its training crops (17.8 dB where bicubic LR + SR gives 28.2).
            The default 5 leaves bicubic-like kernels (sum |K| = 1.6 at x2, 1.4 at x4) untouched;
            ``None`` removes the bound. Clamped kernels always have ``sum |K| = 1``.
        kernel_init: where training starts. 'default': PyTorch's initialisation of every layer (the
            kernels start as a random content-dependent mix). 'bicubic': the kernel head's last convolution
            has zero weights and the bias :func:`resize_equivalent_kernel` (scale), the offset heads' last
            convolutions are zero, so ``downscale`` starts as bicubic downscaling (to ~63 dB at x4, exact at
            x2) and an SR network pre-trained on bicubic LR meets the LR it knows; needs
            ``signed_kernels`` (bicubic has negative lobes). 'box': the same with the box kernel (equal
            weights on the central 3x3 elements, i.e. (1, 2, 2, 1)/6 per axis at x4), which the clamped
            head can hold (the other elements at ``10 * kernel_min``, inside the clamp's range). The heads'
            zero weights still receive gradients, so the kernels can become content-adaptive as they train.
    """

    def __init__(self, scale=4, in_channels=3, num_feat=64, body_feat=128, top_feat=256, num_block=5,
                 negative_slope=0.2, kernel_min=1e-6, impl='auto', signed_kernels=False, kernel_init='default',
                 kernel_l1_max=5.0):
        super().__init__()
        self.scale = scale
        self.kernel_size = kernel_size_for_scale(scale)
        self.kernel_min = kernel_min
        self.impl = impl
        self.signed_kernels = signed_kernels
        self.kernel_l1_max = kernel_l1_max
        elements = self.kernel_size**2
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.0, ) * in_channels
        self.register_buffer('rgb_mean', torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, num_feat, 5, padding=2, padding_mode='reflect'), nn.LeakyReLU(negative_slope))
        self.down2 = _downsample(num_feat, body_feat)
        self.down4 = _downsample(body_feat, body_feat)
        self.body = nn.Sequential(*[_ResidualBlock(body_feat, negative_slope) for _ in range(num_block)])
        self.down8 = _downsample(body_feat, top_feat)
        self.kernel_trunk = _branch_trunk(top_feat, SIZE_MULTIPLE // scale)
        self.kernel_head = _map_head(top_feat, elements)
        self.offset_trunk = _branch_trunk(top_feat, SIZE_MULTIPLE // scale)
        self.offset_h_head = _map_head(top_feat, elements, nn.Tanh())
        self.offset_v_head = _map_head(top_feat, elements, nn.Tanh())
        self.start_heads(kernel_init)

    def start_heads(self, kernel_init):
        """Sets the heads' last convolutions for ``kernel_init`` (see the class docstring)."""
        if kernel_init == 'default':
            return
        if kernel_init == 'bicubic' and not self.signed_kernels:
            raise OptionError('CARResamplerNet: kernel_init: bicubic needs signed_kernels: true (bicubic downscaling '
                              'has negative lobes, which the clamped head cannot hold); use kernel_init: box for the '
                              "paper's clamped kernels")
        if kernel_init == 'bicubic':
            kernel = resize_equivalent_kernel(self.scale, 'bicubic')
        else:
            index = torch.arange(self.kernel_size) - self.kernel_size // 2
            central = index.abs() <= 1
            kernel = (central.view(-1, 1) & central.view(1, -1)).double().flatten()
            kernel = kernel / kernel.sum()
            if not self.signed_kernels:  # the other elements just inside the clamp's range, where it passes gradient
                kernel = kernel.clamp(min=10 * self.kernel_min)
        last = self.kernel_head[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(kernel)
            for head in (self.offset_h_head, self.offset_v_head):
                head[-2].weight.zero_()
                head[-2].bias.zero_()

    def forward(self, hr):
        check_hr_size(hr.shape[-2], hr.shape[-1], self.scale)
        x = self.head(hr - self.rgb_mean)
        x = self.down4(self.down2(x))
        x = self.down8(x + self.body(x))
        kernels = self.normalise_kernels(self.kernel_head(self.kernel_trunk(x)))
        offsets = self.offset_trunk(x)
        return kernels, self.offset_h_head(offsets), self.offset_v_head(offsets)

    def normalise_kernels(self, raw):
        """The kernel head's raw output (N, k*k, h, w) -> kernels summing to 1 over dim 1."""
        if self.signed_kernels:
            deviation = raw - raw.mean(1, keepdim=True)
            if self.kernel_l1_max is not None:  # sum |K| <= 1 + sum |deviation| <= kernel_l1_max
                budget = self.kernel_l1_max - 1.0
                deviation = deviation * (budget / deviation.abs().sum(1, keepdim=True).clamp(min=budget))
            return deviation + 1.0 / raw.shape[1]
        raw = raw.clamp(self.kernel_min, 1)
        return raw / raw.sum(1, keepdim=True).clamp(min=self.kernel_min)

    def apply_maps(self, hr, maps, rounding=None, soft_round_alpha=1.0):
        """The CAR downscale chain after the network: ``adaptive_resample`` with ``impl``, then, when
        ``rounding`` is given, a clamp to [0, 1] and ``quantize_8bit(lr, rounding)``.

        ``maps`` = ``self(hr)``; a model calls ``self.net_g(hr)`` itself so that a DDP wrapper sees the
        forward. The op always runs in fp32 outside autocast (the maps may come from a bf16/fp16
        forward). ``rounding``: None = the raw LR (differentiable, unclamped: HCD's rescaler protocol),
        or one of ``basicsr_lmar.ops.rounding.QUANTIZE_MODES`` ('round' at test; 'soft_ste', 'soft', 'ste' or
        'none' in training; 'soft_ste' and 'ste' train on the values test-time rounding gives).
        """
        check_rounding(rounding, 'CARResamplerNet')
        kernels, offsets_h, offsets_v = (m.float() for m in maps)
        with torch.autocast(hr.device.type, enabled=False):
            lr = adaptive_resample(hr.float(), kernels, offsets_h, offsets_v, self.scale, impl=self.impl)
        return quantize_lr(lr, rounding, soft_round_alpha)

    @torch.no_grad()
    def adaptivity(self, maps):
        """How far the maps ``self(hr)`` adapt to the content: ``{'kernel_spread': ..., 'offset_length': ...}``.

        ``kernel_spread``: the standard deviation of each kernel element over the LR positions, in units of the
        mean weight 1/k², averaged over the elements; 0 when one kernel is used everywhere. It is taken within
        each phase of the branches' pixel-shuffle (every ``8 / scale``-th LR pixel): a network that ignores the
        content still makes a fixed periodic pattern with that period, which is not adaptation.
        ``offset_length``: the offsets' mean length, in HR pixels."""
        kernels, offsets_h, offsets_v = (m.float() for m in maps)
        period = max(SIZE_MULTIPLE // self.scale, 1)
        n, elements, height, width = kernels.shape
        height, width = height - height % period, width - width % period
        phases = kernels[..., :height, :width].reshape(n, elements, height // period, period, width // period, period)
        spread = phases.permute(0, 1, 3, 5, 2, 4).flatten(4).std(4).mean() * elements
        length = (offsets_h.square() + offsets_v.square()).sqrt().mean() * self.scale
        return {'kernel_spread': float(spread), 'offset_length': float(length)}

    def downscale(self, hr, rounding=None, soft_round_alpha=1.0):
        """HR (N, C, H, W) -> LR (N, C, H/s, W/s): ``apply_maps(hr, self(hr), rounding)``, the one entry
        that scripts and benchmarks call (``rounding='round'`` gives the 8-bit LR a user stores)."""
        return self.apply_maps(hr, self(hr), rounding, soft_round_alpha)


@ARCH_REGISTRY.register()
@configurable(scale=Option(type=int, min=1), kernel=Option(choices=('bicubic', 'bilinear', 'lanczos3')))
class BicubicUpscaler(nn.Module):
    """Parameter-free differentiable upscaler (``basicsr_lmar.ops.resize.resize``), bicubic by default,
    pixel-centre aligned, reflecting at the borders."""

    def __init__(self, scale=4, kernel='bicubic'):
        super().__init__()
        self.scale = scale
        self.kernel = kernel

    def forward(self, lr):
        size = (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        return resize(lr, size, kernel=self.kernel, antialias=True, boundary='reflect')


@RESCALER_REGISTRY.register()
class CARRescaler(nn.Module):
    """A trained CAR pair as a rescaler: ``downscale(hr) -> lr`` and ``upscale(lr) -> hr``.

    Both are differentiable (w.r.t. their input and the parameters); neither clamps nor quantises, so
    callers (HCD, ``CARModel``) decide where the 8-bit rounding goes. Registered in the rescaler
    registry: ``HCDModel`` builds it from the option sections named like its arguments (those of
    ``CARModel``).

    Args:
        network_g: the :class:`CARResamplerNet`.
        network_sr: an SR network mapping LR to HR at its scale (EDSR, ``BicubicUpscaler``, ...), or None
            for bicubic.
    """

    def __init__(self, network_g, network_sr=None):
        super().__init__()
        if not isinstance(network_g, CARResamplerNet):
            raise TypeError(f'CARRescaler: network_g must be a CARResamplerNet, got {type(network_g).__name__}')
        self.resampler = network_g
        self.upscaler = network_sr if network_sr is not None else BicubicUpscaler(network_g.scale)

    @property
    def scale(self):
        return self.resampler.scale

    @property
    def hr_size_multiple(self):
        """HR heights and widths must be multiples of this (8 and the scale; tools fit sizes to it)."""
        return math.lcm(SIZE_MULTIPLE, self.scale)

    def downscale(self, hr):
        return self.resampler.downscale(hr)

    def upscale(self, lr):
        return self.upscaler(lr)

    def forward(self, hr):
        """Round trip without quantisation: ``upscale(downscale(hr))``."""
        return self.upscale(self.downscale(hr))
