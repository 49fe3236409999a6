"""The patch discriminator of LMAR's released training code (adversarial term, paper eq. 12-13).

Four 4x4 stride-2 convolutions (padding 1, with bias) of ``num_feat`` channels each followed by
LeakyReLU(0.2), then a zero pad of one pixel on the top and left and a 4x4 convolution (padding 1, no
bias) to one channel: an (h/16, w/16) map of real/fake scores for an (h, w) image.
"""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from basicsr_lmar.options import Option, configurable


@ARCH_REGISTRY.register()
@configurable(num_in_ch=Option(type=int, min=1), num_feat=Option(type=int, min=1), num_down=Option(type=int, min=1))
class LMARPatchDiscriminator(nn.Module):
    """Tiny PatchGAN critic on the resampled low-resolution image (4 channels in the released code)."""

    def __init__(self, num_in_ch=3, num_feat=4, num_down=4):
        super().__init__()
        layers, channels = [], num_in_ch
        for _ in range(num_down):
            layers += [nn.Conv2d(channels, num_feat, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = num_feat
        layers += [nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(channels, 1, 4, padding=1, bias=False)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)
