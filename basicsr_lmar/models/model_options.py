"""What a model of the plugin declares, and the one validation of it: ``network_sections`` (``{section:
Network(...)}``) and ``declared_options`` (``{section: {key: Option(...)}}``, see
:mod:`basicsr_lmar.models.plugin_mixin` for a model written with them).

Declarations add up along the class hierarchy: a subclass declares only the network sections and keys it
adds or changes (``declared_options = {'train': {'my_weight': Option(0.1, min=0)}}``, one line), and its
schemas (``option_schemas``, one :class:`~basicsr_lmar.options.OptionSchema` per section) are its bases'
with those keys. Every model accepts :data:`SHARED_OPTIONS` (basicsr's training loop keys, the plugin's
guards, basicsr's validation keys). The schemas run once on the whole option file in the preflight and
once in the model itself (:meth:`ModelOptionsMixin.validate_options`), so that a model built from a
script gets the same checks.
"""
from typing import NamedTuple

import torch
from basicsr.models import lr_scheduler
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY

from basicsr_lmar.options import ClassTable, Option, OptionError, OptionSchema, to_node, validate_registered

#: ``train.amp``: mixed precision for the forward passes of training (autocast); ``none`` = fp32.
AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

#: what a ``{type: ..., lr: ...}`` optimizer section may name (basicsr 1.4.2's own ``get_optimizer`` knows Adam only)
TORCH_OPTIMIZERS = ClassTable(
    'torch.optim', {name: value for name, value in vars(torch.optim).items() if isinstance(value, type) and
                    issubclass(value, torch.optim.Optimizer) and value is not torch.optim.Optimizer},
    'a torch.optim optimizer', OptionSchema(None, {
        'lr': Option(type=(int, float), min=0, exclusive_min=True, basicsr=True, doc='the learning rate')}, True))

#: the schedulers basicsr 1.4.2's ``setup_schedulers`` builds
SCHEDULERS = ClassTable('basicsr', {'MultiStepLR': lr_scheduler.MultiStepRestartLR,
                                    'MultiStepRestartLR': lr_scheduler.MultiStepRestartLR,
                                    'CosineAnnealingRestartLR': lr_scheduler.CosineAnnealingRestartLR},
                        'a scheduler basicsr builds', OptionSchema(None, {}, True))


def optimizer(*default, doc=''):
    """An optimizer section ``{type: <torch.optim class>, lr: ..., ...}`` (no default: required)."""
    return Option(*default, type=dict, registry=TORCH_OPTIMIZERS, doc=doc)


def scheduler(*default):
    """``train.scheduler``: one of :data:`SCHEDULERS` with its arguments, for every optimizer (no default: required)."""
    return Option(*default, type=dict, registry=SCHEDULERS, doc='{type: MultiStepLR, milestones: [...], gamma: ...}')


#: ``train.loss_crop_border`` of the models that declare it (CAR, IRN, HCFlow)
LOSS_CROP_BORDER = Option(0, type=int, min=0, doc='pixels at each HR border left out of the HR (pixel) loss')

SHARED_OPTIONS = {
    'train': {  # basicsr's training loop reads the first two, the plugin's guards the others
        'total_iter': Option(type=int, min=1, basicsr=True, doc="the number of iterations of basicsr's training loop"),
        'warmup_iter': Option(-1, type=int, basicsr=True, doc='iterations of linear learning-rate warm-up; -1: none'),
        'max_nonfinite_steps': Option(10, type=int, min=1, doc='stop after this many non-finite losses in a row'),
        'amp': Option('none', choices=tuple(AMP_DTYPES),
                      doc='mixed precision of the training forward passes: none | bf16 | fp16 (GPU only)'),
    },
    'val': {  # read by basicsr's loop and validation
        'val_freq': Option(None, type=(int, float), doc='validate every this many iterations'),
        'save_img': Option(False, type=bool, doc='write the validation images'),
        'metrics': Option(None, type=dict, doc='basicsr metrics, e.g. {psnr: {type: calculate_psnr, crop_border: 4}}'),
        'suffix': Option(None, type=str, doc='suffix of the images written by a test run (default: the run name)'),
        'pbar': Option(False, type=bool, doc='progress bar'),
    },
}


class Network(NamedTuple):
    """A ``network_*`` section a model reads.

    ``required``: a missing section is an error naming ``doc``; ``frozen``: never trained nor saved by a run
    (resuming keeps its checkpoint path); ``model_keys``: keys of the section that the model reads itself
    and that are not constructor arguments (LMAR's ``feature_layer``)."""
    doc: str
    required: bool = True
    frozen: bool = False
    model_keys: tuple = ()


def check_scale(opt, scale, source):
    """The one scale check: a network's (or rescaler's) ``scale`` equals the top-level ``scale`` when both are set."""
    if scale is not None and opt.get('scale') is not None and opt['scale'] != scale:
        raise OptionError(f'[{source}] scale {scale} differs from the top-level [scale] {opt["scale"]}; set both to '
                          'the same factor.')


def declared_scale(opt, default=4):
    """The scale an option file gives its model (``network_g.scale``, else the top-level ``scale``)."""
    return (opt.get('network_g') or {}).get('scale') or opt.get('scale') or default


class ModelOptionsMixin:
    """The declarations of a model and the one validation of its options (see the module docstring)."""

    network_sections = {'network_g': Network('the trained network')}  # None: any network_* (checked by the model)
    declared_options = SHARED_OPTIONS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        sections, networks = {}, {}
        for klass in reversed(cls.__mro__):
            for section, keys in vars(klass).get('declared_options', {}).items():
                sections.setdefault(section, {}).update(keys)
            if 'network_sections' in vars(klass):
                declared = vars(klass)['network_sections']
                networks = None if declared is None else {**(networks or {}), **declared}
        cls.option_schemas = {section: OptionSchema(cls.__name__, keys) for section, keys in sections.items()}
        cls.network_sections = networks

    @classmethod
    def validate_options(cls, opt):
        """Every section this model reads, validated once, before anything is built: a frozen ``CfgNode`` of
        section -> validated options (a network section with its arch's defaults filled in). Override it to
        add checks that span sections, calling ``super()`` first."""
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
            options[section] = to_node({'type': opt[section]['type'], **validated, **own})
            check_scale(opt, options[section].get('scale'), section)
        for section, schema in cls.option_schemas.items():
            if section != 'train' or opt.get('is_train'):
                options[section] = schema.validate(opt.get(section), section)
        if 'train' in options:
            cls._check_training(options['train'], opt)
        node = to_node(options)
        node.freeze()
        return node

    @classmethod
    def _check_training(cls, train, opt):
        losses = [key for key, spec in cls.option_schemas['train'].options.items()
                  if getattr(spec, 'registry', None) is LOSS_REGISTRY]
        if losses and all(train[key] is None for key in losses):
            raise OptionError(f'[train] every loss ({", ".join(losses)}) is ~; keep at least one.')
        if train.get('ema_decay', 0) >= 1:
            raise OptionError(f'[train] ema_decay {train.ema_decay} must be below 1 (1 never moves the average); '
                              'BasicSR uses 0.999, 0 turns EMA off')
        border, crop = train.get('loss_crop_border', 0), ((opt.get('datasets') or {}).get('train') or {}).get('gt_size')
        if border and isinstance(crop, int) and 2 * border >= crop:
            raise OptionError(f'[train] loss_crop_border {border} leaves nothing of the {crop}x{crop} training crop '
                              f'(datasets.train.gt_size); use at most {(crop - 1) // 2}.')

    @classmethod
    def image_size_rule(cls, opt):
        """The image sizes the model accepts, read from the option file: a
        :class:`basicsr_lmar.data.size_rules.SizeRule` (None: any size). The preflight checks every
        dataset's images against it before anything is built (:mod:`basicsr_lmar.preflight`)."""
        return None
