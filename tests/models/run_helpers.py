"""Running the plugin's train entry in subprocesses (single process and torchrun) for model tests."""
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys

import torch
import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = pathlib.Path(sys.executable).parent / 'basicsr-lmar-train'  # root = the working directory


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def write_options(opt, folder, filename):
    path = pathlib.Path(folder) / filename
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


AUDIT_SITE = pathlib.Path(__file__).resolve().parent / 'write_audit'


def run_training(options_path, cwd, nproc=1, extra_args=(), timeout=600, entry=CONSOLE_SCRIPT, audit_writes=None):
    """Runs the console-script form of the entry (root = ``cwd``); torchrun with gloo when ``nproc`` > 1.

    ``audit_writes``: a folder that receives ``rank<R>.txt``, the writes under ``cwd`` of each torchrun
    rank (:mod:`tests.models.write_audit.sitecustomize`); read them with :func:`audited_writes`.
    """
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    if audit_writes is not None:
        pathlib.Path(audit_writes).mkdir(parents=True, exist_ok=True)
        env.update(BASICSR_LMAR_AUDIT_ROOT=str(cwd), BASICSR_LMAR_AUDIT_DIR=str(audit_writes),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(AUDIT_SITE), env.get('PYTHONPATH')])))
    entry = str(entry)
    if nproc > 1:
        command = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', '--master_addr=127.0.0.1',
                   f'--master_port={free_port()}', '--no-python', entry, '-opt', str(options_path),
                   '--launcher', 'pytorch', *extra_args]
    else:
        command = [entry, '-opt', str(options_path), *extra_args]
    returncode, output = _run_or_dump_stacks(command, cwd, env, timeout)
    assert returncode == 0, f'{" ".join(command)}\n{output[-6000:]}'
    return output


def _run_or_dump_stacks(command, cwd, env, timeout):
    """(return code, stdout + stderr) of ``command``; past ``timeout`` seconds every process of the run prints
    the Python stack of each of its threads (faulthandler, on SIGABRT) before it is killed, and the test fails
    with them: a hung rank shows where it waits."""
    env = dict(env, PYTHONFAULTHANDLER='1')
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            output = ''
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise AssertionError(f'{" ".join(command)} ran past {timeout} s; the stacks of its processes:\n'
                             f'{(output or "")[-12000:]}') from None


def audited_writes(folder, nproc):
    """{rank: [(event, path), ...]} recorded by a run with ``audit_writes=folder``."""
    writes = {}
    for rank in range(nproc):
        log = pathlib.Path(folder) / f'rank{rank}.txt'
        lines = log.read_text().splitlines() if log.is_file() else []
        writes[rank] = [tuple(line.split(' ', 1)) for line in lines]
    return writes


def logged_metrics(output):
    """The validation metric values basicsr's logger printed (``# psnr: 12.3456``), in order."""
    return [(name, float(value)) for name, value in re.findall(r'# (\w+): ([-+0-9.e]+)', output)]


def load_params(path, key='params'):
    return torch.load(path, map_location='cpu', weights_only=False)[key]


def logged_losses(output, iteration):
    """The loss fields that BasicSR's message logger printed for ``iteration`` (strings, as printed)."""
    for line in output.splitlines():
        if re.search(rf'iter:\s+{iteration},', line):
            return dict(re.findall(r'(\w+): ([-+0-9.e]+)\s', line.split(']')[-1] + ' '))
    raise AssertionError(f'no log line for iteration {iteration}')


def assert_state_dicts_close(a, b, rtol=0.0, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=lambda m, k=key: f'{k}: {m}')
