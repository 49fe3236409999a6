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
"""
import functools
import math
import os
import os.path as osp
import pickle
import random
import re

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils import scandir
from basicsr.utils.misc import check_resume
from basicsr.utils.registry import MODEL_REGISTRY


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
    try:
        resume_state = torch.load(resume_state_path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise RuntimeError(f'path.resume_state: {resume_state_path} holds Python objects beyond tensors and '
                           f'containers ({str(error).splitlines()[0]}); earlier basicsr-lmar versions stored numpy '
                           'arrays in training states: resume with the version that wrote it, or start from its '
                           'checkpoint (path.pretrain_network_*).') from None
    frozen = [section for section in frozen_network_sections(opt) if section not in
              (opt['path'].get('ignore_resume_networks') or [])]
    if frozen:  # never saved by the run: their checkpoints stay what the options say
        opt['path']['ignore_resume_networks'] = list(opt['path'].get('ignore_resume_networks') or []) + frozen
    check_resume(opt, resume_state['iter'])
    return resume_state


def repaired_stock_resume(basicsr_load_resume_state):
    """``load_resume_state`` of basicsr's own ``train.py`` (``python -m basicsr.train``), repaired by
    :mod:`basicsr_lmar.runtime.compat`: unchanged where there is a GPU; without one (where basicsr's
    crashes in ``torch.cuda.current_device()``) :func:`load_resume_state`, looking for ``auto_resume``
    states where basicsr does (under the working directory)."""

    @functools.wraps(basicsr_load_resume_state)
    def load(opt):
        if torch.cuda.is_available():
            return basicsr_load_resume_state(opt)
        return load_resume_state(opt, state_root='.')

    return load


def skip_consumed_samples(resume_state, train_loader, train_sampler):
    """After a resume, makes the sampler skip what the interrupted epoch already consumed."""
    if resume_state is None or not hasattr(train_sampler, 'resume_once'):
        return
    # Every epoch has len(train_loader) iterations (whole batches: fill_last_batch), so a checkpoint at
    # iteration k of epoch e has consumed k - e * len(train_loader) of them (1..len; a fully consumed epoch
    # is left empty and the loop moves on to the next).
    consumed_batches = resume_state['iter'] - resume_state['epoch'] * len(train_loader)
    train_sampler.resume_once(max(consumed_batches, 0) * train_loader.batch_size, resume_state.get('rng'))


#: what :func:`basicsr_lmar.checkpoints.state_dicts.atomic_torch_save` writes before renaming: ``<file>.tmp<pid>``
_PARTIAL_SAVE = re.compile(r'\.tmp\d+$')


def remove_partial_saves(folder):
    """Removes the temporary files that interrupted saves left in ``folder``; returns their names."""
    removed = []
    for name in sorted(os.listdir(folder)):
        if _PARTIAL_SAVE.search(name) and osp.isfile(osp.join(folder, name)):
            os.remove(osp.join(folder, name))
            removed.append(name)
    return removed
