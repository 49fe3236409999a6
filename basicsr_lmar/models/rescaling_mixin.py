"""What the invertible rescaling models (IRN, HCFlow) share on top of :class:`PluginModelMixin`.

Both train ``network_g`` on HR images only (``gt``; the LR target is the bicubic-downscaled GT, so no LR
files are needed), with up to three losses (``lr_fit_opt``, ``latent_opt``, ``reconstruction_opt``:
:meth:`rescaling_losses`), test by reconstructing the GT from the 8-bit LR through their rescaler
(:meth:`rescaler`, defined by each model) and write that LR beside basicsr's HR output at validation. The
models keep what differs: how a training step samples the latents, their option schemas, and (HCFlow)
ActNorm's data init and heats.
"""
from collections import OrderedDict

import torch

from basicsr_lmar.archs.bicubic_rescaler_arch import BicubicSRRescaler
from basicsr_lmar.data.size_rules import SizeRule
from basicsr_lmar.models.model_options import LOSS_CROP_BORDER, declared_scale
from basicsr_lmar.models.plugin_mixin import PluginModelMixin
from basicsr_lmar.ops.padding import pad_to_multiple
from basicsr_lmar.ops.rounding import quantize, quantize_ste


class RescalingModelMixin(PluginModelMixin):
    """Compose before basicsr's ``SRModel``: ``class IRNModel(RescalingModelMixin, SRModel)``."""

    declared_options = {'train': {'loss_crop_border': LOSS_CROP_BORDER}}
    #: the model pads a non-multiple HR to the scale and crops its result back (``size_policy: pad``)
    can_pad = False

    @classmethod
    def image_size_rule(cls, opt):
        scale = declared_scale(opt)
        return SizeRule(scale, f'{cls.__name__} x{scale} (multiples of the scale)', minimum=1 if cls.can_pad else None,
                        can_pad=cls.can_pad)

    def build_networks(self):
        super().build_networks()
        self.scale = self.get_bare_model(self.net_g).scale

    def feed_data(self, data):
        if 'gt' not in data:
            raise KeyError(f'{type(self).__name__} needs HR images under the key "gt"; the dataset gave {sorted(data)}')
        self.gt = data['gt'].to(self.device)

    def lr_target(self, gt):
        """What the LR output is fit to: ``gt`` downscaled with ``train.lr_kernel`` (antialiased, MATLAB-like)."""
        return BicubicSRRescaler(scale=self.scale, kernel=self.options.train.lr_kernel).downscale(gt)

    def rescaling_losses(self, lr, latent, reconstruct):
        """The losses the model has: ``l_lr_fit`` (``lr`` against the bicubic target), ``l_latent`` (of
        ``latent``), ``l_reconstruction`` (``reconstruct(8-bit lr)`` against the GT, in :meth:`loss_region`)."""
        losses = OrderedDict()
        if self.cri_lr_fit is not None:
            losses['l_lr_fit'] = self.cri_lr_fit(lr, self.lr_target(self.gt).detach())
        if self.cri_latent is not None:
            losses['l_latent'] = self.cri_latent(latent)
        if self.cri_reconstruction is not None:
            losses['l_reconstruction'] = self.cri_reconstruction(*self.loss_region(reconstruct(quantize_ste(lr)),
                                                                                   self.gt))
        return losses

    def rescaler(self):
        """The trained net in the rescaler protocol (:mod:`basicsr_lmar.ops.collaborative_downscaling`)."""
        raise NotImplementedError

    def test(self):
        # SRModel's runs net_g forward; a rescaler's result is the inverse pass from the 8-bit LR
        self.lq = self.test_lr()
        self.net_g.eval()
        with torch.no_grad():  # an HR padded to the scale (size_policy: pad) gives its own size back
            self.output = self.rescaler().upscale(self.lq)[..., :self.gt.shape[-2], :self.gt.shape[-1]]
        self.net_g.train()

    def test_lr(self):
        """The 8-bit LR of ``self.gt`` (padded at the bottom/right to a multiple of the scale if it is not one)."""
        self.net_g.eval()
        with torch.no_grad():
            lr = quantize(self.rescaler().downscale(pad_to_multiple(self.gt, self.scale)[0]))
        self.net_g.train()
        return lr
