"""Losses of LMAR's collaborative training (Yu et al., CVPR 2024, eq. 10-13).

All of them compare bottleneck features of the frozen enhancer: ``pred`` = E(x_c) of the resampled
low-resolution image and ``target`` = E(x) of the UHD image. When their spatial sizes differ, ``pred``
is first brought to ``target``'s size with the resizer U, chosen per key:

- ``resize_kernel`` / ``antialias`` when set in the loss's section;
- otherwise the caller's U, the ``upscale`` argument (keyword arguments of
  :func:`basicsr_lmar.ops.resize.resize`): ``LMARModel`` passes the resizer of the iteration, the one D
  used (``network_g.resize_kernel``/``antialias``/``boundary``, or the kernel drawn from
  ``train.resizers``), so that the features are compared through the pipeline that is trained;
- otherwise lanczos3 without antialiasing, the released code's U.


Adversarial terms (eq. 12-13) use BasicSR's ``GANLoss`` (``vanilla`` = the paper's log loss,
``lsgan`` = the mean squared error the released code uses).
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from basicsr_lmar.ops.resize import KERNELS, resize
from basicsr_lmar.options import Option, configurable

_REDUCTIONS = ('mean', 'sum')


def _match_size(pred, target, kernel, antialias, upscale):
    """``pred`` at ``target``'s size through U: the loss's own ``kernel``/``antialias`` where set, else the
    caller's ``upscale`` (keyword arguments of ``resize``), else lanczos3 without antialiasing."""
    if pred.shape[-2:] == target.shape[-2:]:
        return pred
    options = {'kernel': 'lanczos3', 'antialias': False, **(upscale or {})}
    if kernel is not None:
        options['kernel'] = kernel
    if antialias is not None:
        options['antialias'] = antialias
    return resize(pred, tuple(target.shape[-2:]), **options)


_RESIZE_OPTIONS = dict(resize_kernel=Option(choices=KERNELS, nullable=True, doc="U's kernel; ~: the caller's"),
                       antialias=Option(type=bool, nullable=True, doc="U's antialiasing; ~: the caller's"))


@LOSS_REGISTRY.register()
@configurable(
    loss_weight=Option(type=(int, float), min=0),
    beta=Option(type=(int, float), min=0, exclusive_min=True, doc='SmoothL1 transition point'),
    reduction=Option(choices=_REDUCTIONS),
    **_RESIZE_OPTIONS)
class ResamplingConsistencyLoss(nn.Module):
    """L_rc = SmoothL1(E(x), U(E(x_c))) (eq. 10): bottleneck of the resampled image, upscaled to the
    UHD bottleneck's size, against the UHD bottleneck."""

    def __init__(self, loss_weight=1.0, beta=1.0, reduction='mean', resize_kernel=None, antialias=None):
        super().__init__()
        self.loss_weight, self.beta, self.reduction = loss_weight, beta, reduction
        self.resize_kernel, self.antialias = resize_kernel, antialias

    def forward(self, pred, target, upscale=None):
        pred = _match_size(pred, target, self.resize_kernel, self.antialias, upscale)
        return self.loss_weight * F.smooth_l1_loss(pred, target, reduction=self.reduction, beta=self.beta)


def spatial_attention(feature, power=2):
    """Zagoruyko & Komodakis attention map: channel-mean of |f|^p, flattened, L2-normalised per sample."""
    return F.normalize(feature.abs().pow(power).mean(1).flatten(1), dim=1)


@LOSS_REGISTRY.register()
@configurable(
    loss_weight=Option(type=(int, float), min=0),
    power=Option(type=(int, float), min=0, exclusive_min=True),
    criterion=Option(choices=('mse', 'l2'), doc='mse = released code; l2 = paper eq. 11 (norm of the difference)'),
    **_RESIZE_OPTIONS)
class AttentionTransferLoss(nn.Module):
    """L_fa (eq. 11): distance between the spatial attention maps of E(x_c) (resized) and E(x).

    ``criterion: mse`` is the released code's ``(a_s - a_t)^2`` averaged over all positions, which it
    scales by 5000 (``loss_weight: 5000`` in the options); ``criterion: l2`` is the paper's
    ``|| a_s - a_t ||_2`` per sample, averaged over the batch.
    """

    def __init__(self, loss_weight=1.0, power=2, criterion='mse', resize_kernel=None, antialias=None):
        super().__init__()
        self.loss_weight, self.power, self.criterion = loss_weight, power, criterion
        self.resize_kernel, self.antialias = resize_kernel, antialias

    def forward(self, pred, target, upscale=None):
        pred = _match_size(pred, target, self.resize_kernel, self.antialias, upscale)
        diff = spatial_attention(pred, self.power) - spatial_attention(target, self.power)
        if self.criterion == 'mse':
            loss = diff.pow(2).mean()
        else:
            loss = diff.norm(dim=1).mean()
        return self.loss_weight * loss


def scharr_edges(image):
    """Edge magnitude of the channel-mean of ``image`` (N, C, H, W) with Scharr kernels, in [0, 1].

    Replicate padding; each gradient is taken on the 0-255 scale, clamped to +-255, and the map is
    (|g_x| + |g_y|) / 2 / 255, as in the released code.
    """
    gray = image.mean(1, keepdim=True) * 255.0
    kernel_x = torch.tensor([[-3., 0., 3.], [-10., 0., 10.], [-3., 0., 3.]], dtype=image.dtype, device=image.device)
    kernels = torch.stack([kernel_x, kernel_x.t()]).unsqueeze(1)
    grads = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode='replicate'), kernels).clamp(-255, 255)
    return grads.abs().mean(1, keepdim=True) / 255.0


@LOSS_REGISTRY.register()
@configurable(loss_weight=Option(type=(int, float), min=0), **_RESIZE_OPTIONS)
class FeatureEdgeLoss(nn.Module):
    """L1 between the two bottlenecks weighted by the Scharr edge map of the UHD input, bicubically
    resized to the feature size (released code only, not in the paper; off by default in the options).
    Unlike the released code, the map is resized with antialiasing (without it, thin edges fall between
    the samples of a 4x smaller feature) and clamped at 0 (bicubic overshoot would make weights negative)."""

    def __init__(self, loss_weight=1.0, resize_kernel=None, antialias=None):
        super().__init__()
        self.loss_weight = loss_weight
        self.resize_kernel, self.antialias = resize_kernel, antialias

    def forward(self, pred, target, image, upscale=None):
        pred = _match_size(pred, target, self.resize_kernel, self.antialias, upscale)
        with torch.no_grad():
            mask = F.interpolate(scharr_edges(image), size=tuple(target.shape[-2:]), mode='bicubic',
                                 align_corners=False, antialias=True).clamp_(min=0)  # bicubic overshoot would give negative weights
        return self.loss_weight * ((pred - target).abs() * mask).mean()
