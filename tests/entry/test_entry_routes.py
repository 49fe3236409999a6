"""Every documented way to start training sees the plugin (subprocesses, CPU, 2 iterations each)."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO_ROOT, linked_package

TINY_OPTIONS = REPO_ROOT / 'tests' / 'data_files' / 'train_edsr_tiny.yml'
BIN = pathlib.Path(sys.executable).parent


def _options_file(tmp_path, name):
    opt = yaml.safe_load(TINY_OPTIONS.read_text())
    opt['name'] = f'debug_route_{name}'
    path = tmp_path / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt))
    return path, opt['name']


def _linked(tmp_path, package):
    return linked_package(tmp_path / 'linked', package)


def _python_path(*folders):
    return {'PYTHONPATH': os.pathsep.join([str(f) for f in folders] + [os.environ.get('PYTHONPATH', '')]).rstrip(
        os.pathsep)}


def _run(args, cwd, env_extra=None):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    env.pop('BASICSR_LMAR_AUTOLOAD', None)
    env.update(env_extra or {})
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _assert_trained(result, experiments_root):
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert 'Dataset [SkimagePhotoDataset]' in output, output[-3000:]
    assert 'iter:       2' in output
    assert (experiments_root / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.slow
def test_plugin_train_script(tmp_path):
    """``python basicsr_lmar/train.py``: experiments go under the folder above the package (the repository
    of a checkout), as in BasicSR; the package is reached through a link in the test's folder."""
    options, name = _options_file(tmp_path, 'plugin_script')
    checkout = _linked(tmp_path, REPO_ROOT / 'basicsr_lmar')
    result = _run([sys.executable, str(checkout / 'basicsr_lmar' / 'train.py'), '-opt', str(options)], tmp_path)
    _assert_trained(result, checkout / 'experiments' / name)


@pytest.mark.slow
def test_console_script(tmp_path):
    options, name = _options_file(tmp_path, 'console')
    result = _run([str(BIN / 'basicsr-lmar-train'), '-opt', str(options)], tmp_path)
    _assert_trained(result, tmp_path / 'experiments' / name)


@pytest.mark.slow
def test_stock_basicsr_module_sees_plugin(tmp_path):
    """``python -m basicsr.train`` of the pip-installed basicsr, unmodified. Its ``__main__`` block uses the
    package's parent folder as root (site-packages for a user); here the package is reached through a link
    in the test's folder, so that experiments/ lands there."""
    import basicsr
    options, name = _options_file(tmp_path, 'module')
    site = _linked(tmp_path, pathlib.Path(basicsr.__file__).parent)
    result = _run([sys.executable, '-m', 'basicsr.train', '-opt', str(options)], tmp_path, _python_path(site))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert 'Dataset [SkimagePhotoDataset]' in output
    assert (site / 'experiments' / name / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.slow
def test_stock_basicsr_checkout_train_file(tmp_path):
    """``python basicsr/train.py`` from a BasicSR checkout: the stock file, run as a script."""
    import basicsr

    checkout = tmp_path / 'BasicSR'
    (checkout / 'basicsr').mkdir(parents=True)
    shutil.copy(pathlib.Path(basicsr.__file__).parent / 'train.py', checkout / 'basicsr' / 'train.py')
    options, name = _options_file(tmp_path, 'checkout')
    result = _run([sys.executable, 'basicsr/train.py', '-opt', str(options)], checkout)
    _assert_trained(result, checkout / 'experiments' / name)


def test_autoload_can_be_switched_off(tmp_path):
    code = 'import sys, basicsr_lmar, basicsr; print("ok")'
    result = _run([sys.executable, '-c', code], tmp_path, {'BASICSR_LMAR_AUTOLOAD': '0'})
    assert result.returncode == 0, result.stderr
    # With the hook off, stock basicsr does not get the plugin: its registry lacks the dataset.
    code = ('import _basicsr_lmar_autoload, sys\n'
            'assert not any(isinstance(f, _basicsr_lmar_autoload.BasicsrImportHook) for f in sys.meta_path)\n'
            'print("hook absent")')
    result = _run([sys.executable, '-c', code], tmp_path, {'BASICSR_LMAR_AUTOLOAD': '0'})
    assert 'hook absent' in result.stdout, result.stderr


def test_autoload_registers_on_basicsr_import(tmp_path):
    code = ('import basicsr\n'
            'from basicsr.utils.registry import DATASET_REGISTRY\n'
            'print("SkimagePhotoDataset" in DATASET_REGISTRY)')
    result = _run([sys.executable, '-c', code], tmp_path)
    assert result.stdout.strip().splitlines()[-1] == 'True', result.stderr[-2000:]


def test_python_without_basicsr_does_not_load_torch(tmp_path):
    """The .pth hook runs at every interpreter start: it must not import torch or the plugin."""
    code = 'import sys; print("torch" in sys.modules, "basicsr_lmar" in sys.modules)'
    result = _run([sys.executable, '-c', code], tmp_path)
    assert result.stdout.split() == ['False', 'False'], result.stderr
    code = 'import sys, _basicsr_lmar_autoload as a; print(any(isinstance(f, a.BasicsrImportHook) for f in sys.meta_path))'
    result = _run([sys.executable, '-c', code], tmp_path)
    assert result.stdout.strip() == 'True', 'the autoload .pth is not installed in this environment'


@pytest.mark.slow
def test_wheel_ships_the_autoload_pth_in_its_record(tmp_path):
    """pip uninstall removes exactly what RECORD lists: the .pth must be there, at the wheel root."""
    import zipfile

    from tests.test_packaging import copy_of_the_clone
    source = copy_of_the_clone(tmp_path / 'clone')  # pip writes build/ and *.egg-info beside the sources
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                             str(source), '-w', str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel, = tmp_path.glob('basicsr_lmar-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read(next(n for n in names if n.endswith('.dist-info/RECORD'))).decode()
        pth = archive.read('basicsr_lmar-autoload.pth').decode()
    assert 'basicsr_lmar-autoload.pth' in names and '_basicsr_lmar_autoload.py' in names
    assert 'basicsr_lmar-autoload.pth,' in record
    assert pth.strip() == 'import _basicsr_lmar_autoload; _basicsr_lmar_autoload.install()'


@pytest.mark.slow
def test_stock_basicsr_module_resumes_on_cpu_and_names_a_missed_total_iter(tmp_path):
    """``python -m basicsr.train`` (no plugin entry): basicsr's loop stops short of total_iter when the
    samples do not fill the last batch (5 samples, batch 2, total_iter 30: 22), which the model names;
    resuming from its training state works on CPU (basicsr's own load_resume_state would call
    torch.cuda.current_device() and crash)."""
    import re

    import basicsr
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_irn_tiny.yml').read_text())
    opt.pop('val')
    opt['datasets'] = {'train': dict(opt['datasets']['train'], num_samples=5, batch_size_per_gpu=2)}
    opt['name'] = f'stock_resume_{os.getpid()}'
    opt['train']['total_iter'] = 30
    opt['logger'].update(print_freq=1, save_checkpoint_freq=10)
    options = tmp_path / 'irn.yml'
    options.write_text(yaml.safe_dump(opt))
    site = _linked(tmp_path, pathlib.Path(basicsr.__file__).parent)  # basicsr's root: the folder above the package
    result = _run([sys.executable, '-m', 'basicsr.train', '-opt', str(options)], tmp_path, _python_path(site))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert max(int(i) for i in re.findall(r'iter:\s+(\d+),', output)) == 22
    assert 'training stopped at iteration 22, before train.total_iter 30' in output
    state = site / 'experiments' / opt['name'] / 'training_states' / '20.state'
    assert state.is_file()
    opt['path']['resume_state'] = str(state)
    options.write_text(yaml.safe_dump(opt))
    result = _run([sys.executable, '-m', 'basicsr.train', '-opt', str(options)], tmp_path, _python_path(site))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert re.search(r'Resuming training from epoch: \d+, iter: 20\.', output), output[-3000:]
    assert re.search(r'iter:\s+21,', output)
