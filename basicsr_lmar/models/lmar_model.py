"""LMAR collaborative training (Yu et al., CVPR 2024): a resampler learns to feed a frozen enhancer.

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
from os import path as osp

import torch
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.archs.feature_hooks import FeatureHook
from basicsr_lmar.data.size_rules import WorkingSizeRule
from basicsr_lmar.models.model_options import Network, optimizer, scheduler
from basicsr_lmar.models.plugin_mixin import PluginModelMixin
from basicsr_lmar.ops.geometry import scaled_target_sizes
from basicsr_lmar.ops.resize import KERNELS
from basicsr_lmar.options import Option, OptionError

# Tables 1-3 of the paper: working sizes for a 2160x3840 input (the first one is the full size).
PAPER_TARGET_SIZES = ((2160, 3840), (1440, 2560), (1080, 1920), (1200, 1600), (720, 1280), (540, 960), (432, 768))
PAPER_REFERENCE_SIZE = (2160, 3840)
PAPER_RESIZERS = ('nearest', 'bilinear', 'bicubic', 'lanczos2', 'lanczos3')


def working_sizes(input_size, target_sizes=None, reference_size=PAPER_REFERENCE_SIZE):
    """The validation working sizes for an input of ``input_size``: ``target_sizes`` (default: the paper's
    Tables 1-3) given for ``reference_size``, scaled (:func:`basicsr_lmar.ops.geometry.scaled_target_sizes`)."""
    return scaled_target_sizes(input_size, PAPER_TARGET_SIZES if target_sizes is None else target_sizes,
                               reference_size)


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
class LMARModel(PluginModelMixin, SRModel):
    """Trains ``network_g`` (the LMAR resampler) in front of a frozen ``network_enhancer``."""

    network_sections = {
        'network_g': Network('the LMAR resampler, {type: LMARResampler}'),
        'network_enhancer': Network('the pretrained enhancer the resampler feeds, e.g. {type: UHDUNet}', frozen=True,
                                    model_keys=('feature_layer', )),
        'network_d': Network('the discriminator of train.gan_opt, {type: LMARPatchDiscriminator}', required=False),
    }
    declared_options = {
        'train': {
            'optim_g': optimizer({'type': 'Adam', 'lr': 4e-4, 'betas': [0.9, 0.999]}, doc='optimizer of network_g'),
            'optim_d': optimizer({'type': 'Adam', 'lr': 2e-4, 'betas': [0.9, 0.999]}, doc='optimizer of network_d'),
            'scheduler': scheduler({'type': 'MultiStepLR', 'milestones': [], 'gamma': 0.75}),
            'rc_opt': Option({'type': 'ResamplingConsistencyLoss', 'loss_weight': 1.0}, registry=LOSS_REGISTRY,
                             doc='resampling consistency loss (eq. 10), required'),
            'fa_opt': Option(None, type=dict, registry=LOSS_REGISTRY, doc='attention transfer loss (eq. 11); ~: off'),
            'gan_opt': Option(None, type=dict, registry=LOSS_REGISTRY, doc="basicsr GANLoss (eq. 12-13); ~ to disable"),
            'edge_opt': Option(None, type=dict, registry=LOSS_REGISTRY, doc='FeatureEdgeLoss (released code only)'),
            'scale_sampling': Option('uniform', choices=('uniform', 'lattice8', 'lattice8_full'),
                                     doc='uniform: r ~ U(scale_range); lattice8: released code, square sizes step 8; '
                                     'lattice8_full: lattice8 plus the crop size itself (r = 1)'),
            'scale_range': Option([1.0, 4.0], length=2, min=1.0, doc='[min, max] downscaling factor r'),
            'resizers': Option(None, type=(list, tuple),
                               doc='kernels to draw D/U from, one per iteration; ~: network_g.resize_kernel'),
            'net_d_iters': Option(1, type=int, min=1),
            'net_d_init_iters': Option(0, type=int, min=0),
            'log_plain_baseline': Option(True, type=bool, doc='also log L_rc of the plain downscale (no grad)'),
            'ema_decay': Option(0.0, type=(int, float), min=0, max=1,
                                doc='exponential moving average of network_g (BasicSR '
                                "convention): validation, test and the saved 'params_ema' use it; 0 = off"),
        },
        'val': {
            'target_sizes': Option(None, type=(list, tuple), doc='[[h, w], ...] working sizes; ~ = Tables 1-3'),
            'reference_size': Option(list(PAPER_REFERENCE_SIZE), length=2, min=1,
                                     doc='input size the target sizes refer to; others are scaled'),
            'resizers': Option(list(PAPER_RESIZERS), type=(list, tuple), doc=f'kernels from {list(KERNELS)}'),
            'metrics': Option({'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}},
                              doc='basicsr metrics, e.g. {psnr: {type: calculate_psnr, crop_border: 0}}'),
            'save_table': Option(True, type=bool, doc='write the markdown/CSV table and the PSNR plot'),
        },
    }

    @classmethod
    def validate_options(cls, opt):
        options = super().validate_options(opt)
        val = options.val
        check_resize_kernels(val.resizers, 'val')
        try:
            working_sizes(val.reference_size, val.target_sizes, val.reference_size)
        except ValueError as error:
            raise OptionError(f'[val] target_sizes: {error}') from None
        train = options.get('train')
        if train is None:
            return options
        if train.resizers is not None:
            if not train.resizers:
                raise OptionError('[train] resizers is empty; list at least one kernel, or ~ for '
                                  'network_g.resize_kernel')
            check_resize_kernels(train.resizers, 'train')
        if train.gan_opt is not None and opt.get('network_d') is None:
            raise OptionError('[train] gan_opt is set but network_d is missing; add a network_d section '
                              '(type: LMARPatchDiscriminator) or set gan_opt: ~')
        if (opt.get('path') or {}).get('pretrain_network_enhancer') is None:
            raise OptionError('[path] pretrain_network_enhancer is required: LMAR trains a resampler for a '
                              'pretrained, frozen enhancer. Point it at the enhancer checkpoint (.pth)')
        return options

    @classmethod
    def image_size_rule(cls, opt):
        val = opt.get('val') or {}
        sizes, reference = val.get('target_sizes') or PAPER_TARGET_SIZES, val.get('reference_size') or \
            PAPER_REFERENCE_SIZE
        return WorkingSizeRule(lambda size: working_sizes(size, sizes, reference), 'LMARModel validation',
                               lambda size: 'larger images or larger val.target_sizes')

    def build_networks(self):
        self.net_g = self.build_trainable_network('network_g')
        self.net_enhancer = self.build_frozen_network('network_enhancer', required=False)
        feature_layer = self.options.network_enhancer.get('feature_layer')
        if feature_layer is None:
            cls = type(self.net_enhancer)
            feature_layer = getattr(cls, 'BOTTLENECK_LAYER', None) or getattr(cls, 'bottleneck_layer', None)
            if feature_layer is None:
                raise OptionError(f'[network_enhancer] {cls.__name__} declares no BOTTLENECK_LAYER; set '
                                  'feature_layer to the name of the module whose output is the bottleneck')
        self.feature_hook = FeatureHook(self.net_enhancer, feature_layer)
        self.feature_layer = feature_layer
        gan = self.is_train and self.options.train.gan_opt is not None
        self.net_d = self.build_trainable_network('network_d') if gan else None

    # -- set-up ----------------------------------------------------------------------------------
    @classmethod
    def optimizer_labels(cls, options):
        # one optimizer per network, updated in alternation; network_d exists with train.gan_opt only
        return ['g', 'd'] if options.train.gan_opt is not None else ['g']

    def optimizer_networks(self):
        return {'g': [self.net_g], **({'d': [self.net_d]} if self.net_d is not None else {})}

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def resampler(self):
        return self.get_bare_model(self.net_g)

    @property
    def inference_resampler(self):
        """The resampler that validation and test use: the EMA copy when ``train.ema_decay`` is on."""
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.resampler

    def bottleneck(self, image):
        """E(image): the enhancer's feature at ``feature_layer`` (the rest of the enhancer is skipped)."""
        return self.feature_hook.extract(image)

    def upscale_options(self, kernel):
        """The resizer U of ``kernel`` (None: the resampler's own) as keyword arguments of ``ops.resize.resize``:
        the losses compare features through it unless their own ``resize_kernel``/``antialias`` are set."""
        resampler = self.resampler
        return {'kernel': kernel or resampler.resize_kernel, 'antialias': resampler.antialias,
                'boundary': resampler.boundary}

    # -- training --------------------------------------------------------------------------------
    def optimize_parameters(self, current_iter):
        train = self.options.train
        x = self.lq
        generator = self.iteration_generator(current_iter)  # same size and resizer on every rank
        size = draw_working_size(tuple(x.shape[-2:]), train.scale_sampling, train.scale_range, generator)
        kernel = None  # None: the resampler's own resize_kernel
        if train.resizers:
            kernel = train.resizers[int(torch.randint(len(train.resizers), (1, ), generator=generator))]
        self.working_size, self.working_kernel = size, kernel
        upscale = self.upscale_options(kernel)  # U of the features in the losses: the D of this iteration
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
        l_rc = self.cri_rc(features, target, upscale)
        loss_dict['l_rc'] = l_rc
        l_total = l_rc
        if self.cri_fa is not None:
            l_fa = self.cri_fa(features, target, upscale)
            loss_dict['l_fa'] = l_fa
            l_total = l_total + l_fa
        if self.cri_edge is not None:
            l_edge = self.cri_edge(features, target, x, upscale)
            loss_dict['l_edge'] = l_edge
            l_total = l_total + l_edge
        if self.cri_gan is not None and current_iter > train.net_d_init_iters:
            with self.autocast():
                fake_score = self.net_d(x_c).float()
            l_g_gan = self.cri_gan(fake_score, True, is_disc=False)
            loss_dict['l_g_gan'] = l_g_gan
            l_total = l_total + l_g_gan
        loss_dict['l_g_total'] = l_total
        self.guarded_step(l_total, self.optimizer_g)
        if hasattr(self, 'net_g_ema'):
            self.model_ema(decay=train.ema_decay)

        if train.log_plain_baseline:
            with torch.no_grad():
                loss_dict['l_rc_plain'] = self.cri_rc(self.bottleneck(x_d), target, upscale)

        # D step on L_d with x_c detached: the plain downscale is "real", the resampled image "fake"
        if self.net_d is not None:
            self.net_d.requires_grad_(True)
            for _ in range(train.net_d_iters):
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
        return self.inference_resampler.enhance(x, self.net_enhancer, size, kernel, use_lmar)

    def test(self):
        """Enhances ``self.lq`` at the first validation size/resizer (for BasicSR's generic callers)."""
        val = self.options.val
        self.net_g.eval()
        size = working_sizes(self.lq.shape[-2:], val.target_sizes, val.reference_size)[0]
        with torch.no_grad():
            self.output = self.enhance(self.lq, size, val.resizers[0])
        self.net_g.train()

    # -- validation ------------------------------------------------------------------------------
    @master_only
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # its own loop: basicsr's scores one result per image; LMAR's validation is the paper's table,
        # every working size x resizer with and without LMAR. Bookkeeping and log are basicsr's.
        dataset_name = dataloader.dataset.opt['name']
        val = self.options.val
        metrics_opt = val.metrics
        resizers = list(val.resizers)
        sums, count, sizes = {}, 0, None
        self.net_g.eval()
        for data in dataloader:
            self.feed_data(data)
            image_sizes = working_sizes(self.lq.shape[-2:], val.target_sizes, val.reference_size)
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
                        with torch.no_grad():
                            result = tensor2img(self.enhance(self.lq, size, kernel, use_lmar).cpu())
                        for name, metric in metrics_opt.items():
                            key = (size, kernel, use_lmar, name)
                            sums[key] = sums.get(key, 0.0) + calculate_metric({'img': result, 'img2': gt}, metric)
                        if save_img and use_lmar:
                            tag = f'_{size[0]}x{size[1]}_{kernel}'
                            imwrite(result, self.validation_image_path(image_name, current_iter, dataset_name, tag))
            count += 1
            del self.lq, self.gt
        self.net_g.train()
        if count == 0:
            return
        self.validation_table = LMARValidationTable(sizes, resizers, list(metrics_opt),
                                                    {key: value / count for key, value in sums.items()})
        get_root_logger().info(f'LMAR validation on {dataset_name} ({count} images), iter {current_iter}; the metrics '
                               f'below are means over sizes x resizers with LMAR:\n{self.validation_table.markdown()}')
        if val.save_table:
            self.save_validation_table(dataset_name, current_iter)
        self.metric_results = {name: self.validation_table.mean(name, True) for name in metrics_opt}
        self._initialize_best_metric_results(dataset_name)
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        if tb_logger:
            for name in metrics_opt:
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}_plain', self.validation_table.mean(name, False),
                                     current_iter)

    @master_only
    def save_validation_table(self, dataset_name, current_iter):
        folder = osp.join(self.opt['path']['visualization'], 'lmar_tables')
        return self.validation_table.save(folder, f'{dataset_name}_{current_iter}')

    def save(self, epoch, current_iter):
        if self.net_d is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        super().save(epoch, current_iter)  # net_g (+ params_ema), the training state; never the frozen enhancer


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
        """Metric vs working size (pixels) per resizer, dashed without LMAR and solid with (Fig. 1 right).

        Drawn on a ``Figure`` with its own Agg canvas: no pyplot, no change of the program's backend."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        order = sorted(self.sizes, key=lambda s: s[0] * s[1])
        megapixels = [s[0] * s[1] / 1e6 for s in order]
        figure = Figure(figsize=(6, 4))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
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


__all__ = ['LMARModel', 'LMARValidationTable', 'draw_working_size', 'working_sizes', 'PAPER_TARGET_SIZES']
