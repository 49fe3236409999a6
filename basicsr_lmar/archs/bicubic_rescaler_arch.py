"""Rescaler adapter for a fixed downscaling kernel followed by any SR network.

``BicubicSRRescaler(network_g, scale)``: ``downscale`` is :func:`basicsr_lmar.ops.resize.resize`
(bicubic with MATLAB-style antialiasing by default), ``upscale`` is the SR network. Both are
differentiable, so HCD can refine the LR fed to a plain SR model trained on bicubic LR images. With
``network_g=None`` the upscaler is the same resize kernel (a network-free rescaler, handy for tests).
"""
from torch import nn

from basicsr_lmar.ops.resize import KERNELS, resize
from basicsr_lmar.options import Option, configurable
from basicsr_lmar.registry import RESCALER_REGISTRY


@RESCALER_REGISTRY.register()
@configurable(
    scale=Option(type=int, min=1, doc='downscaling factor; must equal the SR network upscale'),
    kernel=Option(choices=KERNELS, doc='downscaling kernel of basicsr_lmar.ops.resize'),
    antialias=Option(type=bool, doc='stretch the kernel when downscaling (MATLAB imresize)'))
class BicubicSRRescaler(nn.Module):
    """Rescaler protocol: kernel downscaling + an SR network (or the same kernel) for upscaling."""

    def __init__(self, network_g=None, scale=4, kernel='bicubic', antialias=True):
        super().__init__()
        self.sr_net = network_g
        self.scale = scale
        self.kernel = kernel
        self.antialias = antialias

    def downscale(self, hr):
        h, w = hr.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f'BicubicSRRescaler: HR size {h}x{w} is not a multiple of scale {self.scale}; '
                             'crop the image first')
        return resize(hr, (h // self.scale, w // self.scale), kernel=self.kernel, antialias=self.antialias)

    def upscale(self, lr):
        if self.sr_net is None:
            h, w = lr.shape[-2:]
            return resize(lr, (h * self.scale, w * self.scale), kernel=self.kernel, antialias=self.antialias)
        return self.sr_net(lr)
