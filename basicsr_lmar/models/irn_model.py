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
from os import path as osp

import torch
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY
from tqdm import tqdm

from basicsr_lmar.models.plugin_base import PluginBaseModel
from basicsr_lmar.ops.rounding import quantize, quantize_ste
from basicsr_lmar.ops.resize import KERNELS, resize
from basicsr_lmar.options import Option, OptionError, OptionSchema, validate_registered
from basicsr_lmar.registry import RESCALER_REGISTRY

# BasicSR's own train keys (read by basicsr.train) and PluginBaseModel's are passed through unchecked.
_BASICSR_TRAIN_KEYS = ('total_iter', 'warmup_iter', 'ema_decay', 'max_nonfinite_steps')

IRN_TRAIN_SCHEMA = OptionSchema(
    'IRNModel', {
        'optim_g': Option({'type': 'Adam', 'lr': 2e-4, 'weight_decay': 1e-5, 'betas': [0.9, 0.999]},
                          doc='optimizer of network_g'),
        'scheduler': Option({'type': 'MultiStepLR', 'milestones': [100000, 200000, 300000, 400000], 'gamma': 0.5}),
        'lr_fit_opt': Option({'type': 'PerImageSumLoss', 'criterion': 'l2', 'loss_weight': 16.0}, nullable=True,
                             doc='LR output vs bicubic-downscaled GT'),
        'latent_opt': Option({'type': 'LatentGaussianLoss', 'loss_weight': 1.0}, nullable=True,
                             doc='pushes z towards N(0, 1)'),
        'reconstruction_opt': Option({'type': 'PerImageSumLoss', 'criterion': 'charbonnier', 'loss_weight': 1.0},
                                     nullable=True, doc='HR reconstruction from quantised LR and sampled z'),
        'gaussian_scale': Option(1.0, min=0, doc='std of the z sampled for the reconstruction loss'),
        'gradient_clipping': Option(10.0, min=0, nullable=True, doc='max gradient norm; ~ disables'),
        'lr_kernel': Option('bicubic', choices=KERNELS, doc='kernel of the LR target resize'),
    },
    passthrough=_BASICSR_TRAIN_KEYS)

IRN_VAL_Z_SCHEMA = OptionSchema('IRNModel', {
    'z_policy': Option('seeded', choices=('seeded', 'zero', 'random'), doc='latent used to upscale at test'),
    'z_seed': Option(0, type=int),
    'gaussian_scale': Option(1.0, min=0),
}, passthrough=('val_freq', 'save_img', 'metrics', 'suffix', 'pbar'))


def _image_name(data):
    for key in ('gt_path', 'lq_path'):
        if key in data:
            return osp.splitext(osp.basename(data[key][0]))[0]
    return None


@MODEL_REGISTRY.register()
class IRNModel(PluginBaseModel):
    """Invertible rescaling: trains ``network_g`` (an ``InvRescaleNet``) on HR images."""

    def __init__(self, opt):
        super().__init__(opt)
        if opt.get('train') and 'amp' in opt['train']:
            raise OptionError('[train] amp is not supported by IRNModel: the invertible coupling blocks need '
                              'fp32 to stay invertible; remove the key.')
        self.val_opt = IRN_VAL_Z_SCHEMA.validate(opt.get('val') or {}, 'val')
        self.net_g = self.build_trainable_network('network_g')
        bare = self.get_bare_model(self.net_g)
        self.scale = bare.scale
        if opt.get('scale') is not None and opt['scale'] != self.scale:
            raise OptionError(f"[scale] is {opt['scale']} but network_g has scale {self.scale}; make them equal.")
        if self.is_train:
            self.init_training_settings()

    def init_training_settings(self):
        train_opt = IRN_TRAIN_SCHEMA.validate(self.opt['train'], 'train')
        self.train_opt = train_opt
        self.net_g.train()
        self.losses = {}
        for key in ('lr_fit_opt', 'latent_opt', 'reconstruction_opt'):
            if train_opt[key] is not None:
                validate_registered(train_opt[key], f'train.{key}', LOSS_REGISTRY)
                self.losses[key[:-4]] = build_loss(dict(train_opt[key])).to(self.device)
        if not self.losses:
            raise OptionError('[train] every loss (lr_fit_opt, latent_opt, reconstruction_opt) is ~; '
                              'keep at least one.')
        optim_opt = dict(train_opt['optim_g'])
        optim_type = optim_opt.pop('type')
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        self.optimizer_g = self.get_optimizer(optim_type, params, **optim_opt)
        self.optimizers.append(self.optimizer_g)
        self.opt['train']['scheduler'] = dict(train_opt['scheduler'])  # setup_schedulers pops 'type'
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
        return resize(gt, (h // self.scale, w // self.scale), kernel=self.train_opt['lr_kernel'], antialias=True)

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
            sampled_z = self.train_opt['gaussian_scale'] * noise
            hr = self.net_g(torch.cat((quantize_ste(lr), sampled_z), dim=1), rev=True)[:, :channels]
            loss_dict['l_reconstruction'] = self.losses['reconstruction'](hr, self.gt)
        total = sum(loss_dict.values())
        self.guarded_step(total, self.optimizer_g, parameters=list(self.net_g.parameters()),
                          clip_grad_norm=self.train_opt['gradient_clipping'] or None)
        loss_dict['l_total'] = total
        self.log_losses(OrderedDict((key, value.detach()) for key, value in loss_dict.items()))

    def rescaler(self):
        """The trained net in the rescaler protocol, with the validation z policy."""
        return RESCALER_REGISTRY.get('IRNRescaler')(self.get_bare_model(self.net_g), self.val_opt['z_policy'],
                                                    self.val_opt['z_seed'], self.val_opt['gaussian_scale'])

    def test(self):
        self.net_g.eval()
        with torch.no_grad():
            rescaler = self.rescaler()
            self.lq = quantize(rescaler.downscale(self.gt))
            self.output = rescaler.upscale(self.lq)
        self.net_g.train()

    def get_current_visuals(self):
        return OrderedDict(lq=self.lq.detach().cpu(), result=self.output.detach().cpu(), gt=self.gt.detach().cpu())

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if self.opt['rank'] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        if metrics:
            if not hasattr(self, 'metric_results'):
                self.metric_results = {name: 0 for name in metrics}
            self._initialize_best_metric_results(dataset_name)
            self.metric_results = {name: 0 for name in metrics}
        pbar = tqdm(total=len(dataloader), unit='image') if self.opt['val'].get('pbar', False) else None
        count = 0
        for idx, data in enumerate(dataloader):
            name = _image_name(data) or f'{idx:04d}'
            self.feed_data(data)
            self.test()
            sr_img = tensor2img([self.output])
            gt_img = tensor2img([self.gt])
            if save_img:
                folder = osp.join(self.opt['path']['visualization'], name if self.opt['is_train'] else dataset_name)
                tag = current_iter if self.opt['is_train'] else (self.opt['val'].get('suffix') or self.opt['name'])
                imwrite(sr_img, osp.join(folder, f'{name}_{tag}.png'))
                imwrite(tensor2img([self.lq]), osp.join(folder, f'{name}_{tag}_LR.png'))
            for metric, metric_opt in metrics.items():
                self.metric_results[metric] += calculate_metric({'img': sr_img, 'img2': gt_img}, metric_opt)
            count += 1
            del self.gt, self.lq, self.output
            if pbar is not None:
                pbar.update(1)
                pbar.set_description(f'Test {name}')
        if pbar is not None:
            pbar.close()
        if metrics:
            for metric in self.metric_results:
                self.metric_results[metric] /= max(count, 1)
                self._update_best_metric_result(dataset_name, metric, self.metric_results[metric], current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        log_str = f'Validation {dataset_name}\n'
        for metric, value in self.metric_results.items():
            best = self.best_metric_results[dataset_name][metric]
            log_str += f'\t # {metric}: {value:.4f}\tBest: {best["val"]:.4f} @ {best["iter"]} iter\n'
        get_root_logger().info(log_str)
        if tb_logger:
            for metric, value in self.metric_results.items():
                tb_logger.add_scalar(f'metrics/{dataset_name}/{metric}', value, current_iter)

    def save(self, epoch, current_iter):
        self.save_network(self.net_g, 'net_g', current_iter)
        self.save_training_state(epoch, current_iter)
