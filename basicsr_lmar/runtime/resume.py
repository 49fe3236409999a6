"""Exact resume for BasicSR's training loop.

basicsr 1.4.2 resumes a run by reloading networks, optimizers and schedulers, then starts the
interrupted epoch *from its beginning* and with fresh random number generators, so a resumed run sees
other samples and other random draws than an uninterrupted one. Three pieces make it exact:

1. the training state also stores the RNG states (``random``, numpy, torch CPU and CUDA; written by
   the plugin's models with :func:`capture_rng_state`);
2. :class:`ResumableEnlargedSampler` skips, once, the samples of the interrupted epoch that were
   already consumed (indices only: no data is loaded or augmented twice) and restores those RNG states;
3. :func:`load_resume_state` loads on CPU when there is no GPU (basicsr calls
   ``torch.cuda.current_device()`` unconditionally), finds ``auto_resume`` states under the run's
   root path rather than the current directory, and keeps the original checkpoint paths of frozen
   networks (basicsr redirects all of them to the run's own checkpoints).

Exactness holds for datasets whose sample ``i`` depends only on ``i`` and the seed (such as
``SkimagePhotoDataset``) and for any dataset with ``num_worker_per_gpu: 0``; with several workers and a
dataset that draws from the global RNG, which worker draws which batch changes after the skip.
"""
import os.path as osp
import random

import numpy as np
import torch

from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils import scandir
from basicsr.utils.misc import check_resume


def capture_rng_state():
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


class ResumableEnlargedSampler(EnlargedSampler):
    """basicsr's ``EnlargedSampler`` that can resume inside an epoch.

    :meth:`resume_once` makes the next epoch skip its first ``n`` indices and restore the RNG states
    saved with the checkpoint. The restore happens here, when the data loader first asks for indices:
    after the loader drew its own base seed for the epoch (as the uninterrupted run did before the
    checkpoint) and before any sample is loaded, which is the one point where the two runs' generators
    can be made to coincide.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._skip_next, self._rng_state = 0, None

    def resume_once(self, num_indices, rng_state=None):
        self._skip_next, self._rng_state = int(num_indices), rng_state

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self._skip_next = self._skip_next, 0
        if self._rng_state is not None:
            restore_rng_state(self._rng_state)
            self._rng_state = None
        return iter(indices[skip:])


def load_resume_state(opt):
    """basicsr's ``load_resume_state``, CPU-capable, and recording what the sampler must skip."""
    resume_state_path = None
    if opt['auto_resume']:
        state_dir = osp.join(opt.get('root_path', '.'), 'experiments', opt['name'], 'training_states')
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
    # Training states hold RNG states (numpy arrays, tuples) besides tensors: they are written by the
    # run itself, so the full unpickler is used, as basicsr did before torch made weights_only the default.
    resume_state = torch.load(resume_state_path, map_location=map_location, weights_only=False)
    # basicsr's check_resume points every `pretrain_network_*` at this run's own checkpoints; frozen
    # networks (LMAR's enhancer) are never saved by the run, so they keep their original path.
    opt['_pretrain_paths_before_resume'] = {k: v for k, v in opt['path'].items() if k.startswith('pretrain_network')}
    check_resume(opt, resume_state['iter'])
    opt['_resume_position'] = {'iter': resume_state['iter'], 'epoch': resume_state['epoch'],
                               'rng': resume_state.get('rng')}
    return resume_state


def skip_consumed_samples(opt, train_loader, train_sampler):
    """After a resume, makes the sampler skip what the interrupted epoch already consumed."""
    position = opt.get('_resume_position')
    if position is None or train_sampler is None or not hasattr(train_sampler, 'resume_once'):
        return
    iters_per_epoch = len(train_loader)
    # basicsr's loader drops the last incomplete batch, so every epoch has len(train_loader) iterations
    # and a checkpoint at iteration k of epoch e has consumed k - e * len(train_loader) of them (1..len;
    # a fully consumed epoch is left empty and the loop moves on to the next).
    consumed_batches = position['iter'] - position['epoch'] * iters_per_epoch
    batch_size = opt['datasets']['train']['batch_size_per_gpu']
    train_sampler.resume_once(max(consumed_batches, 0) * batch_size, position.get('rng'))
