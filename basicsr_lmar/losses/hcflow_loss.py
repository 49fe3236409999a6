"""HCFlow's latent loss (Liang et al., ICCV 2021): the mean square of all latents together.

``loss_weight * mean(cat(z_0.flatten(), z_1.flatten(), ...) ** 2)``: every latent element counts once
(a level with more elements weighs more), as the authors' ``(torch.cat([z1.flatten(), z2.flatten()]) ** 2).mean()``.
It pulls the standardised latents towards the N(0, 1) that reconstruction samples from.
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from basicsr_lmar.options import Option, configurable


@LOSS_REGISTRY.register()
@configurable(loss_weight=Option(min=0, doc='lambda (the authors: 1e-5)'))
class LatentMeanSquareLoss(nn.Module):
    """``loss_weight * mean of z^2`` over the elements of a list (or one tensor) of latents."""

    def __init__(self, loss_weight=1e-5):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, latents):
        latents = [latents] if torch.is_tensor(latents) else list(latents)
        return self.loss_weight * torch.cat([z.flatten() for z in latents]).pow(2).mean()
