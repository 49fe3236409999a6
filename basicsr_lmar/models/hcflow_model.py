"""HCFlowModel: trains and tests HCFlow for image rescaling (Liang et al., ICCV 2021).

Training (one step on an HR batch ``gt``), the authors' recipe::

    (first batch only) ActNorm data init, statistics averaged over the processes
    lr, [z_0, z_1] = net(gt)                                          # LR clamped to [0, 1]
    loss = 0.05 * MSE(lr, bicubic(gt, 1/s))                           # lr_fit_opt
         + 1e-5 * mean(cat(z_0, z_1) ** 2)                            # latent_opt
         + 1.0  * L1(net(Q(lr), rev, latents = eps_std * N(0, 1)), gt)   # reconstruction_opt
    Q: 8-bit quantisation with a straight-through gradient; eps_std 1.0
    gradients clipped by value (5), then by norm (100); Adam 2.5e-4, betas (0.9, 0.99)

ActNorm is data-initialised on the first training batch of a fresh network only: a network loaded from
``path.pretrain_network_g`` or resumed (basicsr points the resume at the run's checkpoint) keeps its
weights (:meth:`HCFlowNet.initialise_actnorm`, the ``initialised`` flags set by ``load_state_dict``).

Test / validation: LR = Q(forward(gt)); SR = reverse(LR) at each heat of ``val.heats`` (latents
``heat * eps``, eps seeded by ``val.z_seed``: no global RNG draw, identical on every run). With more
than one heat, basicsr's loop runs once per heat and reports the dataset as ``<name>_heat<h>``; images
are written for the first heat. Only ``gt`` is read from the data.
"""
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.data.size_rules import ImageSizeRule
from basicsr_lmar.models.plugin_mixin import Network, PluginModelMixin, train_schema, val_schema
from basicsr_lmar.ops.resize import KERNELS, resize
from basicsr_lmar.ops.rounding import quantize, quantize_ste
from basicsr_lmar.options import Option, OptionError
from basicsr_lmar.registry import RESCALER_REGISTRY

HCFLOW_TRAIN_SCHEMA = train_schema(
    'HCFlowModel', {
        'optim_g': Option({'type': 'Adam', 'lr': 2.5e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                          doc='optimizer of network_g'),
        'scheduler': Option({'type': 'MultiStepLR', 'milestones': [100000, 200000, 300000, 400000, 450000],
                             'gamma': 0.5}),
        'lr_fit_opt': Option({'type': 'MSELoss', 'loss_weight': 0.05}, nullable=True, registry=LOSS_REGISTRY,
                             doc='LR output vs bicubic-downscaled GT'),
        'latent_opt': Option({'type': 'LatentMeanSquareLoss', 'loss_weight': 1e-5}, nullable=True,
                             registry=LOSS_REGISTRY, doc='mean square of the latents'),
        'reconstruction_opt': Option({'type': 'L1Loss', 'loss_weight': 1.0}, nullable=True, registry=LOSS_REGISTRY,
                                     doc='HR reconstruction from the 8-bit LR and sampled latents'),
        'eps_std': Option(1.0, min=0, doc='heat of the latents sampled for the reconstruction loss'),
        'grad_clip_value': Option(5.0, min=0, exclusive_min=True, nullable=True,
                                  doc='clip every gradient to [-v, v] first; ~ disables'),
        'grad_clip_norm': Option(100.0, min=0, exclusive_min=True, nullable=True,
                                 doc='then clip the total gradient norm; ~ disables'),
        'lr_kernel': Option('bicubic', choices=KERNELS, doc='kernel of the LR target resize'),
        'amp': Option('none', choices=('none', ), doc="not supported: the flow's inverse needs fp32"),
        'ema_decay': Option(0, min=0, max=0, doc='EMA is not supported by HCFlowModel'),
    })

HCFLOW_VAL_SCHEMA = val_schema('HCFlowModel', {
    'heats': Option([0.0, 1.0], type=(list, tuple), min=0, doc='latent heats to validate at (the authors: 0, 1)'),
    'z_seed': Option(0, type=int, doc='seed of the latents drawn at heat > 0'),
})


def _cross_process_mean(tensor):
    """Mean over the processes (equal local batches: the statistic of the global batch); identity alone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        tensor = tensor.clone()
        torch.distributed.all_reduce(tensor)
        tensor /= torch.distributed.get_world_size()
    return tensor


class _RenamedLoader:
    """A validation loader whose dataset reports another name (one block of basicsr's log per heat)."""

    class _Dataset:
        def __init__(self, dataset, name):
            self._dataset, self.opt = dataset, dict(dataset.opt, name=name)

        def __len__(self):
            return len(self._dataset)

    def __init__(self, loader, name):
        self.loader, self.dataset = loader, self._Dataset(loader.dataset, name)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


@MODEL_REGISTRY.register()
class HCFlowModel(PluginModelMixin, SRModel):
    """HCFlow rescaling: trains ``network_g`` (an ``HCFlowNet``) on HR images."""

    network_sections = {'network_g': Network('the flow, {type: HCFlowNet, scale: 4}')}
    option_schemas = {'train': HCFLOW_TRAIN_SCHEMA, 'val': HCFLOW_VAL_SCHEMA}

    @classmethod
    def validate_options(cls, opt):
        options = super().validate_options(opt)
        if options.network_g.type != 'HCFlowNet':
            raise OptionError(f'[network_g] type {options.network_g.type!r}: HCFlowModel trains an HCFlowNet.')
        scale = options.network_g.get('scale')
        if opt.get('scale') is not None and scale is not None and opt['scale'] != scale:
            raise OptionError(f"[scale] is {opt['scale']} but network_g has scale {scale}; make them equal.")
        if not options.val.heats:
            raise OptionError('[val] heats is empty; give at least one heat, e.g. [0.0, 1.0].')
        train = options.get('train')
        if train is not None and all(train[key] is None for key in ('lr_fit_opt', 'latent_opt', 'reconstruction_opt')):
            raise OptionError('[train] every loss (lr_fit_opt, latent_opt, reconstruction_opt) is ~; '
                              'keep at least one.')
        return options

    @classmethod
    def image_size_rule(cls, opt):
        scale = (opt.get('network_g') or {}).get('scale') or opt.get('scale') or 4
        return ImageSizeRule(scale, scale, f'HCFlowModel x{scale} (multiples of the scale)')

    def build_networks(self):
        super().build_networks()
        self.scale = self.get_bare_model(self.net_g).scale
        self.val_heat = self.options.val.heats[0]

    def init_training_settings(self):
        train = self.options.train
        self.net_g.train()
        self.losses = {key[:-4]: build_loss(dict(train[key])).to(self.device)
                       for key in ('lr_fit_opt', 'latent_opt', 'reconstruction_opt') if train[key] is not None}
        self.setup_optimizers()
        self.setup_schedulers()
        # the authors' clipping, by value then by norm, between backward and step (guarded_step's backward)
        self.optimizer_g.register_step_pre_hook(self._clip_gradients)

    def _clip_gradients(self, optimizer, args, kwargs):
        train = self.options.train
        parameters = [p for p in self.net_g.parameters() if p.grad is not None]
        if train.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(parameters, train.grad_clip_value)
        if train.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, train.grad_clip_norm)

    def feed_data(self, data):
        if 'gt' not in data:
            raise KeyError(f'HCFlowModel needs HR images under the key "gt"; the dataset gave {sorted(data)}')
        self.gt = data['gt'].to(self.device)

    def lr_target(self, gt):
        h, w = gt.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f'HCFlowModel: GT size {h}x{w} is not a multiple of scale {self.scale}; '
                             'set gt_size (train) or crop the validation images')
        return resize(gt, (h // self.scale, w // self.scale), kernel=self.options.train.lr_kernel, antialias=True)

    def initialise_actnorm(self):
        """ActNorm data init from this batch if the network is fresh (never after load/resume); returns
        how many ActNorms it initialised."""
        net = self.get_bare_model(self.net_g)
        if net.actnorm_initialised:
            return 0
        return net.initialise_actnorm(self.gt, reduce=_cross_process_mean)

    def optimize_parameters(self, current_iter):
        self.initialise_actnorm()
        train = self.options.train
        lr, latents = self.net_g(self.gt)
        loss_dict = OrderedDict()
        if 'lr_fit' in self.losses:
            loss_dict['l_lr_fit'] = self.losses['lr_fit'](lr, self.lr_target(self.gt).detach())
        if 'latent' in self.losses:
            loss_dict['l_latent'] = self.losses['latent'](latents)
        if 'reconstruction' in self.losses:
            # latents drawn for the global batch (the same samples however the batch is split over ranks)
            sampled = [
                train.eps_std * self.global_batch_randn(z.shape[0], z.shape[1:], current_iter, stream).to(z.dtype)
                for stream, z in enumerate(latents)
            ]
            sr = self.net_g(quantize_ste(lr), rev=True, latents=sampled)
            loss_dict['l_reconstruction'] = self.losses['reconstruction'](sr, self.gt)
        total = sum(loss_dict.values())
        self.guarded_step(total, self.optimizer_g)
        loss_dict['l_total'] = total
        self.log_losses(OrderedDict((key, value.detach()) for key, value in loss_dict.items()))

    def rescaler(self, heat=None):
        """The trained net in the rescaler protocol at ``heat`` (default: the one being validated)."""
        return RESCALER_REGISTRY.get('HCFlowRescaler')(self.get_bare_model(self.net_g),
                                                       self.val_heat if heat is None else heat, 'seeded',
                                                       self.options.val.z_seed)

    def test(self):
        self.lq = self.test_lr()
        self.net_g.eval()
        with torch.no_grad():
            self.output = self.rescaler().upscale(self.lq)
        self.net_g.train()

    def test_lr(self):
        """The 8-bit LR of ``self.gt``."""
        self.net_g.eval()
        with torch.no_grad():
            lr = quantize(self.rescaler().downscale(self.gt))
        self.net_g.train()
        return lr

    @master_only
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        heats = list(self.options.val.heats)
        name = dataloader.dataset.opt['name']
        for index, heat in enumerate(heats):
            self.val_heat = heat
            loader = dataloader if len(heats) == 1 else _RenamedLoader(dataloader, f'{name}_heat{heat:g}')
            super().nondist_validation(loader, current_iter, tb_logger, save_img and index == 0)
        self.val_heat = heats[0]
        if save_img:  # the 8-bit LR beside the reconstruction
            self.save_lr_images(dataloader, current_iter)
