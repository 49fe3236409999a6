"""IRN: Invertible Image Rescaling (Xiao et al., ECCV 2020) as a BasicSR arch, and its rescaler adapter.

One bijection maps an HR image (3 channels, H x W) to ``3 * s^2`` channels at H/s x W/s: the first 3
channels are the LR image, the rest ``z`` is trained to follow N(0, 1). Each of the ``log2(s)`` levels
is a Haar wavelet transform (orthogonal up to scale: 4 sub-bands, channels x4, resolution /2) followed
by ``block_num[i]`` affine coupling blocks. A coupling block splits the channels into the LR part
``a`` (first 3) and the rest ``b``::

    a' = a + F(b)
    b' = b * exp(s) + G(a'),   s = clamp * (2 * sigmoid(H(a')) - 1)

and is inverted exactly in reverse order. F, G, H are 5-conv dense blocks (growth 32, LeakyReLU 0.2,
Xavier init x0.1, the last conv zero-initialised so that every block starts as the identity).

Trainable parameters: 1,667,952 for x2 (``block_num=[8]``) and 4,355,136 for x4 (``[8, 8]``).

:class:`IRNRescaler` wraps a trained net into the rescaler protocol that HCD uses
(``downscale``/``upscale``/``scale``; see :mod:`basicsr_lmar.ops.collaborative_downscaling`).
"""
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from basicsr_lmar.ops.latents import LATENT_POLICIES, LatentDraws
from basicsr_lmar.options import Option, configurable
from basicsr_lmar.registry import RESCALER_REGISTRY


def haar_downsample(x: torch.Tensor) -> torch.Tensor:
    """Haar wavelet analysis: (N, C, H, W) -> (N, 4C, H/2, W/2).

    Sub-band-major channel order ``[average, horizontal, vertical, diagonal]`` x C, each the 2x2 block
    filtered by a +-1 pattern and divided by 4 (the layout of the authors' grouped conv).
    """
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f'haar_downsample: height and width must be even, got {tuple(x.shape[-2:])}; '
                         'crop or pad the image to a multiple of the scale')
    top_left, top_right = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    bottom_left, bottom_right = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    average = top_left + top_right + bottom_left + bottom_right
    horizontal = top_left - top_right + bottom_left - bottom_right
    vertical = top_left + top_right - bottom_left - bottom_right
    diagonal = top_left - top_right - bottom_left + bottom_right
    return torch.cat((average, horizontal, vertical, diagonal), dim=1) / 4


def haar_upsample(x: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`haar_downsample`: (N, 4C, h, w) -> (N, C, 2h, 2w)."""
    if x.shape[1] % 4:
        raise ValueError(f'haar_upsample: channel count must be a multiple of 4, got {x.shape[1]}')
    average, horizontal, vertical, diagonal = x.chunk(4, dim=1)
    top_left = average + horizontal + vertical + diagonal
    top_right = average - horizontal + vertical - diagonal
    bottom_left = average + horizontal - vertical - diagonal
    bottom_right = average - horizontal - vertical + diagonal
    n, c, h, w = average.shape
    top = torch.stack((top_left, top_right), dim=-1).reshape(n, c, h, 2 * w)
    bottom = torch.stack((bottom_left, bottom_right), dim=-1).reshape(n, c, h, 2 * w)
    return torch.stack((top, bottom), dim=-2).reshape(n, c, 2 * h, 2 * w)


def haar_levels(arch, scale, **per_level):
    """The number of Haar levels of a rescaler of ``scale`` (a power of 2: log2(scale)); a ``ValueError``
    naming ``arch`` and the key when a list of ``per_level`` does not have one entry per level."""
    levels = int(round(math.log2(scale)))
    for key, value in per_level.items():
        if len(value) != levels:
            example = f', e.g. {[value[-1]] * levels}' if len(value) else ''
            raise ValueError(f'{arch}: {key} {list(value)} needs one entry per level, log2(scale={scale}) = '
                             f'{levels} entries{example}')
    return levels


class HaarStep(nn.Module):
    """A parameter-free invertible step: Haar analysis forward, synthesis in reverse."""

    def forward(self, x, rev=False):
        return haar_upsample(x) if rev else haar_downsample(x)


class DenseSubnet(nn.Module):
    """Five 3x3 convs with dense connections (each sees the input and all previous features)."""

    def __init__(self, in_channels, out_channels, growth=32, init='xavier'):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels + i * growth, growth if i < 4 else out_channels, 3, 1, 1) for i in range(5))
        for conv in self.convs[:4]:
            if init == 'xavier':
                nn.init.xavier_normal_(conv.weight)
            else:
                nn.init.kaiming_normal_(conv.weight, a=0, mode='fan_in')
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)
        # The last conv starts at zero: every coupling block is the identity at initialisation.
        nn.init.zeros_(self.convs[4].weight)
        nn.init.zeros_(self.convs[4].bias)

    def forward(self, x):
        features = [x]
        for conv in self.convs[:4]:
            features.append(F.leaky_relu(conv(torch.cat(features, dim=1)), 0.2))
        return self.convs[4](torch.cat(features, dim=1))


class AffineCoupling(nn.Module):
    """Affine coupling block on ``channels`` = LR part (``split``) + the rest; exact inverse with rev."""

    def __init__(self, channels, split=3, clamp=1.0, growth=32, init='xavier'):
        super().__init__()
        self.split = split
        self.clamp = clamp
        rest = channels - split
        self.lr_update = DenseSubnet(rest, split, growth, init)  # F: rest -> additive update of the LR part
        self.rest_shift = DenseSubnet(split, rest, growth, init)  # G: LR part -> shift of the rest
        self.rest_log_scale = DenseSubnet(split, rest, growth, init)  # H: LR part -> log-scale of the rest

    def _log_scale(self, lr_part):
        return self.clamp * (2 * torch.sigmoid(self.rest_log_scale(lr_part)) - 1)

    def forward(self, x, rev=False):
        lr_part, rest = x[:, :self.split], x[:, self.split:]
        if not rev:
            lr_part = lr_part + self.lr_update(rest)
            rest = rest * torch.exp(self._log_scale(lr_part)) + self.rest_shift(lr_part)
        else:
            rest = (rest - self.rest_shift(lr_part)) * torch.exp(-self._log_scale(lr_part))
            lr_part = lr_part - self.lr_update(rest)
        return torch.cat((lr_part, rest), dim=1)


@ARCH_REGISTRY.register()
@configurable(
    in_channels=Option(min=1, doc='image channels'),
    scale=Option(type=int, choices=(2, 4, 8), doc='downscaling factor, a power of 2'),
    block_num=Option(type=(list, tuple), min=0, doc='coupling blocks after each Haar level, one per log2(scale)'),
    growth=Option(min=1, doc='dense block growth channels'),
    clamp=Option(min=0, exclusive_min=True, doc='bound of the coupling log-scale'),
    init=Option(choices=('xavier', 'kaiming'), doc='initialisation of the dense block convs'))
class InvRescaleNet(nn.Module):
    """Invertible rescaling network.

    ``forward(x)`` maps HR (N, C, H, W) to (N, C*s^2, H/s, W/s) whose first C channels are the LR
    image; ``forward(y, rev=True)`` is the exact inverse. :meth:`downscale` / :meth:`upscale` split and
    join the LR image and the latent ``z``.
    """

    def __init__(self, in_channels=3, scale=4, block_num=(8, 8), growth=32, clamp=1.0, init='xavier'):
        super().__init__()
        haar_levels('InvRescaleNet', scale, block_num=block_num)
        self.in_channels = in_channels
        self.scale = scale
        steps = []
        channels = in_channels
        for blocks in block_num:
            steps.append(HaarStep())
            channels *= 4
            steps.extend(AffineCoupling(channels, in_channels, clamp, growth, init) for _ in range(blocks))
        self.steps = nn.ModuleList(steps)

    def forward(self, x, rev=False):
        for step in (reversed(self.steps) if rev else self.steps):
            x = step(x, rev=rev)
        return x

    def downscale(self, hr):
        """HR -> (LR, z): the first ``in_channels`` output channels and the rest."""
        out = self(hr)
        return out[:, :self.in_channels], out[:, self.in_channels:]

    def upscale(self, lr, z):
        """(LR, z) -> HR through the inverse."""
        return self(torch.cat((lr, z), dim=1), rev=True)

    def latent_shape(self, lr_shape):
        n, c, h, w = lr_shape
        return (n, c * (self.scale**2 - 1), h, w)


@RESCALER_REGISTRY.register()
@configurable(
    z_policy=Option(choices=LATENT_POLICIES, doc='latent z used by upscale'),
    gaussian_scale=Option(min=0, doc='standard deviation of the sampled z'))
class IRNRescaler(nn.Module):
    """Rescaler protocol for a trained :class:`InvRescaleNet`.

    ``downscale(hr)`` is the first 3 channels of the forward pass, *not* quantised (the caller, e.g.
    HCD, quantises the LR it stores). ``upscale(lr)`` inverts ``[lr, z]`` with the z policy:

    - ``'seeded'`` (default): z ~ N(0, gaussian_scale^2) drawn from a generator seeded with ``z_seed``
      for one image of the LR size and reused for every image of the batch and every call. So a
      gradient-based refinement and the final reconstruction see the same z, results do not depend on
      the batch composition, and z follows the distribution IRN was trained to expect.
    - ``'zero'``: z = 0 (the mode of N(0, 1)).
    - ``'random'``: a fresh draw on every call (the authors' test code); not deterministic.
    """

    def __init__(self, network_g, z_policy='seeded', z_seed=0, gaussian_scale=1.0):
        super().__init__()  # z_policy is checked by the option schema (@configurable)
        self.net, self.scale = network_g, network_g.scale
        self.draw = LatentDraws(gaussian_scale, z_policy, z_seed)

    def downscale(self, hr):
        return self.net.downscale(hr)[0]

    def latent(self, lr):
        return self.draw([self.net.latent_shape(lr.shape)], lr)[0]

    def upscale(self, lr):
        return self.net.upscale(lr, self.latent(lr))[:, :lr.shape[1]]
