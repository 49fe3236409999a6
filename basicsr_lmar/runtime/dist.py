"""Process-group set-up that works with NCCL on GPUs and gloo on CPUs.

basicsr's ``init_dist`` assumes CUDA (it calls ``torch.cuda.set_device(rank % num_gpus)``, a division
by zero on a CPU machine) and NCCL. :func:`init_dist` keeps its interface (``launcher``, and for slurm
``port``) and chooses the backend: ``dist_params.backend`` from the options when given, otherwise NCCL
when CUDA is available and gloo when it is not. The GPU of a process is its *local* rank (correct on
multi-node jobs too).
"""
import os
import subprocess

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

BACKENDS = ('nccl', 'gloo')


def default_backend():
    return 'nccl' if torch.cuda.is_available() and dist.is_nccl_available() else 'gloo'


def _slurm_environment(port=None):
    """Derives torch.distributed's env:// variables from slurm's (as basicsr does)."""
    proc_id = int(os.environ['SLURM_PROCID'])
    node_list = os.environ['SLURM_NODELIST']
    master = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ.setdefault('MASTER_ADDR', master)
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', str(proc_id % max(torch.cuda.device_count(), 1)))


def init_dist(launcher, backend=None, port=None, **kwargs):
    """Initialises the default process group for ``launcher`` in ``{'pytorch', 'slurm'}``."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"dist_params.backend must be one of {BACKENDS}; got {backend!r}")
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    if launcher == 'slurm':
        _slurm_environment(port)
    elif launcher != 'pytorch':
        raise ValueError(f'--launcher must be none, pytorch or slurm; got {launcher!r}')
    backend = backend or default_backend()
    if backend == 'nccl':
        if not torch.cuda.is_available():
            raise RuntimeError('dist_params.backend is nccl but CUDA is not available; use gloo on CPU machines.')
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)


def destroy_process_group():
    """Ends the process group of a run that finished: a gloo group left to the interpreter's teardown can
    abort a rank that ends before the others (torch 2.1: "terminate called without an active exception")."""
    if is_distributed():
        dist.destroy_process_group()


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def all_ranks_agree(flag: bool, device=None) -> bool:
    """True only if ``flag`` is true on every rank (a no-op when not distributed).

    Used before a collective (DDP's gradient all-reduce runs inside ``backward``): either every rank
    steps or none does, otherwise the ranks would wait on each other forever.
    """
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0.5)
