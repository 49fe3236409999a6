"""LMAR collaborative training (Wang et al., CVPR 2024): a resampler learns to feed a frozen enhancer.

Networks:

- ``network_g``: the resampler (``LMARResampler``), trained;
- ``network_enhancer``: any registered enhancer, loaded from ``path.pretrain_network_enhancer`` and
  frozen (eval mode, no parameter gradients, never wrapped for DDP) - gradients still flow *through*
  it to the resampled image x_c. Its bottleneck E(.) is read by a forward hook on the module named by
  ``network_enhancer.feature_layer`` (default: the arch's ``bottleneck_layer`` class attribute);
- ``network_d``: a patch discriminator on low-resolution images (``LMARPatchDiscriminator``).

Each iteration draws a working size from the crop size (r ~ U(1, 4), or the released code's
multiple-of-8 lattice) and, with ``train.resizers``, the resizer D/U (default: the resampler's own
``resize_kernel``), then alternates a G step on ``L_rc + alpha L_fa + beta L_g (+ L_edge)`` and a D
step on ``L_d`` with x_c detached, each with its own optimizer and scheduler.

Validation runs D -> enhancer -> U at a list of working sizes (default the seven of the paper's
Tables 1-3, scaled to the input when it is not 2160x3840) times a list of resizers, with and without
LMAR, and writes a table shaped like Table 1 (markdown + CSV) and a PSNR-vs-size plot.
"""
import csv
import os
from collections import OrderedDict
from copy import deepcopy
from os import path as osp

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.models.plugin_base import PluginBaseModel
from basicsr_lmar.ops.resize import KERNELS
from basicsr_lmar.archs.feature_hooks import FeatureHook
from basicsr_lmar.options import Option, OptionError, OptionSchema, validate_registered

# Tables 1-3 of the paper: working sizes for a 2160x3840 input (the first one is the full size).
PAPER_TARGET_SIZES = ((2160, 3840), (1440, 2560), (1080, 1920), (1200, 1600), (720, 1280), (540, 960), (432, 768))
PAPER_REFERENCE_SIZE = (2160, 3840)
PAPER_RESIZERS = ('nearest', 'bilinear', 'bicubic', 'lanczos2', 'lanczos3')

TRAIN_SCHEMA = OptionSchema(
    'LMARModel.train', {
        'optim_g': Option({'type': 'Adam', 'lr': 4e-4, 'betas': [0.9, 0.999]}, type=dict),
        'optim_d': Option({'type': 'Adam', 'lr': 2e-4, 'betas': [0.9, 0.999]}, type=dict),
        'scheduler': Option({'type': 'MultiStepLR', 'milestones': [], 'gamma': 0.75}, type=dict),
        'rc_opt': Option({'type': 'ResamplingConsistencyLoss', 'loss_weight': 1.0}, type=dict,
                         doc='resampling consistency loss (eq. 10), required'),
        'fa_opt': Option(None, type=dict, doc='attention transfer loss (eq. 11); ~ to disable'),
        'gan_opt': Option(None, type=dict, doc="basicsr GANLoss (eq. 12-13); ~ to disable"),
        'edge_opt': Option(None, type=dict, doc='FeatureEdgeLoss (released code only); ~ to disable'),
        'scale_sampling': Option('uniform', choices=('uniform', 'lattice8', 'lattice8_full'),
                                 doc='uniform: r ~ U(scale_range); lattice8: released code, square sizes step 8; '
                                 'lattice8_full: lattice8 plus the crop size itself (r = 1)'),
        'scale_range': Option([1.0, 4.0], length=2, min=1.0, doc='[min, max] downscaling factor r'),
        'resizers': Option(None, type=(list, tuple),
                           doc='kernels to draw the resizer D/U from, one per iteration; ~ = network_g.resize_kernel'),
        'net_d_iters': Option(1, type=int, min=1),
        'net_d_init_iters': Option(0, type=int, min=0),
        'log_plain_baseline': Option(True, type=bool, doc='also log L_rc of the plain downscale (no grad)'),
        'total_iter': Option(type=int, min=1),
        'warmup_iter': Option(-1, type=int),
        'max_nonfinite_steps': Option(10, type=int, min=1),
        'amp': Option('none', choices=('none', 'bf16', 'fp16'), doc='mixed precision of the forward passes'),
        'ema_decay': Option(0.0, type=(int, float), min=0, max=1,
                            doc='exponential moving average of network_g (BasicSR '
                            "convention): validation, test and the saved 'params_ema' use it; 0 = off"),
    })

VAL_SCHEMA = OptionSchema(
    'LMARModel.val', {
        'target_sizes': Option(None, type=(list, tuple), doc='[[h, w], ...] working sizes; ~ = Tables 1-3'),
        'reference_size': Option(list(PAPER_REFERENCE_SIZE), length=2, min=1,
                                 doc='input size the target sizes refer to; others are scaled'),
        'resizers': Option(list(PAPER_RESIZERS), type=(list, tuple), doc=f'kernels from {list(KERNELS)}'),
        'metrics': Option(None, type=dict),
        'save_img': Option(False, type=bool),
        'val_freq': Option(None, type=(int, float)),
        'pbar': Option(False, type=bool),
        'suffix': Option(None, type=str),
        'save_table': Option(True, type=bool, doc='write the markdown/CSV table and the PSNR plot'),
    })


def scaled_target_sizes(input_size, target_sizes=None, reference_size=PAPER_REFERENCE_SIZE):
    """Working sizes for an input of ``input_size``: ``target_sizes`` are given for ``reference_size``
    and scaled by input/reference per axis (rounded, at least 1 pixel); duplicates are dropped."""
    target_sizes = PAPER_TARGET_SIZES if target_sizes is None else target_sizes
    sizes = []
    for size in target_sizes:
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise OptionError(f'[val] target_sizes entry {size!r} must be a pair [h, w]')
        h, w = size
        if h <= 0 or w <= 0:
            raise OptionError(f'[val] target_sizes entry {list(size)} must be positive')
        if h > reference_size[0] or w > reference_size[1]:
            raise OptionError(f'[val] target_sizes entry {list(size)} is larger than reference_size '
                              f'{list(reference_size)}; LMAR only downscales. Use sizes <= the reference')
        scaled = (max(1, round(h * input_size[0] / reference_size[0])),
                  max(1, round(w * input_size[1] / reference_size[1])))
        if scaled not in sizes:
            sizes.append(scaled)
    return sizes


def check_resize_kernels(kernels, section):
    """Raises an OptionError naming ``[section] resizers`` for an entry that is not a resize kernel."""
    for kernel in kernels:
        if kernel not in KERNELS:
            raise OptionError(f'[{section}] resizers entry {kernel!r} is not a resize kernel; '
                              f'choose from {list(KERNELS)}')


def draw_working_size(crop_size, sampling='uniform', scale_range=(1.0, 4.0), generator=None):
    """Working size for one iteration from the crop size (H_p, W_p), drawn with ``generator``.

    ``uniform``: r ~ U(scale_range), (h, w) = round((H_p, W_p) / r). ``lattice8``: the released
    code's square size drawn from ``range(H_p // 4, H_p, 8)`` (a multiple-of-8 lattice), which never
    includes r = 1. ``lattice8_full`` adds the crop's own side, so that the resampler also learns to
    leave an image at its full size as it is (validation starts at the full size).
    """
    height, width = crop_size
    if sampling in ('lattice8', 'lattice8_full'):
        choices = list(range(height // 4, height, 8))
        if sampling == 'lattice8_full' or not choices:
            choices.append(height)
        side = choices[int(torch.randint(len(choices), (1, ), generator=generator))]
        return side, min(side, width)
    low, high = scale_range
    ratio = low + (high - low) * float(torch.rand(1, generator=generator))
    return max(1, round(height / ratio)), max(1, round(width / ratio))


@MODEL_REGISTRY.register()
class LMARModel(PluginBaseModel):
    """Trains ``network_g`` (the LMAR resampler) in front of a frozen ``network_enhancer``."""

    def __init__(self, opt):
        super().__init__(opt)
        validate_registered(opt['network_g'], 'network_g', ARCH_REGISTRY)
        validate_registered(opt['network_enhancer'], 'network_enhancer', ARCH_REGISTRY, extra_keys=('feature_layer', ))
        if opt.get('val') is not None:
            self.val_opt = VAL_SCHEMA.validate(opt['val'], 'val')
            check_resize_kernels(self.val_opt.resizers, 'val')
            scaled_target_sizes(self.val_opt.reference_size, self.val_opt.target_sizes, self.val_opt.reference_size)
        else:
            self.val_opt = VAL_SCHEMA.validate({}, 'val')
        opt.setdefault('path', {})

        self.net_g = self.build_trainable_network('network_g')
        self.net_g_ema = None  # set by init_training_settings when train.ema_decay > 0

        # The frozen enhancer: eval mode, no parameter gradients, never DDP-wrapped.
        if self.is_train and self.frozen_checkpoint_path('network_enhancer') is None:
            raise OptionError('[path] pretrain_network_enhancer is required: LMAR trains a resampler for a '
                              'pretrained, frozen enhancer. Point it at the enhancer checkpoint (.pth)')
        self.net_enhancer = self.build_frozen_network('network_enhancer', required=False, extra_keys=('feature_layer', ))
        feature_layer = opt['network_enhancer'].get('feature_layer')
        if feature_layer is None:
            cls = type(self.net_enhancer)
            feature_layer = getattr(cls, 'BOTTLENECK_LAYER', None) or getattr(cls, 'bottleneck_layer', None)
            if feature_layer is None:
                raise OptionError(f'[network_enhancer] {cls.__name__} declares no BOTTLENECK_LAYER; set '
                                  'feature_layer to the name of the module whose output is the bottleneck')
        self.feature_hook = FeatureHook(self.net_enhancer, feature_layer)
        self.feature_layer = feature_layer

        if self.is_train:
            self.init_training_settings()

    # -- set-up ----------------------------------------------------------------------------------
    def init_training_settings(self):
        self.train_opt = TRAIN_SCHEMA.validate(self.opt['train'], 'train')
        if self.train_opt.resizers is not None:
            if not self.train_opt.resizers:
                raise OptionError('[train] resizers is empty; list at least one kernel, '
                                  'or ~ for network_g.resize_kernel')
            check_resize_kernels(self.train_opt.resizers, 'train')
        for key in ('rc_opt', 'fa_opt', 'gan_opt', 'edge_opt'):
            if self.train_opt[key] is not None:
                validate_registered(self.train_opt[key], f'train.{key}', LOSS_REGISTRY)
        self.net_g.train()
        if self.train_opt.ema_decay > 0:
            if self.train_opt.ema_decay >= 1:
                raise OptionError(f'[train] ema_decay {self.train_opt.ema_decay} must be below 1 (1 never moves the '
                                  'average); BasicSR uses 0.999, 0 turns EMA off')
            self.net_g_ema = self._build_ema_network()
        self.cri_rc = build_loss(deepcopy(dict(self.train_opt.rc_opt))).to(self.device)
        self.cri_fa = build_loss(deepcopy(dict(self.train_opt.fa_opt))).to(self.device) if self.train_opt.fa_opt else None
        self.cri_edge = (build_loss(deepcopy(dict(self.train_opt.edge_opt))).to(self.device)
                         if self.train_opt.edge_opt else None)
        self.cri_gan = build_loss(deepcopy(dict(self.train_opt.gan_opt))).to(self.device) if self.train_opt.gan_opt else None
        self.net_d = None
        if self.cri_gan is not None:
            if self.opt.get('network_d') is None:
                raise OptionError('[train] gan_opt is set but network_d is missing; add a network_d section '
                                  '(type: LMARPatchDiscriminator) or set gan_opt: ~')
            self.net_d = self.build_trainable_network('network_d')
            self.net_d.train()
        self.setup_optimizers()
        self.opt['train']['scheduler'] = dict(self.train_opt.scheduler)  # basicsr pops 'type' from it
        self.setup_schedulers()

    def _build_ema_network(self):
        """The EMA copy of network_g: from ``params_ema`` of path.pretrain_network_g (the run's own checkpoint
        on resume; a checkpoint without EMA falls back to ``params``), else a copy of network_g."""
        net = build_network(deepcopy(dict(self.opt['network_g']))).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(net, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema',
                              option_key='path.pretrain_network_g')
        else:
            net.load_state_dict(self.resampler.state_dict())
        net.eval()
        net.requires_grad_(False)
        return net

    def setup_optimizers(self):
        optim_g = dict(self.train_opt.optim_g)
        params_g = [p for p in self.net_g.parameters() if p.requires_grad]
        self.optimizer_g = self.get_optimizer(optim_g.pop('type'), params_g, **optim_g)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_d = dict(self.train_opt.optim_d)
            self.optimizer_d = self.get_optimizer(optim_d.pop('type'), self.net_d.parameters(), **optim_d)
            self.optimizers.append(self.optimizer_d)

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def resampler(self):
        return self.get_bare_model(self.net_g)

    @property
    def inference_resampler(self):
        """The resampler that validation and test use: the EMA copy when ``train.ema_decay`` is on."""
        return self.net_g_ema if self.net_g_ema is not None else self.resampler

    def bottleneck(self, image):
        """E(image): the enhancer's feature at ``feature_layer`` (the rest of the enhancer is skipped)."""
        return self.feature_hook.extract(image)

    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)

    # -- training --------------------------------------------------------------------------------
    def optimize_parameters(self, current_iter):
        x = self.lq
        generator = self.iteration_generator(current_iter)  # same size and resizer on every rank
        size = draw_working_size(tuple(x.shape[-2:]), self.train_opt.scale_sampling, self.train_opt.scale_range,
                                 generator)
        kernel = None  # None: the resampler's own resize_kernel
        if self.train_opt.resizers:
            kernel = self.train_opt.resizers[int(torch.randint(len(self.train_opt.resizers), (1, ),
                                                               generator=generator))]
        self.working_size, self.working_kernel = size, kernel
        loss_dict = OrderedDict()

        with torch.no_grad():
            target = self.bottleneck(x)  # E(x) of the UHD crop: a fixed target

        # G step: L_rc + alpha L_fa + beta L_g (+ L_edge)
        if self.net_d is not None:
            self.net_d.requires_grad_(False)
        with self.autocast():  # train.amp: networks in reduced precision, losses in fp32
            out = self.net_g(x, size, kernel=kernel, return_intermediates=True)
            x_c, x_d = out['x_c'].float(), out['x_d'].detach().float()
            features = self.bottleneck(x_c).float()
        pred = self.resampler.resize(features, tuple(target.shape[-2:]), kernel)  # U = the same kernel as D
        l_rc = self.cri_rc(pred, target)
        loss_dict['l_rc'] = l_rc
        l_total = l_rc
        if self.cri_fa is not None:
            l_fa = self.cri_fa(pred, target)
            loss_dict['l_fa'] = l_fa
            l_total = l_total + l_fa
        if self.cri_edge is not None:
            l_edge = self.cri_edge(pred, target, x)
            loss_dict['l_edge'] = l_edge
            l_total = l_total + l_edge
        if self.cri_gan is not None and current_iter > self.train_opt.net_d_init_iters:
            with self.autocast():
                fake_score = self.net_d(x_c).float()
            l_g_gan = self.cri_gan(fake_score, True, is_disc=False)
            loss_dict['l_g_gan'] = l_g_gan
            l_total = l_total + l_g_gan
        loss_dict['l_g_total'] = l_total
        self.guarded_step(l_total, self.optimizer_g)
        if self.net_g_ema is not None:
            self.model_ema(decay=self.train_opt.ema_decay)

        if self.train_opt.log_plain_baseline:
            with torch.no_grad():
                plain = self.resampler.resize(self.bottleneck(x_d), tuple(target.shape[-2:]), kernel)
                loss_dict['l_rc_plain'] = self.cri_rc(plain, target)

        # D step on L_d with x_c detached: the plain downscale is "real", the resampled image "fake"
        if self.net_d is not None:
            self.net_d.requires_grad_(True)
            for _ in range(self.train_opt.net_d_iters):
                with self.autocast():
                    real_score, fake_score = self.net_d(x_d).float(), self.net_d(x_c.detach()).float()
                l_d_real = self.cri_gan(real_score, True, is_disc=True)
                l_d_fake = self.cri_gan(fake_score, False, is_disc=True)
                l_d = 0.5 * (l_d_real + l_d_fake)
                self.guarded_step(l_d, self.optimizer_d)
            loss_dict['l_d_real'] = l_d_real
            loss_dict['l_d_fake'] = l_d_fake
            loss_dict['l_d'] = l_d

        loss_dict['working_h'] = torch.tensor(float(size[0]))
        self.log_losses({key: value.detach() for key, value in loss_dict.items()})

    # -- inference -------------------------------------------------------------------------------
    def enhance(self, x, size, kernel, use_lmar=True):
        """U(E(D(x))) at working size ``size`` with resizer ``kernel``; D is LMAR when ``use_lmar``."""
        # bare modules: validation may run on rank 0 only (no DDP collectives)
        return self.inference_resampler.enhance(x, self.net_enhancer, size, kernel, use_lmar)

    def test(self):
        """Enhances ``self.lq`` at the first validation size/resizer (for BasicSR's generic callers)."""
        self.net_g.eval()
        size = scaled_target_sizes(self.lq.shape[-2:], self.val_opt.target_sizes, self.val_opt.reference_size)[0]
        self.output = self.enhance(self.lq, size, self.val_opt.resizers[0])
        self.net_g.train()

    def get_current_visuals(self):
        visuals = OrderedDict(lq=self.lq.detach().cpu(), result=self.output.detach().cpu())
        if hasattr(self, 'gt'):
            visuals['gt'] = self.gt.detach().cpu()
        return visuals

    # -- validation ------------------------------------------------------------------------------
    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if self.opt['rank'] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics_opt = self.val_opt.metrics or {'psnr': {'type': 'calculate_psnr', 'crop_border': 0,
                                                        'test_y_channel': False}}
        resizers = list(self.val_opt.resizers)
        sums, count, sizes = {}, 0, None
        self.net_g.eval()
        for data in dataloader:
            self.feed_data(data)
            image_sizes = scaled_target_sizes(self.lq.shape[-2:], self.val_opt.target_sizes,
                                              self.val_opt.reference_size)
            if sizes is None:
                sizes = image_sizes
            elif image_sizes != sizes:
                raise ValueError(f'validation set {dataset_name}: images of different sizes give different working '
                                 'sizes; use one image size per validation set')
            gt = tensor2img(self.gt.detach().cpu()) if hasattr(self, 'gt') else None
            if gt is None:
                raise ValueError(f'validation set {dataset_name} has no gt images; LMAR validation needs them')
            image_name = osp.splitext(osp.basename(data['lq_path'][0]))[0] if 'lq_path' in data else str(count)
            for size in sizes:
                for kernel in resizers:
                    for use_lmar in (False, True):
                        output = self.enhance(self.lq, size, kernel, use_lmar)
                        result = tensor2img(output.cpu())
                        for name, metric in metrics_opt.items():
                            key = (size, kernel, use_lmar, name)
                            sums[key] = sums.get(key, 0.0) + calculate_metric({'img': result, 'img2': gt}, metric)
                        if save_img and use_lmar:
                            folder = self.opt['path']['visualization']
                            if self.opt['is_train']:
                                folder = osp.join(folder, image_name)
                            imwrite(result, osp.join(folder, f'{image_name}_{size[0]}x{size[1]}_{kernel}_'
                                                     f'{current_iter}.png'))
            count += 1
        self.net_g.train()
        if count == 0:
            return
        averages = {key: value / count for key, value in sums.items()}
        self.validation_table = LMARValidationTable(sizes, resizers, list(metrics_opt), averages)
        logger = get_root_logger()
        logger.info(f'LMAR validation on {dataset_name} ({count} images), iter {current_iter}:\n'
                    f'{self.validation_table.markdown()}')
        if self.val_opt.save_table:
            folder = osp.join(self.opt['path']['visualization'], 'lmar_tables')
            self.validation_table.save(folder, f'{dataset_name}_{current_iter}')
        # BasicSR's best-metric bookkeeping: mean over sizes x resizers with LMAR
        self.metric_results = {name: self.validation_table.mean(name, True) for name in metrics_opt}
        self._initialize_best_metric_results(dataset_name)
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        log_str = f'Validation {dataset_name}\n'
        for name, value in self.metric_results.items():
            best = self.best_metric_results[dataset_name][name]
            log_str += (f'\t # {name} (LMAR, mean over sizes x resizers): {value:.4f}\tBest: {best["val"]:.4f} '
                        f'@ {best["iter"]} iter\n')
        logger.info(log_str)
        if tb_logger:
            for name in metrics_opt:
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}', self.metric_results[name], current_iter)
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}_plain', self.validation_table.mean(name, False),
                                     current_iter)

    def get_current_log(self):
        return self.log_dict

    def save(self, epoch, current_iter):
        if self.net_g_ema is not None:
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)  # the frozen enhancer is not saved again
        if self.net_d is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        self.save_training_state(epoch, current_iter)


class LMARValidationTable:
    """Metric averages over working sizes x resizers, with and without LMAR (the paper's Table 1)."""

    def __init__(self, sizes, resizers, metrics, values):
        self.sizes, self.resizers, self.metrics, self.values = list(sizes), list(resizers), list(metrics), values

    def value(self, size, kernel, use_lmar, metric):
        return self.values[(tuple(size), kernel, use_lmar, metric)]

    def mean(self, metric, use_lmar):
        picked = [self.value(s, k, use_lmar, metric) for s in self.sizes for k in self.resizers]
        return sum(picked) / len(picked)

    def header(self):
        columns = ['size']
        for kernel in self.resizers:
            for metric in self.metrics:
                columns += [f'{kernel} {metric}', f'{kernel} {metric} +LMAR']
        return columns

    def rows(self):
        rows = []
        for size in self.sizes:
            row = [f'{size[0]}x{size[1]}']
            for kernel in self.resizers:
                for metric in self.metrics:
                    row += [self.value(size, kernel, False, metric), self.value(size, kernel, True, metric)]
            rows.append(row)
        return rows

    def markdown(self):
        header = self.header()
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        for row in self.rows():
            lines.append('| ' + ' | '.join([row[0]] + [f'{v:.4f}' for v in row[1:]]) + ' |')
        return '\n'.join(lines)

    def save(self, folder, stem):
        """Writes ``stem.md``, ``stem.csv`` and ``stem_psnr.png`` (when psnr is measured); returns paths."""
        os.makedirs(folder, exist_ok=True)
        paths = {'md': osp.join(folder, f'{stem}.md'), 'csv': osp.join(folder, f'{stem}.csv')}
        with open(paths['md'], 'w') as handle:
            handle.write(self.markdown() + '\n')
        with open(paths['csv'], 'w', newline='') as handle:
            writer = csv.writer(handle)
            writer.writerow(self.header())
            writer.writerows(self.rows())
        metric = 'psnr' if 'psnr' in self.metrics else self.metrics[0]
        paths['plot'] = osp.join(folder, f'{stem}_{metric}.png')
        self.plot(metric, paths['plot'])
        return paths

    def plot(self, metric, path):
        """Metric vs working size (pixels) per resizer, dashed without LMAR and solid with (Fig. 1 right)."""
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt

        order = sorted(self.sizes, key=lambda s: s[0] * s[1])
        megapixels = [s[0] * s[1] / 1e6 for s in order]
        figure, axes = plt.subplots(figsize=(6, 4))
        for index, kernel in enumerate(self.resizers):
            colour = f'C{index}'
            axes.plot(megapixels, [self.value(s, kernel, False, metric) for s in order], '--o', color=colour,
                      label=f'{kernel}')
            axes.plot(megapixels, [self.value(s, kernel, True, metric) for s in order], '-s', color=colour,
                      label=f'{kernel} + LMAR')
        axes.set_xlabel('working size (megapixels)')
        axes.set_ylabel(metric.upper())
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, ncol=2)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)


__all__ = ['LMARModel', 'LMARValidationTable', 'draw_working_size', 'scaled_target_sizes', 'PAPER_TARGET_SIZES']
