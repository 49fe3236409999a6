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
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.models.model_options import Network, optimizer, scheduler
from basicsr_lmar.models.rescaling_mixin import RescalingModelMixin
from basicsr_lmar.ops.resize import KERNELS
from basicsr_lmar.options import Option, OptionError
from basicsr_lmar.registry import RESCALER_REGISTRY


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
class HCFlowModel(RescalingModelMixin, SRModel):
    """HCFlow rescaling: trains ``network_g`` (an ``HCFlowNet``) on HR images."""

    network_sections = {'network_g': Network('the flow, {type: HCFlowNet, scale: 4}')}
    declared_options = {
        'train': {
            'optim_g': optimizer({'type': 'Adam', 'lr': 2.5e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                                 doc='optimizer of network_g'),
            'scheduler': scheduler({'type': 'MultiStepLR', 'milestones': [100000, 200000, 300000, 400000, 450000],
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
        },
        'val': {
            'heats': Option([0.0, 1.0], type=(list, tuple), min=0, doc='latent heats to validate at (authors: 0, 1)'),
            'z_seed': Option(0, type=int, doc='seed of the latents drawn at heat > 0'),
        },
    }

    @classmethod
    def validate_options(cls, opt):
        options = super().validate_options(opt)
        if options.network_g.type != 'HCFlowNet':
            raise OptionError(f'[network_g] type {options.network_g.type!r}: HCFlowModel trains an HCFlowNet.')
        if not options.val.heats:
            raise OptionError('[val] heats is empty; give at least one heat, e.g. [0.0, 1.0].')
        return options

    def build_networks(self):
        super().build_networks()
        self.val_heat = self.options.val.heats[0]

    def init_training_settings(self):
        super().init_training_settings()
        self.clip_gradients(self.options.train.grad_clip_value, self.options.train.grad_clip_norm)  # the authors'

    def initialise_actnorm(self):
        """ActNorm data init from this batch if the network is fresh (never after load/resume); returns
        how many ActNorms it initialised."""
        net = self.get_bare_model(self.net_g)
        if net.actnorm_initialised:
            return 0
        return net.initialise_actnorm(self.gt, reduce=_cross_process_mean)

    def training_losses(self, current_iter):
        self.initialise_actnorm()
        lr, latents = self.net_g(self.gt)

        def reconstruct(lr_8bit):  # latents drawn for the global batch (the same however it is split over ranks)
            return self.net_g(lr_8bit, rev=True, latents=[
                self.options.train.eps_std * self.global_batch_randn(z.shape[0], z.shape[1:], current_iter,
                                                                     stream).to(z.dtype)
                for stream, z in enumerate(latents)])

        return self.rescaling_losses(lr, latents, reconstruct)

    def rescaler(self, heat=None):
        """The trained net in the rescaler protocol at ``heat`` (default: the one being validated)."""
        return RESCALER_REGISTRY.get('HCFlowRescaler')(self.get_bare_model(self.net_g),
                                                       self.val_heat if heat is None else heat, 'seeded',
                                                       self.options.val.z_seed)

    def validate_results(self, dataloader, current_iter, tb_logger, save_img):
        # basicsr's loop once per heat, each reported as <dataset>_heat<h>; images for the first heat
        heats = list(self.options.val.heats)
        name = dataloader.dataset.opt['name']
        for index, heat in enumerate(heats):
            self.val_heat = heat
            loader = dataloader if len(heats) == 1 else _RenamedLoader(dataloader, f'{name}_heat{heat:g}')
            super().validate_results(loader, current_iter, tb_logger, save_img and index == 0)
        self.val_heat = heats[0]
