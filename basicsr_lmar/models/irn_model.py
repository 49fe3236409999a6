"""IRNModel: trains and tests an invertible rescaling network (Xiao et al., ECCV 2020).

Training (one step on an HR batch ``gt``)::

    out = net(gt);  lr, z = out[:, :3], out[:, 3:]
    target_lr = resize(gt, 1/s, bicubic, antialias)             # MATLAB-like bicubic, no LR files needed
    loss = lr_fit(lr, target_lr)                                  # l2, x16
         + latent(z)                                              # sum z^2 / B, x1
         + reconstruction(net([Q(lr), z' ~ N(0, 1)], rev)[:, :3], gt)   # Charbonnier, x1
    Q: 8-bit quantisation with a straight-through gradient

Adam (2e-4, betas 0.9/0.999, weight decay 1e-5), gradient clipping at norm 10, MultiStepLR halving at
100k/200k/300k/400k, 500k iterations, batch 16, GT patches 144 (options/train_irn_x*.yml).

Test: LR = Q(down(gt)); SR = up(LR) with the z policy of ``val.z_policy`` (``seeded`` by default,
``zero``, or ``random`` as the authors' test); metrics through BasicSR's ``calculate_metric``. Only
``gt`` is read from the data, so any dataset yielding HR images works (a paired dataset's ``lq`` is
ignored: the LR target is computed from the GT).
"""
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.data.size_rules import ImageSizeRule
from basicsr_lmar.models.plugin_mixin import Network, PluginModelMixin, train_schema, val_schema
from basicsr_lmar.ops.padding import pad_to_multiple
from basicsr_lmar.ops.resize import KERNELS, resize
from basicsr_lmar.ops.rounding import quantize, quantize_ste
from basicsr_lmar.options import Option, OptionError
from basicsr_lmar.registry import RESCALER_REGISTRY

IRN_TRAIN_SCHEMA = train_schema(
    'IRNModel', {
        'optim_g': Option({'type': 'Adam', 'lr': 2e-4, 'weight_decay': 1e-5, 'betas': [0.9, 0.999]},
                          doc='optimizer of network_g'),
        'scheduler': Option({'type': 'MultiStepLR', 'milestones': [100000, 200000, 300000, 400000], 'gamma': 0.5}),
        'lr_fit_opt': Option({'type': 'PerImageSumLoss', 'criterion': 'l2', 'loss_weight': 16.0}, nullable=True,
                             registry=LOSS_REGISTRY, doc='LR output vs bicubic-downscaled GT'),
        'latent_opt': Option({'type': 'LatentGaussianLoss', 'loss_weight': 1.0}, nullable=True,
                             registry=LOSS_REGISTRY, doc='pushes z towards N(0, 1)'),
        'reconstruction_opt': Option({'type': 'PerImageSumLoss', 'criterion': 'charbonnier', 'loss_weight': 1.0},
                                     nullable=True, registry=LOSS_REGISTRY,
                                     doc='HR reconstruction from quantised LR and sampled z'),
        'gaussian_scale': Option(1.0, min=0, doc='std of the z sampled for the reconstruction loss'),
        'gradient_clipping': Option(10.0, min=0, nullable=True, doc='max gradient norm; ~ disables'),
        'lr_kernel': Option('bicubic', choices=KERNELS, doc='kernel of the LR target resize'),
        'amp': Option('none', choices=('none', ),
                      doc="not supported: IRN's invertible coupling blocks need fp32 to stay invertible"),
        'ema_decay': Option(0, min=0, max=0, doc='EMA is not supported by IRNModel'),
    })

IRN_VAL_Z_SCHEMA = val_schema('IRNModel', {
    'z_policy': Option('seeded', choices=('seeded', 'zero', 'random'), doc='latent used to upscale at test'),
    'z_seed': Option(0, type=int),
    'gaussian_scale': Option(1.0, min=0),
})


@MODEL_REGISTRY.register()
class IRNModel(PluginModelMixin, SRModel):
    """Invertible rescaling: trains ``network_g`` (an ``InvRescaleNet``) on HR images."""

    network_sections = {'network_g': Network('the invertible rescaling network, {type: InvRescaleNet, scale: 4}')}
    option_schemas = {'train': IRN_TRAIN_SCHEMA, 'val': IRN_VAL_Z_SCHEMA}

    @classmethod
    def validate_options(cls, opt):
        options = super().validate_options(opt)
        scale = options.network_g.get('scale')
        if opt.get('scale') is not None and scale is not None and opt['scale'] != scale:
            raise OptionError(f"[scale] is {opt['scale']} but network_g has scale {scale}; make them equal.")
        train = options.get('train')
        if train is not None and all(train[key] is None for key in ('lr_fit_opt', 'latent_opt', 'reconstruction_opt')):
            raise OptionError('[train] every loss (lr_fit_opt, latent_opt, reconstruction_opt) is ~; '
                              'keep at least one.')
        return options

    @classmethod
    def image_size_rule(cls, opt):
        scale = (opt.get('network_g') or {}).get('scale') or opt.get('scale') or 4
        return ImageSizeRule(scale, scale, f'IRNModel x{scale} (multiples of the scale)', can_pad=True)

    def build_networks(self):
        super().build_networks()
        self.scale = self.get_bare_model(self.net_g).scale

    def init_training_settings(self):
        train = self.options.train
        self.net_g.train()
        self.losses = {key[:-4]: build_loss(dict(train[key])).to(self.device)
                       for key in ('lr_fit_opt', 'latent_opt', 'reconstruction_opt') if train[key] is not None}
        self.setup_optimizers()
        self.setup_schedulers()

    def feed_data(self, data):
        if 'gt' not in data:
            raise KeyError(f'IRNModel needs HR images under the key "gt"; the dataset gave {sorted(data)}')
        self.gt = data['gt'].to(self.device)

    def lr_target(self, gt):
        h, w = gt.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f'IRNModel: GT size {h}x{w} is not a multiple of scale {self.scale}; '
                             'set gt_size (train) or crop the validation images')
        return resize(gt, (h // self.scale, w // self.scale), kernel=self.options.train.lr_kernel, antialias=True)

    def optimize_parameters(self, current_iter):
        out = self.net_g(self.gt)
        channels = self.gt.shape[1]
        lr, z = out[:, :channels], out[:, channels:]
        total = 0
        loss_dict = OrderedDict()
        if 'lr_fit' in self.losses:
            loss_dict['l_lr_fit'] = self.losses['lr_fit'](lr, self.lr_target(self.gt).detach())
        if 'latent' in self.losses:
            loss_dict['l_latent'] = self.losses['latent'](z)
        if 'reconstruction' in self.losses:
            # z drawn for the global batch (same samples however the batch is split over ranks)
            noise = self.global_batch_randn(z.shape[0], z.shape[1:], current_iter).to(z.dtype)
            sampled_z = self.options.train.gaussian_scale * noise
            hr = self.net_g(torch.cat((quantize_ste(lr), sampled_z), dim=1), rev=True)[:, :channels]
            loss_dict['l_reconstruction'] = self.losses['reconstruction'](hr, self.gt)
        total = sum(loss_dict.values())
        self.guarded_step(total, self.optimizer_g, parameters=list(self.net_g.parameters()),
                          clip_grad_norm=self.options.train.gradient_clipping or None)
        loss_dict['l_total'] = total
        self.log_losses(OrderedDict((key, value.detach()) for key, value in loss_dict.items()))

    def rescaler(self):
        """The trained net in the rescaler protocol, with the validation z policy."""
        val = self.options.val
        return RESCALER_REGISTRY.get('IRNRescaler')(self.get_bare_model(self.net_g), val.z_policy, val.z_seed,
                                                    val.gaussian_scale)

    def test(self):
        # SRModel's runs net_g forward; IRN's result is the inverse pass from the 8-bit LR and a z
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
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        if save_img:
            self.save_lr_images(dataloader, current_iter)
