"""HCDModel: hierarchical collaborative downscaling (Xu et al., ICCV 2023) as a test-time BasicSR model.

HCD refines, per image, the input of a *pretrained* rescaler (gradient descent on the HR image, then
on the LR image; :func:`basicsr_lmar.ops.collaborative_downscaling.collaborative_downscale`) and
stores an 8-bit LR that the unchanged upscaler reconstructs better. This model builds the networks of
every ``network_*`` section, wraps them with the rescaler adapter named in the ``rescaler`` section
(looked up in ``RESCALER_REGISTRY``; e.g. ``IRNRescaler``, ``BicubicSRRescaler``), and reports, through
BasicSR's ``calculate_metric``, the metrics of the base rescaler and of HCD at each N of
``hcd.steps_list`` (N_x = N_y = N), the gain and the latency per image. It never trains.

Options (YAML)::

    network_g: {type: InvRescaleNet, scale: 4, block_num: [8, 8]}
    path: {pretrain_network_g: IRN_x4.pth}
    rescaler: {type: IRNRescaler, z_policy: seeded, z_seed: 0}
    hcd: {steps_hr: 15, steps_lr: 15, epsilon: 0.3, step_size: 0.0784313725, norm: l2, restarts: 1,
          seed: 0, keep_best: false, steps_list: [1, 5, 10, 15, 20],
          stop_gain_fraction: ~, stop_tolerance: ~, stop_patience: ~, stop_min_steps: ~}   # stopping: off

With ``stop_tolerance`` and/or ``stop_gain_fraction`` set, every setting stops each image once converged
(its N is then the maximum; the best iterate is kept; docs/hcd.md).

Data: HR images under ``gt`` (``HROnlyDataset``; or ``lq`` of BasicSR's ``SingleImageDataset`` on an HR folder);
they are cropped to a multiple of the scale (bottom/right), like ``GTmod`` folders.
"""
import inspect
import time
from collections import OrderedDict
from collections.abc import Mapping
from os import path as osp

import torch
from basicsr.metrics import calculate_metric
from basicsr.models.base_model import BaseModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY
from tqdm import tqdm

from basicsr_lmar.data.size_rules import SizeRule, lcm
from basicsr_lmar.models.model_options import check_scale, declared_scale
from basicsr_lmar.models.plugin_mixin import PluginModelMixin
from basicsr_lmar.ops.collaborative_downscaling import (HCD_OPTIONS, STOP_KEYS, check_hcd_options,
                                                       collaborative_downscale)
from basicsr_lmar.ops.geometry import crop_to_multiple
from basicsr_lmar.ops.rounding import quantize
from basicsr_lmar.options import Option, OptionError, to_plain, validate_registered
from basicsr_lmar.registry import RESCALER_REGISTRY

#: the ``hcd`` section: the op's options (:data:`~basicsr_lmar.ops.collaborative_downscaling.HCD_OPTIONS`) and the
#: model's own
HCD_SECTION = {
    **HCD_OPTIONS,
    'seed': Option(0, type=int, nullable=True, doc='seed of the random starts; ~ for the global RNG'),
    'keep_best': Option(False, doc='return the best iterate instead of the last'),
    'quantize_hr_stage': Option(True, doc='straight-through 8-bit LR inside the HR-stage objective'),
    'steps_list': Option(None, type=(list, tuple), min=0, nullable=True,
                         doc='extra N values evaluated with N_x = N_y = N'),
}


def _higher_is_better(metric_opt):
    return metric_opt.get('better', 'higher') == 'higher'


@MODEL_REGISTRY.register()
class HCDModel(PluginModelMixin, BaseModel):
    """Test-time collaborative downscaling around any registered rescaler adapter (never trains, so basicsr's
    BaseModel: nothing of SRModel's training or its one-result validation applies)."""

    network_sections = None  # the rescaler adapter's constructor says which (validate_options)
    declared_options = {'hcd': HCD_SECTION}

    @classmethod
    def validate_options(cls, opt):
        if opt.get('is_train'):
            raise OptionError('[model_type] HCDModel is test-time only (it never updates weights); run '
                              'basicsr_lmar/test.py -opt <file>, or train the rescaler with its own model.')
        options = super().validate_options(opt)
        try:
            check_hcd_options(**{key: options.hcd[key] for key in STOP_KEYS})
        except ValueError as error:
            raise OptionError(f'[hcd] {error}') from None
        rescaler_cls, networks, _ = cls._rescaler(opt)
        params = inspect.signature(rescaler_cls.__init__).parameters
        for key in sorted(k for k in opt if k.startswith('network_') and opt[k] is not None):
            if key not in networks:
                raise OptionError(f'[{key}] is not used by rescaler {rescaler_cls.__name__}, which takes '
                                  f'{networks or "no networks"}; remove the section or pick another adapter.')
        missing = [key for key in networks if opt.get(key) is None and params[key].default is inspect.Parameter.empty]
        if missing:
            raise OptionError(f'[{missing[0]}] rescaler {rescaler_cls.__name__} needs a network section '
                              f'{missing[0]!r}.')
        return options

    @classmethod
    def image_size_rule(cls, opt):
        from basicsr_lmar.archs.car_arch import SIZE_MULTIPLE, CARRescaler
        rescaler_cls = RESCALER_REGISTRY.get(opt['rescaler']['type'])
        scale = declared_scale(opt)
        multiple = lcm(SIZE_MULTIPLE, scale) if issubclass(rescaler_cls, CARRescaler) else scale
        return SizeRule(multiple, f'HCDModel x{scale} with {rescaler_cls.__name__} (multiples of {multiple})',
                        can_pad=False)

    @staticmethod
    def _rescaler(opt):
        """The adapter class named by ``rescaler.type``, the names of its networks (the model's ``network_*``
        sections) and its other options, validated against its schema."""
        section = opt.get('rescaler')
        rescaler_cls = RESCALER_REGISTRY.get(section['type']) if isinstance(section, Mapping) and \
            section.get('type') in RESCALER_REGISTRY else None
        networks = [key for key in inspect.signature(rescaler_cls.__init__).parameters
                    if key.startswith('network_')] if rescaler_cls else []
        stray = [key for key in (section or {}) if isinstance(key, str) and key.startswith('network_')]
        if stray:
            raise OptionError(f'[rescaler] {stray[0]!r} is a network; give it as a top-level YAML section.')
        options = validate_registered(section, 'rescaler', RESCALER_REGISTRY, supplied=networks)
        return rescaler_cls, networks, to_plain(options)

    # ------------------------------------------------------------------ building
    def build_networks(self):
        """The frozen networks of the rescaler adapter (``network_*`` sections, as ``net_*``) and the adapter."""
        cls, _, options = self._rescaler(self.opt)
        networks = {}
        for key in sorted(k for k in self.opt if k.startswith('network_') and self.opt[k] is not None):
            net = self.build_frozen_network(key, required=False)
            if self.opt['path'].get(f'pretrain_{key}') is None and any(True for _ in net.parameters()):
                raise FileNotFoundError(f'path.pretrain_{key} is required: {key} is the frozen, pretrained '
                                        f'{self.opt[key]["type"]} of the rescaler. Set it to its checkpoint.')
            networks[key] = net
            setattr(self, f'net_{key[len("network_"):]}', net)  # net_g, net_sr: basicsr's names
        rescaler = cls(**networks, **options)
        if isinstance(rescaler, torch.nn.Module):
            rescaler = rescaler.to(self.device).eval()
        self.rescaler = rescaler
        self.scale = rescaler.scale
        check_scale(self.opt, self.scale, 'rescaler')
        hcd = self.options.hcd
        main = (hcd.steps_hr, hcd.steps_lr)
        listed = [(n, n) for n in (hcd.steps_list or [])]
        self.settings = list(OrderedDict.fromkeys(listed + [main]))  # (N_y, N_x) pairs, main one last
        self.main_setting = main

    # ------------------------------------------------------------------ running
    def feed_data(self, data):
        key = 'gt' if 'gt' in data else 'lq' if 'lq' in data else None
        if key is None:
            raise KeyError(f'HCDModel needs HR images under "gt" (or "lq" for SingleImageDataset); got {sorted(data)}')
        self.gt = crop_to_multiple(data[key].to(self.device), self.scale, what='HCDModel: image',
                                   label=f'the scale {self.scale}').contiguous()

    def refine(self, hr, steps_hr, steps_lr):
        options = {k: self.options.hcd[k] for k in ('epsilon', 'step_size', 'norm', 'restarts', 'seed', 'keep_best',
                                                    'quantize_hr_stage') + STOP_KEYS}
        return collaborative_downscale(self.rescaler, hr, steps_hr=steps_hr, steps_lr=steps_lr, **options)

    def test(self):
        """Base LR/SR and, for each (N_y, N_x) setting, the HCD LR, its reconstruction and the latency."""
        with torch.no_grad():
            self.lq_base = quantize(self.rescaler.downscale(self.gt))
            self.output_base = self.rescaler.upscale(self.lq_base).clamp(0, 1)
        self.results = OrderedDict()
        for steps_hr, steps_lr in self.settings:
            start = time.perf_counter()
            result = self.refine(self.gt, steps_hr, steps_lr)
            with torch.no_grad():
                output = self.rescaler.upscale(result.lr).clamp(0, 1)
            seconds = (time.perf_counter() - start) / self.gt.shape[0]
            self.results[(steps_hr, steps_lr)] = {'lq': result.lr, 'output': output, 'seconds': seconds}
        main = self.results[self.main_setting]
        self.lq, self.output = main['lq'], main['output']

    def get_current_visuals(self):
        return OrderedDict(lq=self.lq.detach().cpu(), result=self.output.detach().cpu(),
                           lq_base=self.lq_base.detach().cpu(), result_base=self.output_base.detach().cpu(),
                           gt=self.gt.detach().cpu())

    @staticmethod
    def setting_name(steps_hr, steps_lr):
        return f'hcd{steps_hr}' if steps_hr == steps_lr else f'hcd{steps_hr}y{steps_lr}x'

    # ------------------------------------------------------------------ validation
    @master_only
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # its own loop: basicsr's scores one result per image; HCD scores the base rescaler and every
        # (N_y, N_x) setting, their gains and latency, per image of the batch
        dataset_name = dataloader.dataset.opt['name']
        metrics = to_plain(self.options.val.metrics or {})
        sums = OrderedDict()
        self.per_image = []
        pbar = tqdm(total=len(dataloader), unit='image') if self.options.val.pbar else None
        logger = get_root_logger()
        count = 0
        for idx, data in enumerate(dataloader):
            self.feed_data(data)
            self.test()
            names = self._names(data, idx)
            for b, name in enumerate(names):
                gt_img = tensor2img([self.gt[b]])
                base_img = tensor2img([self.output_base[b]])
                record = OrderedDict(name=name)
                for metric, metric_opt in metrics.items():
                    record[f'{metric}_base'] = calculate_metric({'img': base_img, 'img2': gt_img}, metric_opt)
                for setting, result in self.results.items():
                    tag = self.setting_name(*setting)
                    img = tensor2img([result['output'][b]])
                    for metric, metric_opt in metrics.items():
                        value = calculate_metric({'img': img, 'img2': gt_img}, metric_opt)
                        record[f'{metric}_{tag}'] = value
                        sign = 1 if _higher_is_better(metric_opt) else -1
                        record[f'{metric}_gain_{tag}'] = sign * (value - record[f'{metric}_base'])
                    record[f'seconds_{tag}'] = result['seconds']
                    if save_img and setting == self.main_setting:
                        self.save_hcd_images(dataset_name, name, tag, result['lq'][b], img)
                if save_img:
                    self.save_hcd_images(dataset_name, name, 'base', self.lq_base[b], base_img)
                for key, value in record.items():
                    if key != 'name':
                        sums[key] = sums.get(key, 0.0) + value
                self.per_image.append(record)
                logger.info('HCD ' + ' '.join(f'{k}: {v:.4f}' if isinstance(v, float) else f'{k}: {v}'
                                              for k, v in record.items()))
                count += 1
            del self.gt, self.lq, self.output, self.lq_base, self.output_base, self.results
            if pbar is not None:
                pbar.update(1)
                pbar.set_description(f'HCD {names[0]}')
        if pbar is not None:
            pbar.close()
        self.metric_results = OrderedDict((key, value / max(count, 1)) for key, value in sums.items())
        logger.info(f'HCD on {dataset_name}: means over images; gains are HCD - base')
        SRModel._log_validation_metric_values(self, current_iter, dataset_name, tb_logger)  # basicsr's log

    def _names(self, data, idx):
        for key in ('gt_path', 'lq_path'):
            if key in data:
                return [osp.splitext(osp.basename(p))[0] for p in data[key]]
        return [f'{idx:04d}_{b}' for b in range(self.gt.shape[0])]

    @master_only
    def save_hcd_images(self, dataset_name, name, tag, lq, sr_img):
        """The 8-bit LR and the reconstruction of one image for one setting (``tag``)."""
        folder = osp.join(self.opt['path']['visualization'], dataset_name)
        suffix = self.options.val.suffix or self.opt['name']
        imwrite(tensor2img([lq]), osp.join(folder, f'{name}_{suffix}_LR_{tag}.png'))
        imwrite(sr_img, osp.join(folder, f'{name}_{suffix}_SR_{tag}.png'))
