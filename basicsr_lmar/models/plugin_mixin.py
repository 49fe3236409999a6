"""``PluginModelMixin``: what the plugin's models add to basicsr's, and nothing else.

Every model of the plugin is the mixin composed with basicsr's own class, mixin first, as Real-ESRGAN's
models extend basicsr's::

    @MODEL_REGISTRY.register()
    class MyModel(PluginModelMixin, SRModel):
        network_sections = {'network_g': Network('the trained network, e.g. {type: EDSR, ...}')}
        option_schemas = {'train': train_schema('MyModel', {'pixel_opt': Option(..., registry=LOSS_REGISTRY)}),
                          'val': val_schema('MyModel', {})}

        def build_networks(self):
            self.net_g = self.build_trainable_network('network_g')

basicsr supplies everything else, unchanged: the validation loop, metric bookkeeping and its log
(``SRModel.nondist_validation``, ``_log_validation_metric_values``), visuals, result images,
``get_current_log``, EMA (``model_ema``), optimizers set-up, schedulers and warm-up, ``save``.

**What a subclass declares** (class attributes):

- ``network_sections``: ``{section: Network(doc, required=True, frozen=False, model_keys=())}``, every
  ``network_*`` section the model reads; ``model_keys`` are keys of the section that the model reads
  itself and that are not constructor arguments (LMAR's ``feature_layer``). A required section that is
  missing, or a ``network_*`` section the model does not declare, is an :class:`OptionError` that names
  it. ``None``: the model accepts any ``network_*`` section and checks them itself (HCD). A frozen
  network is never saved by a run, so resuming keeps its checkpoint path
  (:func:`basicsr_lmar.runtime.resume.load_resume_state`).
- ``option_schemas``: ``{section: OptionSchema}`` of the other sections it reads (``train``, ``val``,
  ``hcd`` ...), built with :func:`train_schema` / :func:`val_schema`, which add the keys every model
  shares (basicsr's loop keys, ``max_nonfinite_steps``, ``amp``; ``val_freq``, ``metrics`` ...), declared
  here once. ``train`` is validated only when training.

**What the mixin does** in ``__init__``, in this order: :meth:`validate_options` (every section, once,
before anything is built; the result is ``self.options``, a frozen yacs ``CfgNode``, and the validated
sections, defaults included, replace the raw ones in ``opt`` for basicsr's own methods); basicsr's
``BaseModel.__init__``; the subclass's :meth:`build_networks`; ``init_training_settings()`` when training
(basicsr's ``SRModel`` one or the subclass's).

**What a subclass overrides or calls**:

- ``validate_options(opt)`` (classmethod) to add checks that span sections: call ``super()`` first;
- ``build_networks()`` with :meth:`build_trainable_network` (moved, DDP-wrapped when distributed,
  ``path.pretrain_<section>`` loaded) and :meth:`build_frozen_network` (eval mode, no parameter gradients,
  never wrapped, loaded from its required path);
- in ``optimize_parameters``: forward passes under ``with self.autocast():`` (``train.amp``), losses in
  fp32, :meth:`guarded_step` (skips a non-finite step on every rank, stops after
  ``train.max_nonfinite_steps`` in a row), :meth:`log_losses`; per-iteration draws that must agree
  across ranks from :meth:`iteration_generator` and :meth:`global_batch_randn`;
- ``test_lr()`` (rescaling models): the 8-bit LR of ``self.gt``, which :meth:`save_lr_images` writes
  during validation beside basicsr's result image.

**What it overrides in basicsr, for the plugin's models only** (never patched into basicsr): network
placement (DDP on CPU/gloo too, no DDP for networks without trainable parameters), any ``torch.optim``
optimizer by name, checkpoints (atomic, with metadata, rank 0 only), weights loading (``weights_only``,
readable mismatch report), training states (with RNG states and the skip counters, for exact resume;
validation must therefore not draw from the global RNGs: use a local ``torch.Generator``), and
distributed validation (rank 0 on the bare networks: a forward through a DDP wrapper on one rank would
send collectives the other ranks never join).
"""
import contextlib
import copy
import math
import os.path as osp
from typing import NamedTuple

import torch
from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import ARCH_REGISTRY
from torch.nn.parallel import DataParallel, DistributedDataParallel

from basicsr_lmar.checkpoints.state_dicts import atomic_torch_save, load_network_weights
from basicsr_lmar.data.size_rules import take_notices
from basicsr_lmar.options import Option, OptionError, OptionNode, OptionSchema, to_plain, validate_registered
from basicsr_lmar.runtime.dist import all_ranks_agree
from basicsr_lmar.runtime.resume import (capture_rng_state, model_record, plain_state, remove_partial_saves,
                                         warn_if_model_options_changed)
from basicsr_lmar.version import __version__

#: ``train.amp``: mixed precision for the forward passes of training (autocast); ``none`` = fp32.
AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

#: ``train`` keys every model accepts: basicsr's training loop reads the first two, the mixin the others.
TRAINING_LOOP_OPTIONS = {
    'total_iter': Option(None, type=int, min=1, doc="iterations of basicsr's training loop (which requires it)"),
    'warmup_iter': Option(-1, type=int, doc='iterations of linear learning-rate warm-up; -1: none'),
    'max_nonfinite_steps': Option(10, type=int, min=1, doc='stop after this many non-finite losses in a row'),
    'amp': Option('none', choices=tuple(AMP_DTYPES),
                  doc='mixed precision of the training forward passes: none | bf16 | fp16 (GPU only)'),
}

#: ``val`` keys every model accepts (read by basicsr's loop and validation).
VALIDATION_OPTIONS = {
    'val_freq': Option(None, type=(int, float), doc='validate every this many iterations'),
    'save_img': Option(False, type=bool, doc='write the validation images'),
    'metrics': Option(None, type=dict, doc='basicsr metrics, e.g. {psnr: {type: calculate_psnr, crop_border: 4}}'),
    'suffix': Option(None, type=str, doc='suffix of the images written by a test run (default: the run name)'),
    'pbar': Option(False, type=bool, doc='progress bar'),
}


def train_schema(owner, options):
    """``owner``'s ``train`` schema: :data:`TRAINING_LOOP_OPTIONS` plus (or overridden by) ``options``."""
    return OptionSchema(owner, {**TRAINING_LOOP_OPTIONS, **options})


def val_schema(owner, options):
    """``owner``'s ``val`` schema: :data:`VALIDATION_OPTIONS` plus (or overridden by) ``options``."""
    return OptionSchema(owner, {**VALIDATION_OPTIONS, **options})


class Network(NamedTuple):
    """A ``network_*`` section a model reads (see the module docstring)."""
    doc: str
    required: bool = True
    frozen: bool = False
    model_keys: tuple = ()


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimisation steps had a non-finite loss."""


class NamedImages:
    """A validation loader as basicsr's loop reads it: that loop names each image by ``lq_path``, which
    HR-only datasets (rescaling, LMAR's resampler) do not give; their ``gt_path`` names it then."""

    def __init__(self, loader):
        self.loader, self.dataset = loader, loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if 'lq_path' not in batch and 'gt_path' in batch:
                batch = dict(batch, lq_path=batch['gt_path'])
            yield batch


class PluginModelMixin:
    """The plugin's additions to a basicsr model class (compose it first: ``(PluginModelMixin, SRModel)``)."""

    network_sections = {'network_g': Network('the trained network')}
    option_schemas = {}

    def __init__(self, opt):
        self.options = self.validate_options(opt)
        for section in self.option_schemas:
            if section in self.options and opt.get(section) is not None:
                opt[section] = to_plain(self.options[section])
        # BaseModel's, not SRModel's __init__: build_networks() does SRModel's work (build, move, print,
        # load path.pretrain_network_g) for every network of the model, in the order the model needs.
        BaseModel.__init__(self, opt)
        train = self.options.get('train')
        self.amp_dtype = AMP_DTYPES[train.amp] if train is not None else None
        if self.amp_dtype == torch.float16 and self.device.type != 'cuda':
            raise OptionError('[train] amp: fp16 needs a GPU; use bf16 on CPU.')
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
        self.grad_scaler = None
        if self.amp_dtype == torch.float16:  # older torch (2.1) has torch.cuda.amp's GradScaler, not torch.amp's
            self.grad_scaler = torch.amp.GradScaler('cuda') if hasattr(torch.amp, 'GradScaler') else \
                torch.cuda.amp.GradScaler()
        self.max_nonfinite_steps = train.max_nonfinite_steps if train is not None else None
        self.nonfinite_streak = self.nonfinite_total = 0
        self.last_iter = 0
        self.network_options = {}
        for notice in take_notices():  # the preflight's (images cropped to the model's multiple), for the log
            get_root_logger().info(notice)
        if self.is_train:
            self.remove_interrupted_saves()
        self.build_networks()
        if self.is_train:
            self.init_training_settings()

    # ------------------------------------------------------------------------------------------ options
    @classmethod
    def validate_options(cls, opt):
        """Every section this model reads, validated once, before anything is built: a frozen ``CfgNode``
        of section -> validated options (a network section with its arch's defaults filled in).
        Override it to add checks that span sections, calling ``super()`` first."""
        options = {}
        declared = cls.network_sections
        present = [key for key in opt if key.startswith('network_') and opt[key] is not None]
        if declared is not None:
            for section, network in declared.items():
                if network.required and opt.get(section) is None:
                    raise OptionError(f'[{section}] section is missing: {cls.__name__} needs {network.doc}. '
                                      f'Add a `{section}:` section with the `type` of a registered arch.')
            stray = [key for key in present if key not in declared]
            if stray:
                raise OptionError(f'[{stray[0]}] is not a network of {cls.__name__}, which reads '
                                  f'{", ".join(declared)}; remove the section or fix its name.')
        for section in present:
            model_keys = declared[section].model_keys if declared is not None else ()
            validated = validate_registered(opt[section], section, ARCH_REGISTRY, extra_keys=model_keys)
            own = {key: opt[section][key] for key in model_keys if key in opt[section]}
            options[section] = OptionNode(to_plain({'type': opt[section]['type'], **validated, **own}))
        for section, schema in cls.option_schemas.items():
            if section == 'train' and not opt.get('is_train'):
                continue
            options[section] = schema.validate(opt.get(section), section)
        node = OptionNode(options)
        node.freeze()
        return node

    @classmethod
    def image_size_rule(cls, opt):
        """The image sizes the model accepts, read from the option file: a
        :class:`basicsr_lmar.data.size_rules.ImageSizeRule` (None: any size). The preflight checks every
        dataset's images against it before anything is built (:mod:`basicsr_lmar.preflight`)."""
        return None

    # ----------------------------------------------------------------------------------------- networks
    def build_networks(self):
        """Builds the model's networks (default: ``net_g`` from ``network_g``, trained, as SRModel)."""
        self.net_g = self.build_trainable_network('network_g')

    def _network_options(self, section):
        model_keys = (self.network_sections or {}).get(section, Network('')).model_keys
        net_opt = {k: copy.deepcopy(v) for k, v in self.opt[section].items() if k not in model_keys}
        self.network_options[section] = copy.deepcopy(net_opt)
        return net_opt

    def _load_path_options(self, section):
        label = section.replace('network_', '')
        path = self.opt['path']
        return path.get(f'strict_load_{label}', True), path.get(f'param_key_{label}', 'params')

    def build_trainable_network(self, section):
        """``opt[section]`` built, moved, wrapped (DDP/DataParallel), ``path.pretrain_<section>`` loaded."""
        net = self.model_to_device(build_network(self._network_options(section)))
        self.print_network(net)
        load_path = self.opt['path'].get(f'pretrain_{section}')
        if load_path is not None:
            strict, param_key = self._load_path_options(section)
            self.load_network(net, load_path, strict, param_key, option_key=f'path.pretrain_{section}')
        return net

    def build_frozen_network(self, section, required=True):
        """``opt[section]`` frozen: eval mode, ``requires_grad=False``, never wrapped; loaded from
        ``path.pretrain_<section>`` (an error when ``required`` and unset). Gradients still flow *through*
        it to its inputs."""
        net_opt = self._network_options(section)
        net = build_network(copy.deepcopy(net_opt)).to(self.device)
        key = f'pretrain_{section}'
        load_path = self.opt['path'].get(key)
        if load_path is None and required:
            raise FileNotFoundError(f'path.{key} is required: {section} is a frozen, pretrained network. '
                                    f'Set it to the checkpoint of the {net_opt["type"]} to use.')
        if load_path is not None:
            if self.opt['path'].get('resume_state') and not osp.isfile(load_path):
                raise OptionError(
                    f'[path] {key}: {load_path} does not exist. When resuming, basicsr points every '
                    f'pretrain_network_* at the run\'s own checkpoints, but the frozen {section} is never saved '
                    f'by the run: add `ignore_resume_networks: [{section}]` to the path section (the plugin\'s '
                    'entries, basicsr-lmar-train and basicsr_lmar/train.py, do this for you).')
            strict, param_key = self._load_path_options(section)
            self.load_network(net, load_path, strict, param_key, option_key=f'path.{key}')
        net.eval()
        net.requires_grad_(False)
        return net

    def model_to_device(self, net):
        # basicsr's passes device_ids=[torch.cuda.current_device()] (no CPU/gloo DDP) and wraps every net
        # (DDP refuses one without trainable parameters: a frozen enhancer, a fixed upscaler).
        net = net.to(self.device)
        if self.opt['dist']:
            if not any(p.requires_grad for p in net.parameters()):
                return net
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            return DistributedDataParallel(net, device_ids=device_ids,
                                           find_unused_parameters=self.opt.get('find_unused_parameters', False))
        if self.opt['num_gpu'] > 1:
            return DataParallel(net)
        return net

    @contextlib.contextmanager
    def bare_networks(self):
        """Within it, every DDP-wrapped network attribute of the model is its bare module."""
        wrapped = {name: net for name, net in vars(self).items() if isinstance(net, DistributedDataParallel)}
        try:
            for name, net in wrapped.items():
                setattr(self, name, net.module)
            yield
        finally:
            for name, net in wrapped.items():
                setattr(self, name, net)

    # ------------------------------------------------------------------------------------ randomness
    def iteration_generator(self, current_iter, stream=0):
        """A CPU generator seeded by (``manual_seed``, iteration, stream): identical on every rank.

        For per-iteration draws that must agree across processes (LMAR's target size, say), so that
        N processes × batch b train exactly like 1 process × batch N·b.
        """
        generator = torch.Generator()
        seed = int(self.opt.get('manual_seed') or 0)
        generator.manual_seed((seed * 1_000_003 + int(current_iter)) * 101 + int(stream))
        return generator

    def global_batch_randn(self, local_batch, sample_shape, current_iter, stream=0):
        """Gaussian noise for this rank's samples, cut from one draw for the whole global batch.

        Sample ``j`` of the global batch gets the same noise whether it is processed alone on rank
        ``j // local_batch`` or together with the others in a single process.
        """
        world_size = self.opt.get('world_size', 1)
        rank = self.opt.get('rank', 0)
        noise = torch.randn((world_size * local_batch, *sample_shape), generator=self.iteration_generator(
            current_iter, stream))
        return noise[rank * local_batch:(rank + 1) * local_batch].to(self.device)

    # ----------------------------------------------------------------------------------- optimisation
    def get_optimizer(self, optim_type, params, lr, **kwargs):
        # basicsr 1.4.2 knows only Adam; later BasicSR releases accept any torch.optim optimizer.
        optimizer_class = getattr(torch.optim, optim_type, None)
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
            known = sorted(name for name, value in vars(torch.optim).items()
                           if isinstance(value, type) and issubclass(value, torch.optim.Optimizer)
                           and name != 'Optimizer')
            raise OptionError(f'[train] optim_*.type {optim_type!r} is not a torch.optim optimizer; choose one of '
                              f'{", ".join(known)}')
        return optimizer_class(params, lr, **kwargs)

    def autocast(self):
        """Context for training forward passes: autocast to ``train.amp`` (bf16 on CPU and GPU, fp16
        on GPU), or nothing. Losses are computed in fp32 outside it by the models."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def guarded_step(self, loss, optimizers, parameters=None, clip_grad_norm=None):
        """``backward`` + ``step`` unless the loss is non-finite on any rank; returns whether it stepped.

        ``optimizers``: one optimizer or a list (all zeroed first). ``parameters``: what to clip.
        """
        optimizers = optimizers if isinstance(optimizers, (list, tuple)) else [optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        finite = all_ranks_agree(bool(torch.isfinite(loss.detach()).all()), device=loss.device)
        if not finite:
            self.nonfinite_streak += 1
            self.nonfinite_total += 1
            get_root_logger().warning(
                f'non-finite loss ({loss.detach().flatten()[0].item()}): step skipped '
                f'({self.nonfinite_streak} in a row, {self.nonfinite_total} in total; the run stops after '
                f'{self.max_nonfinite_steps} in a row, train.max_nonfinite_steps).')
            if self.nonfinite_streak >= self.max_nonfinite_steps:
                raise NonFiniteLossError(
                    f'{self.nonfinite_streak} consecutive optimisation steps had a non-finite loss; stopping '
                    'before any NaN reaches a checkpoint. Lower the learning rate, check the data for NaN/inf, '
                    'or raise train.max_nonfinite_steps.')
            return False
        self.nonfinite_streak = 0
        if self.grad_scaler is None:
            loss.backward()
            if clip_grad_norm is not None and parameters is not None:
                torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
            for optimizer in optimizers:
                optimizer.step()
            return True
        self.grad_scaler.scale(loss).backward()
        if clip_grad_norm is not None and parameters is not None:
            for optimizer in optimizers:
                self.grad_scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
        for optimizer in optimizers:
            self.grad_scaler.step(optimizer)
        self.grad_scaler.update()
        return True

    def log_losses(self, loss_dict):
        """Reduces (across ranks) and stores losses for BasicSR's message logger; skips non-finite ones."""
        finite = {k: v for k, v in loss_dict.items() if math.isfinite(float(v))}
        self.log_dict = self.reduce_loss_dict(finite)
        self.log_dict['nonfinite_skips'] = self.nonfinite_total

    def update_learning_rate(self, current_iter, warmup_iter=-1):
        # basicsr's loop calls this once per iteration: the last one is checked against total_iter at the end
        self.last_iter = current_iter
        super().update_learning_rate(current_iter, warmup_iter)

    # ------------------------------------------------------------------------------------ checkpoints
    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        # basicsr's, written atomically and with the plugin version and the network's option section
        if current_iter == -1:
            current_iter = 'latest'
        save_path = osp.join(self.opt['path']['models'], f'{net_label}_{current_iter}.pth')
        nets = net if isinstance(net, list) else [net]
        param_keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {}
        for net_, key in zip(nets, param_keys):
            state_dict = self.get_bare_model(net_).state_dict()
            save_dict[key] = {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in state_dict.items()}
        section = f'network_{net_label.replace("net_", "", 1)}'
        save_dict['basicsr_lmar'] = {'version': __version__, 'network_options': self.network_options.get(section)}
        atomic_torch_save(save_dict, save_path)

    def save(self, epoch, current_iter):
        if current_iter == -1:  # basicsr's loop saves the latest model once, after its last iteration
            self._warn_if_total_iter_missed()
        super().save(epoch, current_iter)

    def _warn_if_total_iter_missed(self):
        total = (self.opt.get('train') or {}).get('total_iter')
        if total is not None and 0 < self.last_iter < total:
            get_root_logger().warning(
                f'training stopped at iteration {self.last_iter}, before train.total_iter {total}: basicsr\'s '
                'loop drops the last incomplete batch of every epoch. The plugin\'s entries (basicsr-lmar-train, '
                'basicsr_lmar/train.py) fill it and reach total_iter; or make the number of training samples '
                '(x dataset_enlarge_ratio) a multiple of batch_size_per_gpu x the number of processes.')

    def load_network(self, net, load_path, strict=True, param_key='params', option_key=None):
        # weights_only loading, and a mismatch report that names the option key instead of torch's key dump
        load_network_weights(self.get_bare_model(net), load_path, strict, param_key, where=option_key or 'checkpoint',
                             logger=get_root_logger())

    @master_only
    def save_training_state(self, epoch, current_iter):
        # basicsr's, plus the RNG states and the skip counters (exact resume), written atomically
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': capture_rng_state(),
            'nonfinite': {'streak': self.nonfinite_streak, 'total': self.nonfinite_total},
            'basicsr_lmar_version': __version__,
            'model': model_record(self.opt),
        }
        atomic_torch_save(plain_state(state), osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        # The RNG states in resume_state are restored by the resumable sampler, at the point of the data
        # pipeline where the uninterrupted run was when it saved them (basicsr_lmar.runtime.resume).
        super().resume_training(resume_state)
        warn_if_model_options_changed(self.opt, resume_state, get_root_logger())
        counters = resume_state.get('nonfinite', {})
        self.nonfinite_streak = counters.get('streak', 0)
        self.nonfinite_total = counters.get('total', 0)

    @master_only
    def remove_interrupted_saves(self):
        """Removes the temporary files a killed save left in the run's folders (checkpoints are written
        through ``<file>.tmp<pid>``; an interrupted training state is hundreds of MB)."""
        for key in ('models', 'training_states'):
            folder = self.opt['path'].get(key)
            if folder and osp.isdir(folder):
                for name in remove_partial_saves(folder):
                    get_root_logger().info(f'removed {osp.join(folder, name)}, left by an interrupted save')

    # ------------------------------------------------------------------------------------- validation
    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # basicsr validates on rank 0 alone; through a DDP wrapper that forward would send collectives (buffer
        # broadcasts) that no other rank joins, so rank 0 runs on the bare networks.
        if self.opt['rank'] == 0:
            with self.bare_networks():
                self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    @master_only
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # basicsr's loop; HR-only datasets name their images by gt_path (NamedImages)
        super().nondist_validation(NamedImages(dataloader), current_iter, tb_logger, save_img)

    def validation_image_path(self, image_name, current_iter, dataset_name, tag=''):
        """Where basicsr's loop writes the result of ``image_name``, with ``tag`` before the extension."""
        folder = self.opt['path']['visualization']
        if self.opt['is_train']:
            return osp.join(folder, image_name, f'{image_name}_{current_iter}{tag}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return osp.join(folder, dataset_name, f'{image_name}_{suffix}{tag}.png')

    @master_only
    def save_lr_images(self, dataloader, current_iter):
        """Writes the 8-bit LR (``test_lr()``) of every validation image beside its result image, tagged
        ``_lr``: the LR is what a rescaling method produces, and basicsr's loop writes the result only."""
        dataset_name = dataloader.dataset.opt['name']
        for batch in NamedImages(dataloader):
            self.feed_data(batch)
            image_name = osp.splitext(osp.basename(batch['lq_path'][0]))[0]
            imwrite(tensor2img([self.test_lr()]), self.validation_image_path(image_name, current_iter, dataset_name,
                                                                              '_lr'))
            del self.gt
