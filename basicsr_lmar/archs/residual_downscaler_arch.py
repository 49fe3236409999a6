"""``ResidualDownscaler``: a baseline learned downscaler, bicubic downscaling plus a learned residual.

``lr = bicubic_down(hr) + residual(hr)``, the residual from a small strided encoder (a 3x3 convolution at
every resolution, a pixel-unshuffle by 2 between them, LeakyReLU 0.2) whose last convolution starts at zero,
so training starts exactly at bicubic downscaling. It is the reference point for learned downscalers such as
CAR trained jointly with an SR network: it can move every LR value, where CAR can only choose a weighted mean
of HR samples, one kernel for all three channels.

``channels`` says which LR values the residual may move:

* ``rgb``: the three channels independently. Trained jointly with an SR network and scored on Y (the SR
  metric), it writes luminance detail into the LR's colour: a grayscale photo's LR comes out coloured.
* ``luma``: one residual added to all three channels, so the LR's colour differences stay bicubic's (as
  with CAR's shared kernel, which cannot colour a grayscale photo either).
* ``chroma``: only the part orthogonal to the Y weights (ITU-R BT.601, basicsr's ``rgb2ycbcr``), so the
  LR's Y channel stays bicubic's and only its colour carries what the network learns.
* ``none``: no residual and no parameters: plain bicubic downscaling, the baseline that the learned
  downscalers are measured against, run through the same model and rounding as they are.
"""
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from basicsr_lmar.ops.resize import resize
from basicsr_lmar.ops.rounding import check_rounding, quantize_lr
from basicsr_lmar.options import Option, configurable

Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)
RESIDUAL_CHANNELS = ('rgb', 'luma', 'chroma', 'none')


@ARCH_REGISTRY.register()
@configurable(
    scale=Option(type=int, choices=(2, 4, 8), doc='downscaling factor'),
    num_feat=Option(min=1, doc='channels of the encoder convolutions'),
    channels=Option(choices=RESIDUAL_CHANNELS,
                    doc='which LR values the residual moves: rgb | luma | chroma | none (bicubic alone)'))
class ResidualDownscaler(nn.Module):
    """Bicubic downscaling plus a zero-initialised learned residual (see the module docstring).

    Args:
        scale: downscaling factor (2, 4 or 8); the encoder has ``log2(scale)`` pixel-unshuffles.
        num_feat: channels of the encoder's convolutions (32).
        channels: ``rgb`` (three free channels), ``luma`` (one residual for all three), ``chroma``
            (no change of the Y channel) or ``none`` (no residual: bicubic downscaling, no parameters).
    """

    def __init__(self, scale=4, num_feat=32, channels='rgb'):
        super().__init__()
        self.scale = scale
        self.channels = channels
        self.encoder = self.residual = None
        if self.learns(channels):
            layers = []
            width = 3
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(width, num_feat, 3, padding=1), nn.LeakyReLU(0.2), nn.PixelUnshuffle(2)]
                width = num_feat * 4
            self.encoder = nn.Sequential(*layers)
            self.residual = nn.Conv2d(width, 1 if channels == 'luma' else 3, 3, padding=1)
            nn.init.zeros_(self.residual.weight)
            nn.init.zeros_(self.residual.bias)
        self.register_buffer('y_weights', torch.tensor(Y_WEIGHTS).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def learns(channels):
        """Whether a downscaler of these ``channels`` has parameters (``none``: bicubic downscaling alone)."""
        return channels != 'none'

    def forward(self, hr):
        """HR (N, 3, H, W), H and W multiples of ``scale`` -> LR (N, 3, H/s, W/s), neither clamped nor rounded."""
        height, width = hr.shape[-2:]
        if hr.dim() != 4 or hr.shape[1] != 3 or height % self.scale or width % self.scale:
            raise ValueError(f'ResidualDownscaler: expected an RGB batch (N, 3, H, W) with H and W multiples of '
                             f'the scale {self.scale}; got shape {tuple(hr.shape)} (crop to '
                             f'{height - height % self.scale}x{width - width % self.scale})')
        bicubic = resize(hr, (height // self.scale, width // self.scale), 'bicubic', antialias=True,
                         boundary='reflect')
        if self.residual is None:
            return bicubic
        residual = self.residual(self.encoder(hr))
        if self.channels == 'chroma':  # remove the component along the Y weights
            weights = self.y_weights
            residual = residual - (residual * weights).sum(1, keepdim=True) / weights.square().sum() * weights
        return bicubic + residual

    def quantize(self, lr, rounding=None, soft_round_alpha=1.0):
        """The chain after the network: with ``rounding`` (one of ``QUANTIZE_MODES``) a clamp to [0, 1] and
        the 8-bit quantisation ``quantize_8bit``; ``None`` leaves ``lr`` as it is. A model calls
        ``self.net_g(hr)`` itself (so that a DDP wrapper sees the forward) and then this."""
        check_rounding(rounding, 'ResidualDownscaler')
        return quantize_lr(lr, rounding, soft_round_alpha)

    def downscale(self, hr, rounding=None, soft_round_alpha=1.0):
        """``quantize(forward(hr), rounding)``: the one entry that scripts call (``'round'`` gives the 8-bit LR
        a user stores)."""
        return self.quantize(self(hr), rounding, soft_round_alpha)
