"""Preflight: every option and image of a run checked before anything is built or any folder created.

basicsr reads many keys of the option file deep inside its loop (``train.total_iter`` after the
experiment folder exists, ``batch_size_per_gpu`` in torch's DataLoader, an optimizer's ``lr`` in torch),
and a mistake there ends in a traceback from torch or basicsr, often after the run has started. For an
option file whose ``model_type`` is one of the plugin's models, :func:`check_options` checks first, in
this order, and raises an :class:`~basicsr_lmar.options.OptionError` (a
:class:`~basicsr_lmar.errors.UserError`) naming the key and the fix:

1. the sections basicsr needs (``name``, ``model_type``, ``num_gpu``, ``path``, ``datasets``; for training
   ``train`` and ``logger``) and the registered names of ``model_type`` and every dataset ``type``
   (closest registered names, :mod:`difflib`);
2. numbers written as strings: PyYAML reads ``4e-4`` (no decimal point) and any quoted number (``'2'``)
   as text. They are **refused**, not coerced, naming the key and the YAML that gives a number
   (``!!float 4e-4`` or ``4.0e-4``; ``2``): a coerced value would train, but the file would still
   mean something else to every other reader of it;
3. ``manual_seed``, ``scale``, ``num_gpu`` (not above 0 without a CUDA device); per dataset ``batch_size_per_gpu`` and ``num_worker_per_gpu``
   (training); ``train.total_iter`` (a misspelt ``total_iters`` is named with the closest key), every
   ``train.optim_*`` section (a ``torch.optim`` optimizer, a positive numeric ``lr``) and
   ``train.scheduler`` (a scheduler basicsr builds); ``logger.print_freq`` / ``save_checkpoint_freq``;
4. the model's own option validation (``validate_options``: its network sections, with arch typos and
   a missing required section such as LMAR's ``network_enhancer`` named, its losses, ``train``, ``val``);
   then ``path.resume_state`` and (when not resuming) every ``path.pretrain_network_*`` must be a file;
5. the data: the plugin's datasets are built (which reads every image's header, or an LMDB's
   ``meta_info.txt``; no pixel is decoded) and every image checked against the model's size rule
   (``image_size_rule``: CAR multiples of 8 and of the scale, IRN/HCD multiples of the scale, LMAR working
   sizes of at least 8 pixels) and what the validation metrics need (SSIM's 11x11 window inside
   ``crop_border``). An image that is not a multiple is cropped by the model (``size_policy: crop``, the
   default; the run's log lists each one) or refused (``size_policy: refuse``).

Where it runs:

- the plugin's entries (``basicsr_lmar/train.py``, ``test.py``, ``basicsr-lmar-train/-test``) call
  :func:`check_option_file` first; a user mistake ends with one line and exit code 2
  (:func:`basicsr_lmar.cli.errors.run_main`);
- the stock ``python -m basicsr.train`` / ``basicsr.test`` (or a checkout's ``basicsr/train.py``): the
  import hook of :mod:`basicsr_lmar.runtime.compat` wraps the ``parse_options`` those modules imported
  with :func:`checked_parse_options`, which checks the file given by ``-opt`` before basicsr reads it;
  a mistake ends with ``basicsr.train: error: <message>`` as the last line and exit code 2.

Files whose ``model_type`` is another project's registered model are not checked at all (and nothing
else changes for them). A ``model_type`` that is registered nowhere is checked: basicsr would stop on
it anyway, without naming the closest models.
"""
import copy
import math
import os.path as osp
from os import stat as os_stat
import re
import sys
from collections.abc import Mapping

from basicsr_lmar.options import OptionError, closest_first
from basicsr_lmar.runtime.resume import check_resume_state_model

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
                           'net_d_init_iters', 'max_nonfinite_steps'})
#: the schedulers basicsr 1.4.2's ``setup_schedulers`` builds
SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')


# ------------------------------------------------------------------------------------------ entry points
def load_option_file(path):
    """The option file as basicsr reads it (its ordered YAML loader), or an OptionError naming it."""
    import yaml
    from basicsr.utils.options import ordered_yaml

    if not path:
        raise OptionError('-opt: give the option file (-opt options/train_X.yml)')
    if not osp.isfile(path):
        raise OptionError(f'-opt {path}: no such file')
    try:
        with open(path) as handle:
            opt = yaml.load(handle, Loader=ordered_yaml()[0])
    except yaml.YAMLError as error:
        raise OptionError(f'-opt {path}: not valid YAML: {error}') from None
    if not isinstance(opt, Mapping):
        raise OptionError(f'-opt {path}: expected a mapping of sections (name, model_type, datasets, ...), '
                          f'got {type(opt).__name__}')
    return opt


def option_file_from_argv(argv):
    """The ``-opt`` argument of basicsr's command line (None when absent)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', type=str)
    args, _ = parser.parse_known_args(argv)
    return args.opt


def check_option_file(path, is_train):
    """Loads ``path`` and runs :func:`check_options`; returns the loaded options (or None when the file
    is not the plugin's). ``path`` None: nothing to check (basicsr's own parser will ask for it)."""
    if path is None:
        return None
    key = _file_key(path, is_train)
    if key is not None and key in _PASSED:  # the entry checked it, the stock module's parse_options asks again
        return _PASSED[key]
    opt = load_option_file(path)
    result = opt if check_options(opt, is_train) else None
    if key is not None:
        _PASSED[key] = result
    return result


_PASSED = {}  # (file, mtime, size, is_train) -> what check_option_file returned


def _file_key(path, is_train):
    try:
        stat = os_stat(path)
    except OSError:
        return None
    return (osp.realpath(path), stat.st_mtime_ns, stat.st_size, bool(is_train))


def checked_parse_options(parse_options):
    """basicsr's ``parse_options`` preceded by the preflight of its ``-opt`` file (the stock route);
    a user mistake ends the process with one line on stderr and exit code 2."""
    if getattr(parse_options, 'preflight_checked', False):
        return parse_options

    def parse_options_after_preflight(root_path, is_train=True):
        from basicsr_lmar.cli.errors import EXIT_USER_ERROR, debug_requested
        from basicsr_lmar.errors import UserError

        try:
            check_option_file(option_file_from_argv(sys.argv[1:]), is_train)
        except UserError as error:
            if debug_requested([]):  # BASICSR_LMAR_DEBUG=1 (basicsr's own --debug means its debug mode)
                raise
            module = 'basicsr.train' if is_train else 'basicsr.test'
            print(f'{module}: error: {error}', file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        return parse_options(root_path, is_train)

    parse_options_after_preflight.preflight_checked = True
    parse_options_after_preflight.__wrapped__ = parse_options
    return parse_options_after_preflight


# ---------------------------------------------------------------------------------------------- checks
def plugin_model_names():
    from basicsr.utils.registry import MODEL_REGISTRY
    return sorted(name for name, cls in MODEL_REGISTRY if cls.__module__.startswith('basicsr_lmar.'))


def applies_to(opt):
    """True for the plugin's models and for a ``model_type`` registered nowhere (or missing)."""
    from basicsr.utils.registry import MODEL_REGISTRY

    model_type = opt.get('model_type')
    if not isinstance(model_type, str) or model_type not in MODEL_REGISTRY:
        return True
    return model_type in plugin_model_names()


def check_options(opt, is_train):
    """Checks a loaded option file (see the module docstring); returns False when it is not the plugin's
    (nothing checked), True when it passed. Raises :class:`OptionError` on the first mistake."""
    if not applies_to(opt):
        return False
    _check_sections(opt, is_train)
    _check_numeric_strings(opt)
    model_cls = _check_registered_names(opt)
    _check_top_level(opt)
    _check_datasets(opt, is_train)
    if is_train:
        _check_train(opt)
        _check_logger(opt)
    parsed = _as_parsed(opt, is_train)
    model_cls.validate_options(copy.deepcopy(parsed))
    _check_paths(opt)
    check_resume_state_model(opt)
    _check_images(model_cls, parsed)
    return True


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


def _require(opt, key, what, section=None):
    if opt.get(key) is None:
        where = f'[{section}] {key}' if section else f'[{key}]'
        close = closest_first(key, [k for k in opt if isinstance(k, str) and k != key])[:1]
        hint = ''
        if close and _similar(key, close[0]):
            hint = f' The file has {close[0]!r}: did you mean {key!r}?'
        raise OptionError(f'{where} is missing: {what}.{hint}')


def _similar(key, other):
    import difflib
    return difflib.SequenceMatcher(None, key.lower(), other.lower()).ratio() >= 0.75


def _check_sections(opt, is_train):
    _require(opt, 'name', "the run's name (experiments/<name>, results/<name>)")
    _require(opt, 'model_type', f'the model to build, one of the plugin\'s {", ".join(plugin_model_names())}')
    _require(opt, 'num_gpu', 'basicsr reads it before anything else: 0 for CPU, 1 or more, or auto')
    if opt.get('path') is None:
        raise OptionError('[path] is missing: basicsr reads it (pretrained weights, resume state); add `path: {}` '
                          'if there is nothing to load.')
    if not isinstance(opt['path'], Mapping):
        raise OptionError(f'[path] must be a mapping (pretrain_network_g: ..., resume_state: ...); got '
                          f'{opt["path"]!r}')
    _require(opt, 'datasets', 'the data: a section per phase (train, val, test_1, ...), each with a `type`')
    if not isinstance(opt['datasets'], Mapping) or not opt['datasets']:
        raise OptionError(f'[datasets] must map phases (train, val, ...) to dataset sections; got {opt["datasets"]!r}')
    if is_train:
        _require(opt, 'train', 'training needs it (total_iter, optimizers, losses)')
        _require(opt, 'logger', "basicsr's training loop reads logger.print_freq and logger.save_checkpoint_freq")


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


def _registered(registry, name, section, what):
    if not isinstance(name, str):
        raise OptionError(f'[{section}] type must name a registered {what}; got {name!r}')
    if name not in registry:
        known = [key for key, _ in registry]
        raise OptionError(f'[{section}] type {name!r} is not a registered {what}. Closest: '
                          f'{", ".join(closest_first(name, known)[:5])}.')
    return registry.get(name)


def _check_registered_names(opt):
    from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY

    model_type = opt['model_type']
    if not isinstance(model_type, str) or model_type not in MODEL_REGISTRY:
        known = [key for key, _ in MODEL_REGISTRY]
        raise OptionError(f'[model_type] {model_type!r} is not a registered model. Closest: '
                          f'{", ".join(closest_first(str(model_type), known)[:5])}.')
    for phase, dataset in opt['datasets'].items():
        if not isinstance(dataset, Mapping):
            raise OptionError(f'[datasets.{phase}] must be a mapping with a `type`; got {dataset!r}')
        if 'type' not in dataset:
            raise OptionError(f'[datasets.{phase}] type is missing: the dataset class, e.g. HROnlyDataset')
        _registered(DATASET_REGISTRY, dataset['type'], f'datasets.{phase}', 'dataset')
        _require(dataset, 'name', 'basicsr names the dataset in its log and results', f'datasets.{phase}')
    return MODEL_REGISTRY.get(model_type)


def _integer(value, key, section=None, minimum=None, nullable=False, extra=''):
    where = f'[{section}] {key}' if section else f'[{key}]'
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f'{where} must be a whole number{extra}; got {value!r} ({type(value).__name__}).')
    if minimum is not None and value < minimum:
        raise OptionError(f'{where} must be at least {minimum}{extra}; got {value}.')


def _number(value, key, section, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(f'[{section}] {key} must be a number; got {value!r} ({type(value).__name__}).')
    if positive and value <= 0:
        raise OptionError(f'[{section}] {key} must be positive; got {value}.')


def _check_top_level(opt):
    _integer(opt.get('manual_seed'), 'manual_seed', nullable=True, extra=' (~ for a random seed)')
    _integer(opt.get('scale'), 'scale', minimum=1, nullable=True)
    if opt['num_gpu'] != 'auto':
        _integer(opt['num_gpu'], 'num_gpu', minimum=0, extra=' (0 for CPU) or auto')
        import torch
        if opt['num_gpu'] > 0 and not torch.cuda.is_available():
            raise OptionError(f'[num_gpu] is {opt["num_gpu"]} but torch sees no CUDA device: set num_gpu: 0 to run '
                              'on the CPU (or auto).')


def _check_datasets(opt, is_train):
    phases = list(opt['datasets'])
    if is_train:
        for phase in phases:
            if phase != 'train' and phase.split('_')[0] != 'val':
                raise OptionError(f'[datasets.{phase}] is not a phase basicsr trains with: name it train, val or '
                                  'val_<n>.')
        if 'train' not in phases:
            raise OptionError('[datasets] has no train section: training needs `datasets: {train: {...}}`.')
        train = opt['datasets']['train']
        section = 'datasets.train'
        _require(train, 'batch_size_per_gpu', 'the training batch size of each process', section)
        _integer(train['batch_size_per_gpu'], 'batch_size_per_gpu', section, minimum=1)
        _require(train, 'num_worker_per_gpu', 'data-loading worker processes per process (0: load in the main one)',
                 section)
        _integer(train['num_worker_per_gpu'], 'num_worker_per_gpu', section, minimum=0)
        _integer(train.get('dataset_enlarge_ratio', 1), 'dataset_enlarge_ratio', section, minimum=1)
    else:
        for phase in phases:
            if phase.split('_')[0] not in ('test', 'val', 'train'):
                raise OptionError(f'[datasets.{phase}] is not a phase basicsr tests with: name it test, test_<n>, '
                                  'val or val_<n>.')


def _check_train(opt):
    train = opt['train']
    if not isinstance(train, Mapping):
        raise OptionError(f'[train] must be a mapping of training options; got {train!r}')
    _require(train, 'total_iter', "the number of iterations of basicsr's training loop", 'train')
    _integer(train['total_iter'], 'total_iter', 'train', minimum=1)
    _integer(train.get('warmup_iter', -1), 'warmup_iter', 'train', extra=' (-1: no warm-up)')
    import torch

    optimizers = sorted(name for name, value in vars(torch.optim).items()
                        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer) and name != 'Optimizer')
    for key, section in train.items():
        if not (isinstance(key, str) and key.startswith('optim_')) or section is None:
            continue
        where = f'train.{key}'
        if not isinstance(section, Mapping):
            raise OptionError(f'[{where}] must be a mapping {{type: Adam, lr: ...}}; got {section!r}')
        if section.get('type') not in optimizers:
            raise OptionError(f'[{where}] type {section.get("type")!r} is not a torch.optim optimizer. Closest: '
                              f'{", ".join(closest_first(str(section.get("type")), optimizers)[:5])}.')
        _require(section, 'lr', 'the learning rate', where)
        _number(section['lr'], 'lr', where, positive=True)
    scheduler = train.get('scheduler')
    if scheduler is not None:
        if not isinstance(scheduler, Mapping) or scheduler.get('type') not in SCHEDULERS:
            name = scheduler.get('type') if isinstance(scheduler, Mapping) else scheduler
            raise OptionError(f'[train.scheduler] type {name!r} is not a scheduler basicsr builds. Closest: '
                              f'{", ".join(closest_first(str(name), SCHEDULERS))}.')


def _check_logger(opt):
    logger = opt['logger']
    if not isinstance(logger, Mapping):
        raise OptionError(f'[logger] must be a mapping (print_freq, save_checkpoint_freq, ...); got {logger!r}')
    for key, what in (('print_freq', 'log every this many iterations'),
                      ('save_checkpoint_freq', 'save every this many iterations')):
        _require(logger, key, f"basicsr's training loop reads it ({what})", 'logger')
        value = logger[key]
        if isinstance(value, float) and value.is_integer():  # BasicSR's files write `!!float 5e3`
            value = int(value)
        _integer(value, key, 'logger', minimum=1)


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


def _training_crop(dataset, dataset_opt):
    """``(option key, (h, w))`` of the crop (or resize) a training set gives the model, None for whole images."""
    gt_size = dataset_opt.get('gt_size')
    if isinstance(gt_size, int) and not isinstance(gt_size, bool):
        return 'gt_size', (gt_size, gt_size)
    if getattr(dataset, 'train_transform', 'none') != 'none' and getattr(dataset, 'train_size', None):
        return 'train_size', tuple(dataset.train_size)
    return None


def _check_images(model_cls, opt):
    """Builds the plugin's datasets (headers only) and checks each image against the model's size rule."""
    from basicsr.utils.registry import DATASET_REGISTRY

    from basicsr_lmar.data.size_rules import PENDING_NOTICES, ImageSizeRule, metric_minimum

    rule = model_cls.image_size_rule(opt)
    metric = metric_minimum((opt.get('val') or {}).get('metrics')) if rule is not None else None
    notices = []
    for phase, dataset_opt in opt['datasets'].items():
        cls = DATASET_REGISTRY.get(dataset_opt['type'])
        if not cls.__module__.startswith('basicsr_lmar.'):
            continue
        dataset = cls(copy.deepcopy(dataset_opt))
        if rule is None:
            continue
        section = f'datasets.{phase} ({dataset_opt["name"]})'
        policy = dataset_opt.get('size_policy', 'crop')
        training = dataset_opt['phase'] == 'train'
        crop = _training_crop(dataset, dataset_opt) if training else None
        if crop is not None:
            key, (height, width) = crop
            smallest = max(rule.minimum)
            if min(height, width) < smallest or height % rule.multiple or width % rule.multiple:
                fixed = [max(s - s % rule.multiple, smallest) for s in (height, width)]
                fix = fixed[0] if key == 'gt_size' else fixed
                raise OptionError(f'[{section}] {key} {dataset_opt.get(key)} (the training crop) must be a multiple of '
                                  f'{rule.multiple} and at least {smallest} for {rule.requirement}; use {key}: {fix}.')
            continue
        rule_for_phase = rule
        if metric is not None and not training:
            rule_for_phase = copy.copy(rule)
            rule_for_phase.extra = list(rule.extra) + [((metric[0], metric[0]), metric[1])]
        if training:  # whole training images: the rule's multiple and minimum (LMAR's working sizes are validation's)
            rule_for_phase = ImageSizeRule(rule.multiple, rule.minimum, rule.requirement, rule.can_pad)
        bad, cropped = [], []
        for path, size in getattr(dataset, 'image_sizes', ()):
            problem = rule_for_phase.problem(size, policy)
            if problem:
                bad.append((path, problem))
            elif rule_for_phase.notice(size, policy):
                cropped.append(f'{osp.basename(path)} {rule_for_phase.notice(size, policy)}')
        if bad:
            more = f'; and {len(bad) - 1} more: ' + ', '.join(osp.basename(b[0]) for b in bad[1:9]) if bad[1:] else ''
            raise OptionError(f'[{section}] {len(bad)} image(s) the model cannot use: {bad[0][0]}: {bad[0][1]}{more}. '
                              'Remove, replace or resize them.')
        if cropped:
            how = ('padded at the bottom/right to multiples of {m} for {r}, results cropped back (size_policy: pad)'
                   if policy == 'pad' else 'cropped at the bottom/right to multiples of {m} for {r} (size_policy: '
                   'crop; refuse stops instead)').format(m=rule.multiple, r=rule.requirement)
            notices.append(f'{section}: {len(cropped)} image(s) {how}: '
                           + ', '.join(cropped[:8]) + (f' and {len(cropped) - 8} more' if len(cropped) > 8 else ''))
    PENDING_NOTICES[:] = notices
