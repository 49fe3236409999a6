"""``CARModel``: CAR (TIP 2020) trained jointly with an SR network, or under a fixed bicubic upscaler.

Per iteration, on HR crops only: ``maps = network_g(hr)`` (:class:`CARResamplerNet`), ``lr =
clamp(adaptive_resample(hr, maps), 0, 1)``, 8-bit quantisation (``train.lr_rounding`` in training, hard
rounding at test), ``sr = network_sr(lr)``; loss ``L1(sr, hr) + lambda * L_offset + gamma_tv * L_TV``, the L1
without ``train.loss_crop_border`` pixels at each border (0: none). ``train.optim_g`` (Adam) updates both
networks, or, with ``train.optim_sr``, the resampler alone and ``optim_sr`` the SR network (a learning
rate of its own; the scheduler steps both). With ``network_sr: ~`` and ``upscaler: bicubic`` the upscaler
is a fixed differentiable bicubic (:class:`BicubicUpscaler`) and only the resampler learns.

``network_g`` may also be a :class:`ResidualDownscaler` (bicubic downscaling plus a learned residual; with
``channels: none`` plain bicubic downscaling, which has no parameters and is not trained): the baselines
of CAR, trained and scored through the same steps. It has no kernels or offsets, so ``offset_opt`` and
``tv_opt`` must be ~. With ``train.train_g: false`` the resampler stays as loaded from
``path.pretrain_network_g`` and only the SR network learns, on the 8-bit LR of that fixed resampler (the
paper's CAR‡ setting). ``network_sr`` is built before ``network_g``, so runs with the same seed that differ
only in ``network_g`` start from the same SR network.

Validation is basicsr's (SRModel): each HR image is cropped to a multiple of 8 and of the scale at the
top-left, the SR result is saved and scored with the configured basicsr metrics (the options use
PSNR/SSIM on Y with ``crop_border = scale``, as the paper); with ``save_img`` the 8-bit LR PNG is saved
beside it (``*_lr.png``). :meth:`CARModel.content_adaptivity` gives the kernel spread and offset length
(:meth:`CARResamplerNet.adaptivity`) of the last tested image.
"""
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.archs.car_arch import SIZE_MULTIPLE, BicubicUpscaler, CARResamplerNet
from basicsr_lmar.archs.residual_downscaler_arch import ResidualDownscaler
from basicsr_lmar.data.size_rules import SizeRule, lcm
from basicsr_lmar.models.model_options import LOSS_CROP_BORDER, Network, declared_scale, optimizer, scheduler
from basicsr_lmar.models.plugin_mixin import PluginModelMixin
from basicsr_lmar.ops.geometry import crop_to_multiple
from basicsr_lmar.ops.rounding import QUANTIZE_MODES
from basicsr_lmar.options import Option, OptionError, OptionSchema

#: ``train.lr_rounding``: the quantiser's modes that keep a gradient (``round`` is the test-time one)
ROUNDING_MODES = tuple(mode for mode in QUANTIZE_MODES if mode != 'round')
#: the archs ``network_g`` may be: CAR's resampler, or the learned-residual baseline (no kernels or offsets)
DOWNSCALERS = (CARResamplerNet, ResidualDownscaler)

#: the top-level key CARModel reads besides its sections
MODEL_SCHEMA = OptionSchema('CARModel', {
    'upscaler': Option(None, choices=('bicubic', ), nullable=True, doc='fixed upscaler when network_sr is ~'),
})


@MODEL_REGISTRY.register()
class CARModel(PluginModelMixin, SRModel):
    """Joint training of :class:`CARResamplerNet` (``network_g``) and an upscaler (``network_sr``)."""

    network_sections = {
        'network_g': Network('the CAR resampler, {type: CARResamplerNet, scale: 4} (or a ResidualDownscaler baseline)'),
        'network_sr': Network('the SR network trained with it, e.g. {type: EDSR, upscale: 4} (or `network_sr: ~` '
                              'with `upscaler: bicubic`)', required=False),
    }
    declared_options = {'train': {
        'optim_g': optimizer({'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999], 'eps': 1e-6},
                             doc='optimizer of network_g, and of network_sr unless optim_sr is set'),
        'optim_sr': optimizer(None, doc='optimizer of network_sr (its own learning rate); ~: optim_g updates both'),
        'scheduler': scheduler({'type': 'MultiStepLR', 'milestones': [], 'gamma': 0.5}),
        'pixel_opt': Option({'type': 'L1Loss', 'loss_weight': 1.0}, type=dict, registry=LOSS_REGISTRY),
        'offset_opt': Option(None, type=dict, registry=LOSS_REGISTRY, doc='CAROffsetLoss (lambda = loss_weight)'),
        'tv_opt': Option(None, type=dict, registry=LOSS_REGISTRY, doc='PartialTVLoss section (gamma_tv = loss_weight)'),
        'loss_crop_border': LOSS_CROP_BORDER,
        'lr_rounding': Option('soft_ste', choices=ROUNDING_MODES,
                              doc='8-bit quantisation of the LR in training: soft_ste (rounded values, soft-rounding '
                              'gradient) | soft (smooth values) | ste (rounded values, identity gradient) | none'),
        'soft_round_alpha': Option(1.0, min=0.0, max=1.0, exclusive_min=True,
                                   doc='soft rounding x - a sin(2 pi x)/(2 pi) on the 8-bit grid; 1: flat at integers'),
        'train_g': Option(True, type=bool, doc='false: network_g stays as loaded from path.pretrain_network_g and '
                          'only network_sr learns, on its 8-bit LR (CAR‡)'),
        'ema_decay': Option(0, min=0, max=0, doc='EMA is not supported by CARModel'),
    }}

    @classmethod
    def validate_options(cls, opt):
        MODEL_SCHEMA.validate({'upscaler': opt.get('upscaler')})
        options = super().validate_options(opt)
        downscaler = ARCH_REGISTRY.get(options.network_g.type)
        if not issubclass(downscaler, DOWNSCALERS):
            raise OptionError(f'[network_g] type must be CARResamplerNet or ResidualDownscaler (or a subclass); got '
                              f'{options.network_g.type!r}.')
        if opt.get('network_sr'):
            if opt.get('upscaler'):
                raise OptionError('[upscaler] is only used with `network_sr: ~`; remove one of the two.')
        elif opt.get('upscaler') != 'bicubic':
            raise OptionError('[network_sr] is ~ but no fixed upscaler is set: add `upscaler: bicubic` or a '
                              '`network_sr` section (e.g. type: EDSR).')
        train = options.get('train')
        if train is not None:
            cls._check_car_training(train, opt, downscaler)
            if not opt.get('network_sr') and not cls.resampler_learns(options):
                raise OptionError(f'[network_g] {downscaler.__name__} has no parameters and network_sr is ~: nothing '
                                  'would train; give a network_sr section or a resampler that learns.')
        return options

    @classmethod
    def _check_car_training(cls, train, opt, downscaler):
        for key, expected in (('offset_opt', 'CAROffsetLoss'), ('tv_opt', 'PartialTVLoss')):
            if train[key] is None:
                continue
            if train[key].type != expected:
                raise OptionError(f'[train.{key}] type must be {expected}; got {train[key].type!r}.')
            if not issubclass(downscaler, CARResamplerNet):
                raise OptionError(f'[train.{key}] {expected} regularises CAR\'s offsets, which network_g '
                                  f'{downscaler.__name__} does not have; set {key}: ~.')
            if not train.train_g:
                raise OptionError(f'[train.{key}] {expected} trains the resampler, which train_g: false keeps fixed; '
                                  f'set {key}: ~.')
        if train.optim_sr is not None and not opt.get('network_sr'):
            raise OptionError('[train] optim_sr is set but network_sr is ~: the fixed bicubic upscaler has no '
                              'parameters; remove optim_sr.')
        if not train.train_g:
            if not opt.get('network_sr'):
                raise OptionError('[train] train_g: false with `network_sr: ~` leaves nothing to train; give a '
                                  'network_sr section or set train_g: true.')
            if not (opt.get('path') or {}).get('pretrain_network_g'):
                raise OptionError('[train] train_g: false keeps network_g as loaded, but path.pretrain_network_g '
                                  'is not set: point it at the trained resampler (e.g. '
                                  'experiments/<run>/models/net_g_latest.pth).')

    @classmethod
    def image_size_rule(cls, opt):
        scale = declared_scale(opt)
        return SizeRule(lcm(SIZE_MULTIPLE, scale), f'CARModel x{scale} (multiples of {SIZE_MULTIPLE} and of the scale)',
                        can_pad=False)

    def build_networks(self):
        # network_sr first: its initialisation depends on the seed alone, not on the size of network_g
        self.sr_trainable = bool(self.opt.get('network_sr'))
        if self.sr_trainable:
            self.net_sr = self.build_trainable_network('network_sr')
        if self.options.get('train') is None or self.options.train.train_g:
            self.net_g = self.build_trainable_network('network_g')
        else:
            self.net_g = self.build_frozen_network('network_g')
        self.g_trainable = any(p.requires_grad for p in self.net_g.parameters())
        self.scale = self.get_bare_model(self.net_g).scale
        if not self.sr_trainable:
            self.net_sr = BicubicUpscaler(scale=self.scale).to(self.device)

    # ------------------------------------------------------------------ training
    @staticmethod
    def resampler_learns(options):
        """Whether ``network_g`` trains: ``train.train_g`` and a downscaler with parameters."""
        if options.network_g.type == ResidualDownscaler.__name__:
            return options.train.train_g and ResidualDownscaler.learns(options.network_g.channels)
        return options.train.train_g

    @classmethod
    def optimizer_labels(cls, options):
        # optim_g updates every network that learns unless optim_sr gives network_sr its own
        labels = ['g'] if cls.resampler_learns(options) else []
        if options.get('network_sr') is not None and (options.train.optim_sr is not None or not labels):
            labels.append('sr' if options.train.optim_sr is not None else 'g')
        return labels

    def optimizer_networks(self):
        networks = {'g': [self.net_g]} if self.g_trainable else {}
        if self.sr_trainable:
            networks.setdefault(self.optimizer_labels(self.options)[-1], []).append(self.net_sr)
        return networks

    def feed_data(self, data):
        # HR only (training crops are multiples already; validation images are cropped top-left)
        self.gt = crop_to_multiple(data['gt'].to(self.device), SIZE_MULTIPLE, self.scale, what='CARModel: HR image')

    def downscale(self, hr, rounding):
        """The 8-bit-rounded LR of ``hr`` and CAR's maps (None for a downscaler without them): the network runs
        under ``train.amp`` through its DDP wrapper; the arch's chain after it (op, clamp, rounding) in fp32,
        as do the losses."""
        bare = self.get_bare_model(self.net_g)
        alpha = self.options.train.soft_round_alpha if self.is_train else 1.0
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.g_trainable), self.autocast():
            out = self.net_g(hr)
        if isinstance(bare, CARResamplerNet):
            maps = tuple(m.float() for m in out)
            return bare.apply_maps(hr, maps, rounding, alpha), maps
        return bare.quantize(out.float(), rounding, alpha), None

    def upscale(self, lr, hr_shape):
        with self.autocast():
            sr = self.net_sr(lr)
        sr = sr.float()
        if sr.shape != hr_shape:
            raise ValueError(f'[network_sr] output shape {tuple(sr.shape)} does not match the HR shape '
                             f'{tuple(hr_shape)}: set its upscale factor to the top-level scale {self.scale}.')
        return sr

    def training_losses(self, current_iter):
        self.lq, maps = self.downscale(self.gt, self.options.train.lr_rounding)
        self.output = self.upscale(self.lq, self.gt.shape)
        losses = self.pixel_losses(self.output, self.gt)
        if maps is not None:  # the options refuse these losses for a downscaler without maps
            kernels, offsets_h, offsets_v = maps
            if self.cri_offset is not None:
                losses['l_offset'] = self.cri_offset(offsets_h, offsets_v)
            if self.cri_tv is not None:
                losses['l_tv'] = self.cri_tv(kernels, offsets_h, offsets_v)
        return losses

    # ------------------------------------------------------------------ test / validation
    def _eval_mode(self, compute):
        modes = [(net, net.training) for net in (self.net_g, self.net_sr)]
        for net, _ in modes:
            net.eval()
        with torch.no_grad():
            result = compute()
        for net, training in modes:
            net.train(training)
        return result

    def test(self):
        # SRModel's runs net_g alone; CAR's result is net_sr(8-bit LR of net_g)
        self.lq, maps = self._eval_mode(lambda: self.downscale(self.gt, 'round'))
        bare = self.get_bare_model(self.net_g)
        self.last_adaptivity = bare.adaptivity(maps) if maps is not None else {}
        self.output = self._eval_mode(lambda: self.upscale(self.lq, self.gt.shape))

    def test_lr(self):
        """The 8-bit LR of ``self.gt`` (hard rounding), what a user stores."""
        return self._eval_mode(lambda: self.downscale(self.gt, 'round')[0])

    def content_adaptivity(self):
        """CAR's kernel spread and offset length of the image of the last :meth:`test`
        (:meth:`CARResamplerNet.adaptivity`); ``{}`` for a downscaler without kernels."""
        return dict(getattr(self, 'last_adaptivity', {}))

    def save(self, epoch, current_iter):
        if self.sr_trainable:
            self.save_network(self.net_sr, 'net_sr', current_iter)
        super().save(epoch, current_iter)  # net_g and the training state
