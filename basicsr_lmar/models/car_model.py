"""``CARModel``: CAR (TIP 2020) trained jointly with an SR network, or under a fixed bicubic upscaler.

Per iteration, on HR crops only: ``maps = network_g(hr)`` (:class:`CARResamplerNet`), ``lr =
clamp(adaptive_resample(hr, maps), 0, 1)``, 8-bit quantisation (soft rounding in training, hard rounding
at test), ``sr = network_sr(lr)``; loss ``L1(sr, hr) + lambda * L_offset + gamma_tv * L_TV``; one Adam
updates both networks. With ``network_sr: ~`` and ``upscaler: bicubic`` the upscaler is a fixed
differentiable bicubic (:class:`BicubicUpscaler`) and only the resampler learns.

Validation crops each HR image to a multiple of 8 (and of the scale) at the top-left, saves the 8-bit
LR PNG (``*_lr.png``) and the SR result, and computes the configured basicsr metrics (the options
use PSNR/SSIM on Y with ``crop_border = scale``, as the paper).
"""
import math
import os.path as osp
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.archs.car_arch import SIZE_MULTIPLE, BicubicUpscaler, CARResamplerNet
from basicsr_lmar.models.plugin_base import PluginBaseModel
from basicsr_lmar.options import Option, OptionError, OptionSchema, validate_registered

ROUNDING_MODES = ('soft', 'ste', 'none')

TRAIN_SCHEMA = OptionSchema('CARModel', {
    'optim_g': Option({'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999], 'eps': 1e-6}, type=dict,
                      doc='one Adam over both networks'),
    'scheduler': Option({'type': 'MultiStepLR', 'milestones': [], 'gamma': 0.5}, type=dict),
    'total_iter': Option(type=int, min=1),
    'warmup_iter': Option(-1, type=int),
    'pixel_opt': Option({'type': 'L1Loss', 'loss_weight': 1.0}, type=dict),
    'offset_opt': Option(None, type=dict, doc='CAROffsetLoss section (lambda = loss_weight)'),
    'tv_opt': Option(None, type=dict, doc='PartialTVLoss section (gamma_tv = loss_weight)'),
    'lr_rounding': Option('soft', choices=ROUNDING_MODES,
                          doc='8-bit quantisation of the LR in training: soft | ste (straight-through) | none'),
    'soft_round_alpha': Option(1.0, min=0.0, max=1.0, exclusive_min=True,
                               doc='soft rounding x - a sin(2 pi x)/(2 pi) on the 8-bit grid; 1 = flat at integers'),
    'ema_decay': Option(0, min=0, max=0, doc='EMA is not supported by CARModel'),
    'max_nonfinite_steps': Option(10, type=int, min=1, doc='stop after this many non-finite losses in a row'),
    'amp': Option('none', choices=('none', 'bf16', 'fp16'), doc='mixed precision of the network forward passes'),
})

MODEL_SCHEMA = OptionSchema('CARModel', {
    'upscaler': Option(None, choices=('bicubic', ), nullable=True,
                       doc='fixed upscaler when network_sr is ~'),
}, passthrough=())


@MODEL_REGISTRY.register()
class CARModel(PluginBaseModel):
    """Joint training of :class:`CARResamplerNet` (``network_g``) and an upscaler (``network_sr``)."""

    def __init__(self, opt):
        self._validate(opt)
        super().__init__(opt)
        self.scale = opt['scale']
        self.soft_round_alpha = TRAIN_SCHEMA.options['soft_round_alpha'].default
        self.net_g = self.build_trainable_network('network_g')
        self.sr_trainable = bool(opt.get('network_sr'))
        if self.sr_trainable:
            self.net_sr = self.build_trainable_network('network_sr')
        else:
            self.net_sr = BicubicUpscaler(scale=self.scale).to(self.device)
        if self.is_train:
            self.init_training_settings()

    # ------------------------------------------------------------------ options
    def _validate(self, opt):
        MODEL_SCHEMA.validate({'upscaler': opt.get('upscaler')}, None)
        validate_registered(opt.get('network_g'), 'network_g', ARCH_REGISTRY)
        if not issubclass(ARCH_REGISTRY.get(opt['network_g']['type']), CARResamplerNet):
            raise OptionError(f'[network_g] type must be CARResamplerNet (or a subclass); got '
                              f'{opt["network_g"]["type"]!r}.')
        g_scale = opt['network_g'].get('scale', CARResamplerNet.option_schema.options['scale'].default)
        if g_scale != opt.get('scale'):
            raise OptionError(f'[network_g] scale {g_scale} differs from the top-level scale {opt.get("scale")}; '
                              'set both to the same factor.')
        if opt.get('network_sr'):
            validate_registered(opt['network_sr'], 'network_sr', ARCH_REGISTRY)
            if opt.get('upscaler'):
                raise OptionError('[upscaler] is only used with `network_sr: ~`; remove one of the two.')
        elif opt.get('upscaler') != 'bicubic':
            raise OptionError('[network_sr] is ~ but no fixed upscaler is set: add `upscaler: bicubic` or a '
                              '`network_sr` section (e.g. type: EDSR).')
        if opt.get('is_train'):
            train = TRAIN_SCHEMA.validate(opt.get('train'), 'train')
            for key in ('pixel_opt', 'offset_opt', 'tv_opt'):
                if train[key] is not None:
                    validate_registered(dict(train[key]), f'train.{key}', LOSS_REGISTRY)
            for key, expected in (('offset_opt', 'CAROffsetLoss'), ('tv_opt', 'PartialTVLoss')):
                if train[key] is not None and train[key]['type'] != expected:
                    raise OptionError(f'[train.{key}] type must be {expected}; got {train[key]["type"]!r}.')

    # ------------------------------------------------------------------ training
    def init_training_settings(self):
        self.net_g.train()
        self.net_sr.train(self.sr_trainable)
        train_opt = self.opt['train']
        defaults = TRAIN_SCHEMA.defaults()
        for key in ('optim_g', 'scheduler', 'pixel_opt', 'lr_rounding', 'soft_round_alpha', 'warmup_iter'):
            train_opt.setdefault(key, defaults[key] if not hasattr(defaults[key], 'items') else dict(defaults[key]))
        self.cri_pix = build_loss(dict(train_opt['pixel_opt'])).to(self.device)
        self.cri_offset = build_loss(dict(train_opt['offset_opt'])).to(self.device) \
            if train_opt.get('offset_opt') else None
        self.cri_tv = build_loss(dict(train_opt['tv_opt'])).to(self.device) if train_opt.get('tv_opt') else None
        self.lr_rounding = train_opt['lr_rounding']
        self.soft_round_alpha = train_opt['soft_round_alpha']
        self.setup_optimizers()
        self.setup_schedulers()

    def setup_optimizers(self):
        optim_opt = dict(self.opt['train']['optim_g'])
        optim_type = optim_opt.pop('type')
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        if self.sr_trainable:
            params += [p for p in self.net_sr.parameters() if p.requires_grad]
        self.optimizer_g = self.get_optimizer(optim_type, params, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def feed_data(self, data):
        gt = data['gt'].to(self.device)
        multiple = math.lcm(SIZE_MULTIPLE, self.scale)  # training crops are multiples already
        height, width = gt.shape[-2:]
        self.gt = gt[..., :height - height % multiple, :width - width % multiple]

    def _downscale(self, hr, rounding):
        # The network runs under train.amp (autocast) through its DDP wrapper; the arch's chain
        # (op, clamp, rounding) runs in fp32, as do the losses.
        with self.autocast():
            maps = self.net_g(hr)
        maps = tuple(m.float() for m in maps)
        lr = self.get_bare_model(self.net_g).apply_maps(hr, maps, rounding, self.soft_round_alpha)
        return lr, maps

    def _upscale(self, lr, hr_shape):
        with self.autocast():
            sr = self.net_sr(lr)
        sr = sr.float()
        if sr.shape != hr_shape:
            raise ValueError(f'[network_sr] output shape {tuple(sr.shape)} does not match the HR shape '
                             f'{tuple(hr_shape)}: set its upscale factor to the top-level scale {self.scale}.')
        return sr

    def optimize_parameters(self, current_iter):
        self.lq, (kernels, offsets_h, offsets_v) = self._downscale(self.gt, self.lr_rounding)
        self.output = self._upscale(self.lq, self.gt.shape)
        loss_dict = OrderedDict()
        l_total = loss_dict['l_pix'] = self.cri_pix(self.output, self.gt)
        if self.cri_offset is not None:
            loss_dict['l_offset'] = self.cri_offset(offsets_h, offsets_v)
            l_total = l_total + loss_dict['l_offset']
        if self.cri_tv is not None:
            loss_dict['l_tv'] = self.cri_tv(kernels, offsets_h, offsets_v)
            l_total = l_total + loss_dict['l_tv']
        loss_dict['l_total'] = l_total
        self.guarded_step(l_total, self.optimizer_g)
        self.log_losses({key: value.detach() for key, value in loss_dict.items()})

    # ------------------------------------------------------------------ test / validation
    def test(self):
        was_training = self.net_g.training
        self.net_g.eval()
        self.net_sr.eval()
        with torch.no_grad():
            self.lq, _ = self._downscale(self.gt, 'round')
            self.output = self._upscale(self.lq, self.gt.shape)
        if was_training:
            self.net_g.train()
            self.net_sr.train(self.sr_trainable)

    def get_current_visuals(self):
        out_dict = OrderedDict(lq=self.lq.detach().cpu(), result=self.output.detach().cpu())
        if hasattr(self, 'gt'):
            out_dict['gt'] = self.gt.detach().cpu()
        return out_dict

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics_opt = self.opt['val'].get('metrics')
        if metrics_opt:
            if not hasattr(self, 'metric_results'):
                self.metric_results = {metric: 0 for metric in metrics_opt}
            self._initialize_best_metric_results(dataset_name)
            self.metric_results = {metric: 0 for metric in self.metric_results}
        count = 0
        for val_data in dataloader:
            img_name = osp.splitext(osp.basename(val_data['gt_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            visuals = self.get_current_visuals()
            sr_img, gt_img = tensor2img([visuals['result']]), tensor2img([visuals['gt']])
            lr_img = tensor2img([visuals['lq']])  # exact: the LR is already on the 8-bit grid
            del self.gt, self.lq, self.output
            if save_img:
                if self.opt['is_train']:
                    folder, stem = osp.join(self.opt['path']['visualization'], img_name), f'{img_name}_{current_iter}'
                else:
                    suffix = self.opt['val'].get('suffix') or self.opt['name']
                    folder, stem = osp.join(self.opt['path']['visualization'], dataset_name), f'{img_name}_{suffix}'
                imwrite(sr_img, osp.join(folder, f'{stem}.png'))
                imwrite(lr_img, osp.join(folder, f'{stem}_lr.png'))
            if metrics_opt:
                for name, metric_opt in metrics_opt.items():
                    self.metric_results[name] += calculate_metric(dict(img=sr_img, img2=gt_img), metric_opt)
            count += 1
        if metrics_opt:
            for metric in self.metric_results:
                self.metric_results[metric] /= max(count, 1)
                self._update_best_metric_result(dataset_name, metric, self.metric_results[metric], current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        if self.opt.get('rank', 0) == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        message = f'Validation {dataset_name}\n'
        for metric, value in self.metric_results.items():
            best = self.best_metric_results[dataset_name][metric]
            message += f'\t # {metric}: {value:.4f}\tBest: {best["val"]:.4f} @ {best["iter"]} iter\n'
            if tb_logger:
                tb_logger.add_scalar(f'metrics/{dataset_name}/{metric}', value, current_iter)
        get_root_logger().info(message)

    def save(self, epoch, current_iter):
        self.save_network(self.net_g, 'net_g', current_iter)
        if self.sr_trainable:
            self.save_network(self.net_sr, 'net_sr', current_iter)
        self.save_training_state(epoch, current_iter)

