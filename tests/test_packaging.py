"""The README's install route: a wheel built from a clone, offline, holds the whole package and the
autoload ``.pth``, and installing it makes ``import basicsr`` register the plugin."""
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO_ROOT

BUILD_FILES = ('setup.py', 'setup.cfg', 'pyproject.toml', 'MANIFEST.in', 'README.md', '_basicsr_lmar_autoload.py',
               'basicsr_lmar-autoload.pth')


def copy_of_the_clone(source):
    """The files a wheel is built from, copied to ``source``: pip writes build/ and *.egg-info beside them."""
    source.mkdir()
    for name in BUILD_FILES:
        shutil.copy2(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info')
    for folder in ('basicsr_lmar', 'requirements'):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=ignore)
    return source


@pytest.mark.slow
def test_wheel_from_a_clone_holds_the_package_and_installs_the_autoload_pth(tmp_path):
    source = copy_of_the_clone(tmp_path / 'clone')
    build = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
                            '-q', '-w', str(tmp_path / 'dist'), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel, = (tmp_path / 'dist').glob('basicsr_lmar-*-py3-none-any.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
    modules = {str(path.relative_to(source)) for path in (source / 'basicsr_lmar').rglob('*.py')}
    assert modules - names == set()  # every module of the package, the cli layer included
    assert {'basicsr_lmar-autoload.pth', '_basicsr_lmar_autoload.py'} <= names
    assert 'Requires-Dist: basicsr>=1.4.2' in metadata

    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    install = subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--no-deps',
                              '--no-index', '-q', str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    site = pathlib.Path(subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                                       capture_output=True, text=True, check=True).stdout.strip())
    assert (site / 'basicsr_lmar-autoload.pth').read_text() == (REPO_ROOT / 'basicsr_lmar-autoload.pth').read_text()
    assert (site / 'basicsr_lmar' / 'cli' / 'folders.py').is_file()
    hook = subprocess.run([str(python), '-c', 'import sys, _basicsr_lmar_autoload as a; '
                           'print(any(isinstance(f, a.BasicsrImportHook) for f in sys.meta_path))'],
                          capture_output=True, text=True, check=True)
    assert hook.stdout.strip() == 'True'  # the .pth ran at interpreter start
