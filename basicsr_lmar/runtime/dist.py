"""Process-group set-up that works with NCCL on GPUs and gloo on CPUs.

basicsr's ``init_dist`` assumes CUDA (it calls ``torch.cuda.set_device(rank % num_gpus)``, a division
by zero on a CPU machine) and NCCL. :func:`init_dist` keeps its interface (``launcher``, and for slurm
``port``) and chooses the backend: ``dist_params.backend`` from the options when given, otherwise NCCL
when CUDA is available and gloo when it is not. The GPU of a process is its *local* rank (correct on
multi-node jobs too).

A launcher that cannot work here (``--launcher slurm`` in a process that slurm's ``srun`` did not start,
an unknown launcher or back-end, NCCL without CUDA) is a :class:`~basicsr_lmar.errors.UserError` naming
the flag or option and the fix, raised before basicsr creates any folder.
"""
import os
import shutil
import subprocess
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from basicsr_lmar.errors import UserError

BACKENDS = ('nccl', 'gloo')
#: what slurm's srun sets in each task and ``--launcher slurm`` reads
SLURM_VARIABLES = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')


def default_backend():
    return 'nccl' if torch.cuda.is_available() and dist.is_nccl_available() else 'gloo'


def check_slurm_environment():
    """Raises a :class:`UserError` when this process was not started by slurm (``--launcher slurm``)."""
    missing = [name for name in SLURM_VARIABLES if not os.environ.get(name)]
    if missing:
        raise UserError(f'--launcher slurm: {", ".join(missing)} {"is" if len(missing) == 1 else "are"} not set, so '
                        "this process was not started by slurm's srun. Start it with srun (docs/distributed.md), "
                        'or use torchrun with --launcher pytorch, or leave --launcher out for one process.')


def check_launcher(argv):
    """The checks of :func:`init_dist` that need no option file, on basicsr's command line ``argv``
    (``--launcher slurm`` outside slurm), for routes that reach basicsr's own ``init_dist``."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--launcher', default='none')
    args, _ = parser.parse_known_args(argv)
    if args.launcher == 'slurm':
        check_slurm_environment()


def _slurm_environment(port=None):
    """Derives torch.distributed's env:// variables from slurm's (as basicsr does)."""
    check_slurm_environment()
    proc_id = int(os.environ['SLURM_PROCID'])
    node_list = os.environ['SLURM_NODELIST']
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = _first_host(node_list)
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', str(proc_id % max(torch.cuda.device_count(), 1)))


def _first_host(node_list):
    """The first host of slurm's compressed node list (``scontrol show hostname``, as basicsr)."""
    if shutil.which('scontrol') is None:
        raise UserError(f'--launcher slurm: SLURM_NODELIST is {node_list!r} but slurm\'s scontrol is not on the PATH '
                        'to expand it; set MASTER_ADDR to the first node\'s address, or run where slurm is installed.')
    result = subprocess.run(['scontrol', 'show', 'hostname', node_list], capture_output=True, text=True)
    hosts = result.stdout.split()
    if result.returncode != 0 or not hosts:
        raise UserError(f'--launcher slurm: scontrol cannot expand SLURM_NODELIST {node_list!r} '
                        f'({result.stderr.strip() or "no host"}); set MASTER_ADDR to the first node\'s address.')
    return hosts[0]


def init_dist(launcher, backend=None, port=None, **kwargs):
    """Initialises the default process group for ``launcher`` in ``{'pytorch', 'slurm'}``."""
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"dist_params.backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if launcher == 'slurm':
        _slurm_environment(port)
    elif launcher != 'pytorch':
        raise UserError(f'--launcher must be none, pytorch or slurm; got {launcher!r}')
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    backend = backend or default_backend()
    if backend == 'nccl':
        if not torch.cuda.is_available():
            raise UserError('dist_params.backend is nccl but CUDA is not available; use gloo on CPU machines.')
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)


#: how long :func:`destroy_process_group` gives up the GIL before it destroys a gloo group
GLOO_WORKERS_GIL_S = 0.2


def destroy_process_group():
    """Ends the process group of a run that finished: a gloo group left to the interpreter's teardown can
    abort a rank that ends before the others (torch 2.1: "terminate called without an active exception")."""
    if not is_distributed():
        return
    if dist.get_backend() == 'gloo':
        # older torch (2.1) joins gloo's worker threads holding the GIL, and a worker that still frees the
        # last collective's tensors needs it: a rank that ends right after a collective would wait forever
        time.sleep(GLOO_WORKERS_GIL_S)
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
