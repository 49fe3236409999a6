"""What the invertible rescaling models (IRN, HCFlow) share on top of :class:`PluginModelMixin`.

Both train ``network_g`` on HR images only (``gt``; the LR target is the bicubic-downscaled GT, so no LR
files are needed), with up to three losses (``lr_fit_opt``, ``latent_opt``, ``reconstruction_opt``),
test by reconstructing the GT from the 8-bit LR through their rescaler (:meth:`rescaler`, defined by each
model) and write that LR beside basicsr's HR output at validation. The models keep what differs: how
a training step samples the latents, their option schemas, and (HCFlow) ActNorm's data init and heats.
"""
import torch
from basicsr.losses import build_loss
from basicsr.utils.dist_util import master_only

from basicsr_lmar.data.size_rules import ImageSizeRule
from basicsr_lmar.models.plugin_mixin import PluginModelMixin
from basicsr_lmar.ops.padding import pad_to_multiple
from basicsr_lmar.ops.resize import resize
from basicsr_lmar.ops.rounding import quantize
from basicsr_lmar.options import OptionError

LOSS_SECTIONS = ('lr_fit_opt', 'latent_opt', 'reconstruction_opt')


class RescalingModelMixin(PluginModelMixin):
    """Compose before basicsr's ``SRModel``: ``class IRNModel(RescalingModelMixin, SRModel)``."""

    #: the model pads a non-multiple HR to the scale and crops its result back (``size_policy: pad``)
    can_pad = False

    @classmethod
    def validate_options(cls, opt):
        options = super().validate_options(opt)
        scale = options.network_g.get('scale')
        if opt.get('scale') is not None and scale is not None and opt['scale'] != scale:
            raise OptionError(f"[scale] is {opt['scale']} but network_g has scale {scale}; make them equal.")
        train = options.get('train')
        if train is not None and all(train[key] is None for key in LOSS_SECTIONS):
            raise OptionError(f'[train] every loss ({", ".join(LOSS_SECTIONS)}) is ~; keep at least one.')
        return options

    @classmethod
    def image_size_rule(cls, opt):
        scale = (opt.get('network_g') or {}).get('scale') or opt.get('scale') or 4
        return ImageSizeRule(scale, scale, f'{cls.__name__} x{scale} (multiples of the scale)', can_pad=cls.can_pad)

    def build_networks(self):
        super().build_networks()
        self.scale = self.get_bare_model(self.net_g).scale

    def init_training_settings(self):
        train = self.options.train
        self.net_g.train()
        self.losses = {key[:-4]: build_loss(dict(train[key])).to(self.device)
                       for key in LOSS_SECTIONS if train[key] is not None}
        self.setup_optimizers()
        self.setup_schedulers()

    def feed_data(self, data):
        if 'gt' not in data:
            raise KeyError(f'{type(self).__name__} needs HR images under the key "gt"; the dataset gave {sorted(data)}')
        self.gt = data['gt'].to(self.device)

    def lr_target(self, gt):
        h, w = gt.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f'{type(self).__name__}: GT size {h}x{w} is not a multiple of scale {self.scale}; '
                             'set gt_size (train) or crop the validation images')
        return resize(gt, (h // self.scale, w // self.scale), kernel=self.options.train.lr_kernel, antialias=True)

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

    @master_only
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # basicsr's loop writes the HR reconstruction; the 8-bit LR is written beside it
        self.validate_reconstructions(dataloader, current_iter, tb_logger, save_img)
        if save_img:
            self.save_lr_images(dataloader, current_iter)

    def validate_reconstructions(self, dataloader, current_iter, tb_logger, save_img):
        """basicsr's validation loop on the reconstructions (HCFlow runs it once per heat)."""
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
