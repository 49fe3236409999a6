"""Preflight: every option and image of a run checked before anything is built or any folder created.

basicsr reads many keys of the option file deep inside its loop (``train.total_iter`` after the
experiment folder exists, ``batch_size_per_gpu`` in torch's DataLoader, an optimizer's ``lr`` in torch),
and a mistake there ends in a traceback from torch or basicsr, often after the run has started. For an
option file whose ``model_type`` is one of the plugin's models (or a subclass of one, a user's model),
:func:`check_options` runs the schemas on the whole file first, in this order, and raises an
:class:`~basicsr_lmar.options.OptionError` (a :class:`~basicsr_lmar.errors.UserError`) naming the key
and the fix:

1. numbers written as strings: PyYAML reads ``4e-4`` (no decimal point) and any quoted number (``'2'``)
   as text. They are **refused**, not coerced, naming the key and the YAML that gives a number
   (``!!float 4e-4`` or ``4.0e-4``; ``2``): a coerced value would train, but the file would still
   mean something else to every other reader of it;
2. the keys basicsr reads (:data:`FILE_OPTIONS`: ``name``, ``model_type``, ``num_gpu`` (not above 0 without
   a CUDA device), ``path``, ``datasets``, ``manual_seed``, ``scale``; for training ``train`` and
   :data:`LOGGER_OPTIONS`; the registered ``type`` and the ``name`` of every dataset, the loader keys of
   the training set, :data:`LOADER_OPTIONS`), closest registered names for a misspelt one;
3. the model's own schemas (``validate_options``: its network sections, with arch typos and a missing
   required section such as LMAR's ``network_enhancer`` named; ``train``, with basicsr's ``total_iter``
   (a misspelt ``total_iters`` is named), ``optim_*`` (a ``torch.optim`` optimizer, a positive ``lr``) and
   ``scheduler``, and the losses; ``val``); then ``path.resume_state`` and (when not resuming) every
   ``path.pretrain_network_*`` must be a file, and the state to resume must be one of this model that
   holds the optimizers this file builds;
4. the data: the plugin's datasets are built (which reads every image's header, or an LMDB's
   ``meta_info.txt``; no pixel is decoded) and every image checked against the model's size rule
   (:func:`basicsr_lmar.data.size_rules.check_dataset_images`). The images the model will crop or pad
   are the run's notices: they reach the model in ``opt`` (``image_size_notices``), which logs them.

Where it runs: :func:`checked_parse_options` wraps basicsr's ``parse_options`` so that the ``-opt`` file is
checked before basicsr reads it, in the plugin's entries (``basicsr_lmar/train.py``, ``test.py``,
``basicsr-lmar-train/-test``: a user mistake ends with one line and exit code 2 through
:func:`basicsr_lmar.cli.errors.run_main`) and in the stock ``python -m basicsr.train`` / ``basicsr.test``
(or a checkout's ``basicsr/train.py``: the import hook of :mod:`basicsr_lmar.runtime.compat`; a mistake
ends with ``basicsr.train: error: <message>`` as the last line and exit code 2).

Files whose ``model_type`` is another project's registered model are not checked at all (and nothing
else changes for them). A ``model_type`` that is registered nowhere is checked: basicsr would stop on
it anyway, without naming the closest models.
"""
import copy
import os.path as osp
import re
import sys
from collections.abc import Mapping
from typing import NamedTuple

from basicsr_lmar.data.size_rules import NOTICES_KEY
from basicsr_lmar.errors import UserError
from basicsr_lmar.options import Option, OptionError, OptionSchema, option_file_argument, read_option_file, registered
from basicsr_lmar.runtime.resume import check_resume_state_model, optimizer_keys

#: a number as YAML 1.1 would read it, if it were not a string (no 'nan'/'inf': those are words)
_NUMBER = re.compile(r'^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$')
#: an exponent without a decimal point: a string for PyYAML (YAML 1.1), a float for YAML 1.2 readers
_BARE_EXPONENT = re.compile(r'^[+-]?\d+[eE][+-]?\d+$')

#: keys whose values are text whatever they look like (names, file names, module names)
_TEXT_KEYS = frozenset({'name', 'type', 'model_type', 'filename_tmpl', 'meta_info_file', 'feature_layer', 'suffix',
                        'phase', 'split', 'photos', 'project', 'resume_id', 'entity'})
#: keys of basicsr's that must be whole numbers (the fix then shows no decimal point)
_INTEGER_KEYS = frozenset({'total_iter', 'warmup_iter', 'batch_size_per_gpu', 'num_worker_per_gpu', 'manual_seed',
                           'scale', 'gt_size', 'num_gpu', 'print_freq', 'save_checkpoint_freq', 'val_freq',
                           'dataset_enlarge_ratio', 'num_samples', 'num_prefetch_queue', 'crop_border',
                           'milestones', 'periods', 'seed', 'train_size', 'resize_to', 'net_d_iters',
                           'net_d_init_iters', 'max_nonfinite_steps', 'loss_crop_border'})

#: the top-level keys basicsr reads (the model's sections are its own schemas')
FILE_OPTIONS = OptionSchema(None, {
    'name': Option(basicsr=True, doc="the run's name (experiments/<name>, results/<name>)"),
    'model_type': Option(basicsr=True, doc='the model to build, the name of a registered model (e.g. CARModel)'),
    'num_gpu': Option(type=int, min=0, basicsr=True, doc='basicsr reads it before anything else: 0 for CPU, 1 or more, '
                      'or auto'),
    'path': Option(type=dict, basicsr=True, doc='basicsr reads it (pretrained weights, resume state); add `path: {}` '
                   'if there is nothing to load'),
    'datasets': Option(type=dict, basicsr=True, doc='the data: a section per phase (train, val, test_1, ...), each '
                       'with a `type`'),
    'manual_seed': Option(None, type=int, basicsr=True, doc='~ for a random seed'),
    'scale': Option(None, type=int, min=1, basicsr=True),
}, passthrough=True)
TRAINING_OPTIONS = OptionSchema(None, {
    'train': Option(type=dict, basicsr=True, doc='training needs it (total_iter, optimizers, losses)'),
    'logger': Option(type=dict, basicsr=True, doc="basicsr's training loop reads logger.print_freq and "
                     'logger.save_checkpoint_freq'),
}, passthrough=True)
LOGGER_OPTIONS = OptionSchema(None, {
    'print_freq': Option(type=int, min=1, basicsr=True, doc="basicsr's training loop reads it (log every this many "
                         'iterations)'),
    'save_checkpoint_freq': Option(type=int, min=1, basicsr=True, doc="basicsr's training loop reads it (save every "
                                   'this many iterations)'),
}, passthrough=True)
DATASET_OPTIONS = OptionSchema(None, {
    'type': Option(basicsr=True, doc='the dataset class, e.g. HROnlyDataset'),
    'name': Option(basicsr=True, doc='basicsr names the dataset in its log and results'),
}, passthrough=True)
#: the training set's keys that basicsr's loader and loop read
LOADER_OPTIONS = OptionSchema(None, {
    'batch_size_per_gpu': Option(type=int, min=1, basicsr=True, doc='the training batch size of each process'),
    'num_worker_per_gpu': Option(type=int, min=0, basicsr=True, doc='data-loading worker processes per process (0: '
                                 'load in the main one)'),
    'dataset_enlarge_ratio': Option(1, type=int, min=1, basicsr=True),
}, passthrough=True)


class Checked(NamedTuple):
    """What :func:`check_options` found worth logging about a file that passed: the images the model will crop
    or pad (the model logs them once the run's log exists)."""
    notices: list


# ------------------------------------------------------------------------------------------ entry points
def check_option_file(argv, is_train):
    """The preflight of the ``-opt`` file of basicsr's command line ``argv``: a :class:`Checked`, or False
    (no ``-opt``: basicsr's parser asks for it; another project's model: not checked)."""
    path = option_file_argument(argv)
    checked = check_options(read_option_file(path), is_train) if path else False
    if checked:
        from basicsr_lmar.runtime.dist import check_launcher
        check_launcher(argv)  # --launcher slurm outside slurm (basicsr's own init_dist does not check)
    return checked


def checked_parse_options(parse_options, checked=None):
    """basicsr's ``parse_options`` (unwrapped if it was wrapped before) preceded by the preflight of its
    ``-opt`` file, or given its result (``checked``: the plugin's entries check before they change basicsr's
    pipeline, and their ``run_main`` reports a mistake); the notices go into the options it returns. In the
    stock route a user mistake ends the process with one line on stderr and exit code 2."""
    from basicsr_lmar.cli.errors import EXIT_USER_ERROR, debug_requested

    parse_options = getattr(parse_options, '__wrapped__', parse_options)

    def parse_options_after_preflight(root_path, is_train=True):
        result = checked
        if result is None:
            try:
                result = check_option_file(sys.argv[1:], is_train)
            except UserError as error:
                if debug_requested([]):  # BASICSR_LMAR_DEBUG=1 (basicsr's own --debug means its debug mode)
                    raise
                print(f'{"basicsr.train" if is_train else "basicsr.test"}: error: {error}', file=sys.stderr)
                raise SystemExit(EXIT_USER_ERROR) from None
        opt, args = parse_options(root_path, is_train)
        if result:
            opt[NOTICES_KEY] = result.notices
        return opt, args

    parse_options_after_preflight.preflight_checked = True
    parse_options_after_preflight.__wrapped__ = parse_options
    return parse_options_after_preflight


# ---------------------------------------------------------------------------------------------- checks
def plugin_model_names():
    from basicsr.utils.registry import MODEL_REGISTRY
    return sorted(name for name, cls in MODEL_REGISTRY if cls.__module__.startswith('basicsr_lmar.'))


def applies_to(opt):
    """True for the plugin's models and their subclasses, and for a ``model_type`` registered nowhere (or missing)."""
    from basicsr.utils.registry import MODEL_REGISTRY

    from basicsr_lmar.models.plugin_mixin import PluginModelMixin

    model_type = opt.get('model_type')
    if not isinstance(model_type, str) or model_type not in MODEL_REGISTRY:
        return True
    return issubclass(MODEL_REGISTRY.get(model_type), PluginModelMixin)


def check_options(opt, is_train):
    """Checks a loaded option file (see the module docstring); returns False when it is not the plugin's
    (nothing checked), a :class:`Checked` when it passed. Raises :class:`OptionError` on the first mistake."""
    from basicsr.utils.registry import MODEL_REGISTRY

    if not applies_to(opt):
        return False
    _check_numeric_strings(opt)
    FILE_OPTIONS.validate(dict(opt, num_gpu=0 if opt.get('num_gpu') == 'auto' else opt.get('num_gpu')))
    if is_train:
        TRAINING_OPTIONS.validate(opt)
    model_cls = registered(MODEL_REGISTRY, opt['model_type'], '[model_type]', 'a registered model')
    _check_num_gpu(opt['num_gpu'])
    _check_datasets(opt, is_train)
    if is_train:  # BasicSR's files write `save_checkpoint_freq: !!float 5e3`
        LOGGER_OPTIONS.validate({key: int(value) if isinstance(value, float) and value.is_integer() else value
                                 for key, value in opt['logger'].items()}, 'logger')
    parsed = _as_parsed(opt, is_train)
    options = model_cls.validate_options(copy.deepcopy(parsed))
    _check_paths(opt)
    check_resume_state_model(opt, optimizer_keys(model_cls, options) if is_train else None)
    return Checked(_check_images(model_cls, parsed))


def _check_num_gpu(num_gpu):
    import torch
    if num_gpu != 'auto' and num_gpu > 0 and not torch.cuda.is_available():
        raise OptionError(f'[num_gpu] is {num_gpu} but torch sees no CUDA device: set num_gpu: 0 to run on the CPU '
                          '(or auto).')


def _check_paths(opt):
    """``path.resume_state`` and every ``path.pretrain_network_*`` that is set must be a file. When resuming
    (``resume_state`` or ``--auto_resume``), basicsr points the networks it saves at the run's own
    checkpoints, so only ``resume_state`` itself is checked then."""
    path = opt['path']
    resume = path.get('resume_state')
    if resume is not None and not osp.isfile(osp.expanduser(str(resume))):
        raise OptionError(f'[path] resume_state: {resume} does not exist; give the .state file of the run to resume '
                          '(experiments/<name>/training_states/<iter>.state) or ~.')
    if resume is not None or '--auto_resume' in sys.argv[1:]:
        return
    for key, value in path.items():
        if isinstance(key, str) and key.startswith('pretrain_network') and value is not None and \
                not osp.isfile(osp.expanduser(str(value))):
            section = key[len('pretrain_'):]
            raise OptionError(f'[path] {key}: {value} does not exist; point it at the checkpoint (.pth) of '
                              f'{section}, or set it to ~ to start from scratch where {section} is trained.')
    from basicsr_lmar.checkpoints.state_dicts import check_pretrained_networks
    check_pretrained_networks(opt)  # each checkpoint readable (not damaged) and fitting its network


def _check_numeric_strings(opt):
    for path, key, value in _walk(opt):
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            raise OptionError(_numeric_string_message(path, key, value))


def _walk(node, path=''):
    """``(section path, key, value)`` of every value where basicsr or the plugin expects numbers (text keys,
    file and folder keys, the ``path`` and ``dist_params`` sections and ``logger.wandb`` are left out)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if not isinstance(key, str) or key in _TEXT_KEYS or key.startswith('dataroot') or \
                    key.endswith(('path', 'paths', 'root', 'file', 'dir')) or \
                    (not path and key in ('path', 'dist_params')) or (path == 'logger' and key == 'wandb'):
                continue
            if isinstance(value, (Mapping, list, tuple)):
                yield from _walk(value, f'{path}.{key}' if path else key)
            else:
                yield path, key, value
    elif isinstance(node, (list, tuple)):
        section, _, key = path.rpartition('.')
        for value in node:
            if isinstance(value, (Mapping, list, tuple)):
                yield from _walk(value, path)
            else:
                yield section, key, value


def _numeric_string_message(section, key, value):
    text = value.strip()
    where = f'[{section}] {key}' if section else f'[{key}]'
    number = float(text)
    integer = key in _INTEGER_KEYS and number.is_integer()
    if _BARE_EXPONENT.match(text):
        mantissa, exponent = re.split('[eE]', text)
        fix = f'`{key}: {int(number)}`' if integer else f'`{key}: !!float {text}` or `{key}: {mantissa}.0e{exponent}`'
        return (f'{where} is the string {value!r}, not a number: PyYAML reads an exponent without a decimal point '
                f'as text. Write {fix}.')
    fix = f'{key}: {int(number)}' if integer else f'{key}: {text}'
    return f'{where} is the string {value!r}, not a number: it is quoted in the YAML. Write `{fix}` without quotes.'


def _check_datasets(opt, is_train):
    from basicsr.utils.registry import DATASET_REGISTRY

    datasets = opt['datasets']
    if not datasets:
        raise OptionError('[datasets] is empty: give a section per phase (train, val, ...), each with a `type`.')
    phases = ('val', ) if is_train else ('test', 'val', 'train')
    for phase, dataset in datasets.items():
        if not (is_train and phase == 'train') and phase.split('_')[0] not in phases:
            raise OptionError(f'[datasets.{phase}] is not a phase basicsr {"trains" if is_train else "tests"} with: '
                              + ('name it train, val or val_<n>.' if is_train else 'name it test, test_<n>, val or '
                                 'val_<n>.'))
        if not isinstance(dataset, Mapping):
            raise OptionError(f'[datasets.{phase}] must be a mapping with a `type`; got {dataset!r}')
        DATASET_OPTIONS.validate(dataset, f'datasets.{phase}')
        registered(DATASET_REGISTRY, dataset['type'], f'[datasets.{phase}] type', 'a registered dataset')
    if is_train:
        if 'train' not in datasets:
            raise OptionError('[datasets] has no train section: training needs `datasets: {train: {...}}`.')
        LOADER_OPTIONS.validate(datasets['train'], 'datasets.train')


def _as_parsed(opt, is_train):
    """The options as basicsr's ``parse_options`` hands them on (``is_train``, each dataset's ``phase``
    and the top-level ``scale``), without its side effects."""
    parsed = copy.deepcopy(dict(opt))
    parsed['is_train'] = is_train
    parsed.setdefault('dist', False)
    parsed.setdefault('rank', 0)
    parsed.setdefault('world_size', 1)
    parsed['datasets'] = {phase: dict(dataset) for phase, dataset in opt['datasets'].items()}
    for phase, dataset in parsed['datasets'].items():
        dataset['phase'] = phase.split('_')[0]
        if 'scale' in parsed:
            dataset['scale'] = parsed['scale']
        for key in ('dataroot_gt', 'dataroot_lq'):
            if isinstance(dataset.get(key), str):
                dataset[key] = osp.expanduser(dataset[key])
    return parsed


def _check_images(model_cls, opt):
    """Builds the plugin's datasets (headers only) and checks each image against the model's size rule;
    returns the notices."""
    from basicsr.utils.registry import DATASET_REGISTRY

    from basicsr_lmar.data.size_rules import check_dataset_images, metric_minimum

    rule = model_cls.image_size_rule(opt)
    metric = metric_minimum((opt.get('val') or {}).get('metrics'))
    notices = []
    for phase, dataset_opt in opt['datasets'].items():
        cls = DATASET_REGISTRY.get(dataset_opt['type'])
        if not cls.__module__.startswith('basicsr_lmar.'):
            continue
        dataset = cls(copy.deepcopy(dataset_opt))
        if rule is not None:
            notices.append(check_dataset_images(rule, dataset, dataset_opt, f'datasets.{phase} ({dataset_opt["name"]})',
                                                metric))
    return [notice for notice in notices if notice]
