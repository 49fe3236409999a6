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
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.models.model_options import Network, optimizer, scheduler
from basicsr_lmar.models.rescaling_mixin import RescalingModelMixin
from basicsr_lmar.ops.latents import LATENT_POLICIES
from basicsr_lmar.ops.resize import KERNELS
from basicsr_lmar.options import Option
from basicsr_lmar.registry import RESCALER_REGISTRY


@MODEL_REGISTRY.register()
class IRNModel(RescalingModelMixin, SRModel):
    """Invertible rescaling: trains ``network_g`` (an ``InvRescaleNet``) on HR images."""

    network_sections = {'network_g': Network('the invertible rescaling network, {type: InvRescaleNet, scale: 4}')}
    declared_options = {
        'train': {
            'optim_g': optimizer({'type': 'Adam', 'lr': 2e-4, 'weight_decay': 1e-5, 'betas': [0.9, 0.999]},
                                 doc='optimizer of network_g'),
            'scheduler': scheduler({'type': 'MultiStepLR', 'milestones': [100000, 200000, 300000, 400000],
                                    'gamma': 0.5}),
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
        },
        'val': {
            'z_policy': Option('seeded', choices=LATENT_POLICIES, doc='latent used to upscale at test'),
            'z_seed': Option(0, type=int),
            'gaussian_scale': Option(1.0, min=0),
        },
    }
    # size_policy: pad; IRN's authors' code does not handle sizes that are not multiples (reported upstream)
    can_pad = True

    def init_training_settings(self):
        super().init_training_settings()
        self.clip_gradients(max_norm=self.options.train.gradient_clipping or None)

    def training_losses(self, current_iter):
        out = self.net_g(self.gt)
        channels = self.gt.shape[1]
        lr, z = out[:, :channels], out[:, channels:]

        def reconstruct(lr_8bit):  # z drawn for the global batch (the same samples however it is split over ranks)
            noise = self.global_batch_randn(z.shape[0], z.shape[1:], current_iter).to(z.dtype)
            sampled_z = self.options.train.gaussian_scale * noise
            return self.net_g(torch.cat((lr_8bit, sampled_z), dim=1), rev=True)[:, :channels]

        return self.rescaling_losses(lr, z, reconstruct)

    def rescaler(self):
        """The trained net in the rescaler protocol, with the validation z policy."""
        val = self.options.val
        return RESCALER_REGISTRY.get('IRNRescaler')(self.get_bare_model(self.net_g), val.z_policy, val.z_seed,
                                                    val.gaussian_scale)
