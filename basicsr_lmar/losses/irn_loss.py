"""IRN's training losses (Xiao et al., ECCV 2020), with the authors' reductions.

The authors sum each loss over the pixels of an image and average over the batch (not a per-pixel
mean), which is what their weights (LR fit x16, latent x1, reconstruction x1) are tuned for.

- :class:`PerImageSumLoss` ``criterion='l2'``: sum of squared errors per image (the LR fit against the
  bicubic-downscaled GT); ``'charbonnier'``: sum of sqrt(diff^2 + eps) per image (the HR reconstruction,
  the authors' "l1").
- :class:`LatentGaussianLoss`: sum of z^2 per image, the negative log-likelihood of N(0, 1) up to a
  constant, which pushes the latent towards the distribution sampled at test time.
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from basicsr_lmar.options import Option, configurable


@LOSS_REGISTRY.register()
@configurable(
    loss_weight=Option(min=0, doc='lambda'),
    criterion=Option(choices=('l2', 'charbonnier'), doc='per-pixel penalty'),
    eps=Option(min=0, doc='Charbonnier epsilon'))
class PerImageSumLoss(nn.Module):
    """``loss_weight * mean_over_batch(sum_over_pixels(penalty(pred - target)))``."""

    def __init__(self, loss_weight=1.0, criterion='l2', eps=1e-6):
        super().__init__()
        self.loss_weight = loss_weight
        self.criterion = criterion
        self.eps = eps

    def forward(self, pred, target):
        if pred.shape != target.shape:
            raise ValueError(f'PerImageSumLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ')
        diff = pred - target
        penalty = diff.pow(2) if self.criterion == 'l2' else torch.sqrt(diff.pow(2) + self.eps)
        return self.loss_weight * penalty.flatten(1).sum(dim=1).mean()


@LOSS_REGISTRY.register()
@configurable(loss_weight=Option(min=0, doc='lambda'))
class LatentGaussianLoss(nn.Module):
    """``loss_weight * sum(z^2) / batch``: pushes the latent towards N(0, 1)."""

    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, z):
        return self.loss_weight * z.pow(2).flatten(1).sum(dim=1).mean()
