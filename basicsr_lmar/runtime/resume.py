"""Exact resume and exact iteration counts for BasicSR's training loop.

basicsr 1.4.2 resumes a run by reloading networks, optimizers and schedulers, then starts the
interrupted epoch *from its beginning* and with fresh random number generators, so a resumed run sees
other samples and other random draws than an uninterrupted one. Three pieces make it exact:

1. the training state also stores the RNG states (``random``, numpy, torch CPU and CUDA; written by
   the plugin's models with :func:`capture_rng_state`, in a form ``torch.load(weights_only=True)`` reads);
2. :class:`ResumableEnlargedSampler` skips, once, the samples of the interrupted epoch that were
   already consumed (indices only: no data is loaded or augmented twice) and restores those RNG states;
3. :func:`load_resume_state` loads on CPU when there is no GPU (basicsr calls
   ``torch.cuda.current_device()`` unconditionally), finds ``auto_resume`` states under the run's
   root path rather than the current directory, and keeps the checkpoint paths of the model's frozen
   networks (basicsr points every ``pretrain_network_*`` at the run's own checkpoints; it is told to
   leave them through its own ``path.ignore_resume_networks``).

basicsr's loop also stops short of ``train.total_iter`` when the samples of an epoch do not fill its
last batch (the loader drops it, but the loop counts it): :meth:`ResumableEnlargedSampler.fill_last_batch`
completes that batch with samples from the start of the epoch, as torch's ``DistributedSampler`` pads,
so every epoch has the number of iterations basicsr logs and the run ends at ``total_iter``.

Exactness holds for datasets whose sample ``i`` depends only on ``i`` and the seed (such as
``SkimagePhotoDataset``) and for any dataset with ``num_worker_per_gpu: 0``; with several workers and a
dataset that draws from the global RNG, which worker draws which batch changes after the skip.

Format. A training state of the plugin's models holds only tensors and plain containers, so that
``torch.load(weights_only=True)`` reads it on every supported torch (2.1 on): :func:`plain_state` turns
the ``collections.Counter`` of the multi-step schedulers' ``milestones`` (torch's ``MultiStepLR``,
basicsr's ``MultiStepRestartLR``), which the weights-only loader of older torch releases (2.1 among
them) refuses, into a dict; :func:`load_resume_state` turns it back. The state also records the model that
wrote it (:func:`model_record`: ``model_type`` and a digest of each option section that defines the model,
``scale`` and every ``network_*``) and the option keys of its optimizers (``optimizer_keys``, e.g.
``['optim_g', 'optim_sr']``: :func:`optimizer_keys`). Resuming refuses by name, before any folder is created,
a state of another ``model_type`` and one that holds other optimizers than the run builds (basicsr would
stop on a bare assertion; states without the keys are compared by their number of optimizers):
:func:`check_resume_state_model`, in the preflight; :func:`load_resume_state`, for ``--auto_resume``. A
state written with other network options is resumed, with a warning that names the changed sections
(:func:`warn_if_model_options_changed`).
"""
import collections
import copy
import functools
import hashlib
import json
import math
import os
import os.path as osp
import pickle
import random
import re
import zipfile

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils import scandir
from basicsr.utils.misc import check_resume
from basicsr.utils.registry import MODEL_REGISTRY

from basicsr_lmar.atomic_write import PARTIAL_FILE
from basicsr_lmar.checkpoints.state_dicts import load_weights_only
from basicsr_lmar.cli.errors import run_main
from basicsr_lmar.errors import UserError


def capture_rng_state():
    """The RNG states, as tensors and plain containers (numpy's key becomes an int64 tensor)."""
    kind, key, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {'python': random.getstate(), 'torch': torch.get_rng_state(),
             'numpy': (kind, torch.from_numpy(key.astype(np.int64)), int(position), int(has_gauss),
                       float(cached_gaussian))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    random.setstate(state['python'])
    kind, key, position, has_gauss, cached_gaussian = state['numpy']
    np.random.set_state((kind, np.asarray(key, dtype=np.int64).astype(np.uint32), position, has_gauss,
                         cached_gaussian))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


class ResumableEnlargedSampler(EnlargedSampler):
    """basicsr's ``EnlargedSampler`` that can resume inside an epoch and fills the last batch.

    :meth:`resume_once` makes the next epoch skip its first ``n`` indices and restore the RNG states
    saved with the checkpoint. The restore happens here, when the data loader first asks for indices:
    after the loader drew its own base seed for the epoch (as the uninterrupted run did before the
    checkpoint) and before any sample is loaded, which is the one point where the two runs' generators
    can be made to coincide.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._skip_next, self._rng_state = 0, None
        self.batch_size = 1

    def fill_last_batch(self, batch_size):
        """Every epoch yields a whole number of batches of ``batch_size``: the last one is completed with
        the epoch's first indices (the loader drops an incomplete batch that basicsr's loop counts)."""
        self.batch_size = int(batch_size)

    def __len__(self):
        return math.ceil(self.num_samples / self.batch_size) * self.batch_size

    def resume_once(self, num_indices, rng_state=None):
        self._skip_next, self._rng_state = int(num_indices), rng_state

    def __iter__(self):
        indices = list(super().__iter__())
        while len(indices) < len(self):
            indices += indices[:len(self) - len(indices)]
        skip, self._skip_next = self._skip_next, 0
        if self._rng_state is not None:
            restore_rng_state(self._rng_state)
            self._rng_state = None
        return iter(indices[skip:])


class ResumeStateError(UserError):
    """``path.resume_state`` (or the state ``--auto_resume`` found) cannot be resumed by this option file."""


def plain_state(state):
    """``state`` with every dict subclass but ``OrderedDict`` as a dict, recursively: the ``collections.Counter``
    of the multi-step schedulers' ``milestones`` too, which the weights-only loader of older torch refuses."""
    if isinstance(state, dict):
        items = ((key, plain_state(value)) for key, value in state.items())
        return collections.OrderedDict(items) if type(state) is collections.OrderedDict else dict(items)
    if type(state) in (list, tuple):
        return type(state)(plain_state(value) for value in state)
    return state


def _restore_milestones(scheduler_state):
    if isinstance(scheduler_state, dict) and isinstance(scheduler_state.get('milestones'), dict):
        scheduler_state['milestones'] = collections.Counter(scheduler_state['milestones'])
    return scheduler_state


def _model_sections(opt):
    return {key: opt[key] for key in opt if isinstance(key, str) and (key == 'scale' or key.startswith('network_'))}


def _digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_record(opt):
    """What a training state records of the model that wrote it: ``model_type`` and a digest of each option
    section that defines the model (``scale``, every ``network_*``)."""
    return {'model_type': str(opt.get('model_type')),
            'option_digests': {key: _digest(value) for key, value in sorted(_model_sections(opt).items())}}


def read_training_state(path, map_location='cpu', mmap=False):
    """The training state in ``path``, read with ``weights_only=True`` (``mmap``: tensors mapped, not read);
    a :class:`ResumeStateError` naming the file when it is not one."""
    if not zipfile.is_zipfile(path):
        raise ResumeStateError(f'path.resume_state: {path} is not a file that torch.save writes; give the .state file '
                               'of the run to resume (experiments/<name>/training_states/<iter>.state).')
    try:
        return load_weights_only(path, map_location=map_location, mmap=mmap)
    except pickle.UnpicklingError as error:
        found = re.search(r'Unsupported (?:class|global)\W+(?:GLOBAL )?([\w.]+)', str(error))
        cause = found.group(1) if found else 'see torch.load(weights_only=True)'
        if 'collections.Counter' in str(error):
            hint = (f'torch {torch.__version__} does not read it with weights_only=True (newer releases do); the '
                    "multi-step schedulers of basicsr's own models save one (the plugin's models a dict): resume "
                    'it with a newer torch')
        else:
            hint = ('earlier basicsr-lmar versions stored numpy arrays in training states: resume with the version '
                    'that wrote it, or start from its checkpoint (path.pretrain_network_*)')
        raise ResumeStateError(f'path.resume_state: {path} holds Python objects beyond tensors and containers '
                               f'({cause}); {hint}.') from None


def refuse_other_model(record, opt, path):
    """Raises :class:`ResumeStateError` when ``record`` (a state's :func:`model_record`; None for states that
    carry none, such as basicsr's own) names another ``model_type`` than ``opt``."""
    if not isinstance(record, dict) or record.get('model_type') == str(opt.get('model_type')):
        return
    how = ('--auto_resume took the latest state of this run name; give the run another name, or point '
           'path.resume_state at a state of a {0} run') if opt.get('auto_resume') else \
        'point path.resume_state at a state of a {0} run, or set it to ~ to start afresh'
    raise ResumeStateError(f'path.resume_state: {path} was written by {record.get("model_type")}, this option file '
                           f'trains {opt.get("model_type")}; ' + how.format(opt.get('model_type')) + '.')


def optimizer_keys(model_cls, options):
    """The ``train.optim_*`` keys of the optimizers that a training run of ``model_cls`` with the validated
    ``options`` builds, in the order of its training states (a plugin model's ``optimizer_labels``)."""
    return [f'optim_{label}' for label in model_cls.optimizer_labels(options)]


def run_optimizer_keys(opt):
    """:func:`optimizer_keys` of a training run of ``opt`` (basicsr's parsed options, which passed the
    preflight), or None for another project's model (it does not say)."""
    model_type = opt.get('model_type')
    model_cls = MODEL_REGISTRY.get(model_type) if model_type in MODEL_REGISTRY else None
    if not hasattr(model_cls, 'optimizer_labels'):
        return None
    return optimizer_keys(model_cls, model_cls.validate_options(copy.deepcopy(opt)))


def _optimizers(count, keys):
    return f'{count} optimizer{"s" if count != 1 else ""}' + (f' ({", ".join(f"train.{k}" for k in keys)})'
                                                             if keys else '')


def refuse_other_optimizers(state, keys, path, auto_resume=False):
    """Raises :class:`ResumeStateError` when the state holds other optimizers than a run that builds ``keys``
    (its ``train.optim_*``, in order; None: unknown, nothing checked): basicsr resumes each optimizer from the
    saved one at its place and stops on a bare assertion when their numbers differ. The state's own keys
    (``optimizer_keys``) are compared where it records them, else the number of its optimizers."""
    saved, saved_keys = state.get('optimizers'), state.get('optimizer_keys')
    if keys is None or not isinstance(saved, list) or \
            (len(saved) == len(keys) and (saved_keys is None or list(saved_keys) == list(keys))):
        return
    differ = sorted(set(saved_keys) ^ set(keys)) if saved_keys else []
    which = f' ({", ".join(f"train.{k}" for k in differ)} set in one run only)' if differ else ''
    start_afresh = ('give the run another name to start afresh' if auto_resume else
                    'set path.resume_state to ~ to start afresh (path.pretrain_network_* can load its networks)')
    raise ResumeStateError(
        f'path.resume_state: {path} holds the state of {_optimizers(len(saved), saved_keys)}, this option file '
        f'trains with {_optimizers(len(keys), keys)}, and each optimizer resumes from its own saved state. Give '
        f'the train section the options of the run that wrote it, so that it builds the same optimizers{which}, '
        f'or {start_afresh}.')


def refuse_incompatible_state(state, opt, path, keys=None):
    """Raises :class:`ResumeStateError` when the state was written by another ``model_type`` than ``opt``'s, or
    holds other optimizers than the run's ``keys`` (:func:`optimizer_keys`; None: not checked; a function of
    ``opt`` that gives them, called once the model matched: :func:`run_optimizer_keys`)."""
    refuse_other_model(state.get('model'), opt, path)
    refuse_other_optimizers(state, keys(opt) if callable(keys) else keys, path, bool(opt.get('auto_resume')))


def check_resume_state_model(opt, keys=None):
    """The preflight's check of ``path.resume_state`` (:func:`refuse_incompatible_state`), before anything is
    built (the file is mapped, not read whole)."""
    path = (opt.get('path') or {}).get('resume_state')
    if path is None or not osp.isfile(osp.expanduser(str(path))):
        return
    state = read_training_state(osp.expanduser(str(path)), mmap=True)
    if isinstance(state, dict):
        refuse_incompatible_state(state, opt, path, keys)


def changed_model_sections(record, opt):
    """The option sections of ``opt`` whose digest differs from the state's ``record`` (added or removed
    sections included), sorted; empty without a record."""
    if not isinstance(record, dict) or not isinstance(record.get('option_digests'), dict):
        return []
    saved, now = record['option_digests'], model_record(opt)['option_digests']
    return sorted(key for key in set(saved) | set(now) if saved.get(key) != now.get(key))


def warn_if_model_options_changed(opt, resume_state, logger):
    """Logs a warning when the state was written with other model options than ``opt`` has. (A network whose
    shape changed never gets here: loading the run's own checkpoint into it stops with the mismatch report.)"""
    changed = changed_model_sections(resume_state.get('model'), opt)
    if changed:
        logger.warning(f'path.resume_state: {opt["path"].get("resume_state")} was written with other options in '
                       f'{", ".join(changed)} than this option file has; the run resumes with this file\'s options.')


def frozen_network_sections(opt):
    """The ``network_*`` sections that ``opt['model_type']`` declares frozen (none for other models)."""
    model_type = opt.get('model_type')
    sections = getattr(MODEL_REGISTRY.get(model_type), 'network_sections', None) if model_type in MODEL_REGISTRY \
        else None
    return [section for section, network in (sections or {}).items() if getattr(network, 'frozen', False)]


def load_resume_state(opt, state_root=None):
    """basicsr's ``load_resume_state``, CPU-capable, keeping the frozen networks' checkpoints.

    ``auto_resume`` takes the latest state under ``state_root``/experiments (default: the run's
    ``root_path``, where it writes; basicsr looks under the working directory)."""
    resume_state_path = None
    if opt['auto_resume']:
        root = opt.get('root_path', '.') if state_root is None else state_root
        state_dir = osp.join(root, 'experiments', opt['name'], 'training_states')
        if osp.isdir(state_dir):
            states = [float(v.split('.state')[0]) for v in scandir(state_dir, suffix='state', recursive=False)]
            if states:
                resume_state_path = osp.join(state_dir, f'{max(states):.0f}.state')
                opt['path']['resume_state'] = resume_state_path
    elif opt['path'].get('resume_state'):
        resume_state_path = opt['path']['resume_state']
    if resume_state_path is None:
        return None
    if not osp.isfile(resume_state_path):
        raise FileNotFoundError(f'path.resume_state: {resume_state_path} does not exist.')
    if torch.cuda.is_available() and opt.get('num_gpu', 0) != 0:
        device_id = torch.cuda.current_device()
        map_location = lambda storage, loc: storage.cuda(device_id)  # noqa: E731
    else:
        map_location = 'cpu'
    resume_state = read_training_state(resume_state_path, map_location)
    # the optimizers of a state that --auto_resume found (the preflight checked a path.resume_state)
    refuse_incompatible_state(resume_state, opt, resume_state_path, run_optimizer_keys if opt['auto_resume'] else None)
    for scheduler_state in resume_state.get('schedulers', []):
        _restore_milestones(scheduler_state)
    frozen = [section for section in frozen_network_sections(opt) if section not in
              (opt['path'].get('ignore_resume_networks') or [])]
    if frozen:  # never saved by the run: their checkpoints stay what the options say
        opt['path']['ignore_resume_networks'] = list(opt['path'].get('ignore_resume_networks') or []) + frozen
    check_resume(opt, resume_state['iter'])
    return resume_state


def repaired_stock_resume(basicsr_load_resume_state):
    """``load_resume_state`` of basicsr's own ``train.py`` (``python -m basicsr.train``), repaired by
    :mod:`basicsr_lmar.runtime.compat`: basicsr's where there is a GPU; without one (where basicsr's
    crashes in ``torch.cuda.current_device()``) :func:`load_resume_state`, looking for ``auto_resume``
    states where basicsr does (under the working directory). Either way a state of another model is
    refused with one line (``basicsr.train: error: ...``, exit code 2) and the schedulers' milestones
    are restored (:func:`plain_state`)."""

    @functools.wraps(basicsr_load_resume_state)
    def load(opt):
        return run_main(lambda argv: _stock_load(basicsr_load_resume_state, opt), argv=[], prog='basicsr.train')

    return load


def _stock_load(basicsr_load_resume_state, opt):
    if not torch.cuda.is_available():
        return load_resume_state(opt, state_root='.')
    resume_state = basicsr_load_resume_state(opt)
    if resume_state is not None:
        refuse_incompatible_state(resume_state, opt, opt['path'].get('resume_state'),
                                  run_optimizer_keys if opt['auto_resume'] else None)
        for scheduler_state in resume_state.get('schedulers', []):
            _restore_milestones(scheduler_state)
    return resume_state


def skip_consumed_samples(resume_state, train_loader, train_sampler):
    """After a resume, makes the sampler skip what the interrupted epoch already consumed."""
    if resume_state is None or not hasattr(train_sampler, 'resume_once'):
        return
    # Every epoch has len(train_loader) iterations (whole batches: fill_last_batch), so a checkpoint at
    # iteration k of epoch e has consumed k - e * len(train_loader) of them (1..len; a fully consumed epoch
    # is left empty and the loop moves on to the next).
    consumed_batches = resume_state['iter'] - resume_state['epoch'] * len(train_loader)
    train_sampler.resume_once(max(consumed_batches, 0) * train_loader.batch_size, resume_state.get('rng'))


def remove_partial_saves(folder):
    """Removes the temporary files that interrupted saves (``<file>.tmp<pid>``) left in ``folder``; returns their
    names."""
    removed = []
    for name in sorted(os.listdir(folder)):
        if PARTIAL_FILE.search(name) and osp.isfile(osp.join(folder, name)):
            os.remove(osp.join(folder, name))
            removed.append(name)
    return removed
