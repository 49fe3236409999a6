"""The released basicsr imports and runs on the pinned stack through the plugin's compat layer."""
import importlib
import inspect
import os
import subprocess
import sys

import pytest

import basicsr_lmar  # noqa: F401  (installs the repairs, as the autoload hook does)


def _torchvision_has_functional_tensor():
    """torchvision before 0.17 still ships ``transforms/functional_tensor.py`` (deprecated)."""
    import torchvision.transforms
    return os.path.isfile(os.path.join(os.path.dirname(torchvision.transforms.__file__), 'functional_tensor.py'))


def test_removed_torchvision_module_resolves_to_its_new_home():
    """Where torchvision removed the module, its old name is the new module; where it still has it (0.15,
    0.16), the old name is torchvision's own module, untouched."""
    old = importlib.import_module('torchvision.transforms.functional_tensor')
    assert hasattr(old, 'rgb_to_grayscale')
    if _torchvision_has_functional_tensor():
        assert old.__name__ == 'torchvision.transforms.functional_tensor'
        assert old.__file__.endswith(os.path.join('transforms', 'functional_tensor.py'))
    else:
        assert old is importlib.import_module('torchvision.transforms._functional_tensor')


def _run(code, **env):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=dict(os.environ, **env))


def test_importing_basicsr_prints_nothing():
    """The deprecation warnings that basicsr's own imports raise in torchvision and scipy are not printed,
    even with every warning shown; the filters are gone once those imports are done."""
    code = ('import warnings\n'
            'import basicsr, basicsr_lmar\n'
            'leaked = [f for f in warnings.filters if f[1] is not None and '
            '("functional_tensor" in f[1].pattern or "convolve" in f[1].pattern)]\n'
            'assert not leaked, leaked\n')
    for flags in ([], ['-W', 'always']):
        result = subprocess.run([sys.executable, *flags, '-c', code], capture_output=True, text=True)
        assert result.returncode == 0 and result.stderr == '', (flags, result.stderr[-3000:])


def test_the_same_import_elsewhere_still_warns():
    """Only basicsr's import is quiet: a program's own import of the deprecated module keeps its warning."""
    result = _run('import basicsr_lmar, warnings\nwarnings.simplefilter("always")\n'
                  'from scipy.ndimage.filters import convolve\n')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'scipy.ndimage.filters' in result.stderr and 'deprecated' in result.stderr
    if _torchvision_has_functional_tensor():
        result = _run('import torchvision.transforms.functional_tensor\nimport basicsr\n')
        assert result.returncode == 0 and 'functional_tensor module is deprecated' in result.stderr, result.stderr


def test_alias_finder_defers_to_real_modules():
    from basicsr_lmar.runtime.compat import ModuleAliasFinder
    assert ModuleAliasFinder().find_spec('torchvision.transforms.functional') is None


def test_without_compat_released_basicsr_fails_on_this_stack():
    """Guards the premise: if this starts passing, the alias may be dropped."""
    code = 'import basicsr'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env={'BASICSR_LMAR_AUTOLOAD': '0', 'PATH': ''})
    if result.returncode == 0:
        pytest.skip('this basicsr/torchvision pair imports without the alias')
    assert 'functional_tensor' in result.stderr


def test_basicsr_degradations_work_through_alias():
    import torch
    from basicsr.data.degradations import add_gaussian_noise_pt
    torch.manual_seed(0)
    out = add_gaussian_noise_pt(torch.zeros(1, 3, 8, 8), sigma=5, gray_noise=0)
    assert out.shape == (1, 3, 8, 8) and out.abs().sum() > 0


def test_importing_the_plugin_leaves_basicsr_models_as_basicsr_wrote_them():
    """Another project's basicsr models behave the same with the plugin installed (autoload on): every
    method of SRModel and BaseModel is the function basicsr's own source defines."""
    code = (
        'import inspect, basicsr, basicsr_lmar\n'
        'from basicsr.models.base_model import BaseModel\n'
        'from basicsr.models.sr_model import SRModel\n'
        'import basicsr.models.base_model as base, basicsr.models.sr_model as sr\n'
        'assert "basicsr_lmar" in __import__("sys").modules\n'
        'for cls, module in ((BaseModel, base), (SRModel, sr)):\n'
        '    for name, member in vars(cls).items():\n'
        '        if inspect.isfunction(member):\n'
        '            member = inspect.unwrap(member)  # master_only\n'
        '            assert member.__module__ == module.__name__, (cls.__name__, name, member.__module__)\n'
        '            assert member.__qualname__ == f"{cls.__name__}.{name}", (cls.__name__, name)\n'
        '            assert inspect.getsourcefile(member) == module.__file__, (cls.__name__, name)\n'
        'print("basicsr own", sorted(n for n, m in vars(SRModel).items() if inspect.isfunction(m)))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'basicsr own' in result.stdout and "'nondist_validation'" in result.stdout


def test_stock_train_module_gets_only_the_cpu_resume_repair():
    """basicsr.train (imported, or run by python -m) is basicsr's source plus one statement after
    load_resume_state: on a GPU machine basicsr's function runs unchanged, without one the plugin's."""
    import inspect

    import basicsr.train as stock
    from basicsr_lmar.runtime import resume
    original = stock.load_resume_state.__wrapped__
    assert inspect.getsourcefile(original) == stock.__file__ and 'torch.cuda.current_device()' in inspect.getsource(
        original)
    for name in ('train_pipeline', 'create_train_val_dataloader', 'init_tb_loggers'):
        assert inspect.getsourcefile(getattr(stock, name)) == stock.__file__
    assert stock.load_resume_state.__code__ is resume.repaired_stock_resume(original).__code__
    opt = {'auto_resume': False, 'path': {'resume_state': None}}
    assert stock.load_resume_state(opt) is None



def test_stock_modules_run_the_preflight_for_plugin_option_files_only():
    """basicsr.train and basicsr.test get one more statement: the parse_options they imported checks the
    -opt file of a plugin model first (tests/test_preflight.py runs the errors through python -m
    basicsr.train); for another project's model it is basicsr's function, after a read of the file."""
    import basicsr.test as stock_test
    import basicsr.train as stock_train
    import yaml
    from basicsr.utils import options

    from basicsr_lmar import preflight
    from tests.conftest import REPO_ROOT
    for module in (stock_train, stock_test):
        assert module.parse_options.__wrapped__ is options.parse_options
        assert module.parse_options.preflight_checked
        assert inspect.getsourcefile(module.train_pipeline if module is stock_train else module.test_pipeline) == \
            module.__file__
    other = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_edsr_tiny.yml').read_text())
    other['train']['optim_g']['lr'] = '4e-4'  # basicsr's business, not the plugin's
    assert preflight.check_options(other, True) is False
