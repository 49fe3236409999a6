"""Running the folder tools of scripts/ in tests: in-process through their real entry, or as a process."""
import importlib.util
import logging
import os
import subprocess
import sys

import pytest

from basicsr_lmar.cli.errors import DEBUG_ENV_VAR, EXIT_USER_ERROR, run_main
from tests.conftest import REPO_ROOT


def load_script(name, folder=REPO_ROOT / 'scripts'):
    spec = importlib.util.spec_from_file_location(name, folder / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name):
    """A module of scripts/benchmarks/, whose scripts import their siblings (heldout, gpu_timing) by name."""
    folder = REPO_ROOT / 'scripts' / 'benchmarks'
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return load_script(name, folder)


def run_stock_training(option_file, root, monkeypatch):
    """Trains through basicsr's own ``train_pipeline`` (the stock route, in-process) and returns its log.

    basicsr configures its logger once per process (maybe already, without a level, by an earlier test),
    so the log is read from the logger directly at INFO."""
    from basicsr.train import train_pipeline

    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(option_file)])
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger('basicsr')
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        train_pipeline(str(root))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return '\n'.join(messages)


def refused(module, argv, capsys):
    """Runs ``module.main`` as its ``__main__`` does and returns stderr; asserts exit code 2 and one message."""
    os.environ.pop(DEBUG_ENV_VAR, None)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_main(module.main, argv, prog=f'{module.__name__}.py')
    err = capsys.readouterr().err
    assert info.value.code == EXIT_USER_ERROR, err
    message = err[err.index(f'{module.__name__}.py: error: '):]
    assert 'Traceback' not in err and message.endswith('\n')
    return message


def forbid(monkeypatch, cls, method):
    """Makes ``cls.method`` fail the test: no compute may be spent before a bad input is reported."""
    def called(*args, **kwargs):
        raise AssertionError(f'{cls.__name__}.{method} ran before the bad input was reported')
    monkeypatch.setattr(cls, method, called)


def run_script(name, *args, env=None):
    """``python scripts/<name>.py args`` in a fresh process (one thread), as a user runs it."""
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1', **(env or {}))
    if not env or DEBUG_ENV_VAR not in env:
        environment.pop(DEBUG_ENV_VAR, None)
    return subprocess.run([sys.executable, str(REPO_ROOT / 'scripts' / f'{name}.py'), *map(str, args)],
                          env=environment, capture_output=True, text=True)
