import os
import pathlib
import sysconfig

import pytest
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The authors' released checkpoints, which the tests that need them read (and skip without): the folder named by
# BASICSR_LMAR_REFERENCE, else a reference folder beside the clone. They are never part of the repository.
REFERENCE_DIR = pathlib.Path(os.environ.get('BASICSR_LMAR_REFERENCE', REPO_ROOT.parent / 'shared' / 'reference'))


def linked_package(folder, package):
    """``folder`` holding a link to ``package`` (a package folder): a script or ``-m`` module reached through
    it is the installed file, unmodified, and the root it derives from its ``__file__`` (the folder above
    the package, where basicsr and ``basicsr_lmar/train.py`` put ``experiments/``) is ``folder``, so that a
    run started this way writes under the test's temporary folder."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / package.name).symlink_to(package, target_is_directory=True)
    return folder


@pytest.fixture
def reference_file():
    """Returns a function that gives the path of a reference file or skips the test with the reason."""

    def get(relative):
        path = REFERENCE_DIR / relative
        if not path.is_file():
            pytest.skip(f'reference file {path} is absent (set BASICSR_LMAR_REFERENCE to its folder)')
        return path

    return get


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Test tensors are tiny: intra-op threads only add overhead (and contend on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ no test writes outside its temporary folder
#: what Python and pytest themselves write, and the repository's own virtualenv (`make test`)
UNWATCHED = frozenset({'.git', '.venv', '__pycache__', '.pytest_cache'})


def _site_packages():
    """The installed packages' folders (basicsr puts experiments/ beside the installed basicsr)."""
    paths = sysconfig.get_paths()
    return sorted({pathlib.Path(paths[key]).resolve() for key in ('purelib', 'platlib')})


def _tree(root):
    """Every path under ``root`` (relative), the unwatched folders left out."""
    entries = set()
    for folder, folders, files in os.walk(root):
        folders[:] = [name for name in folders if name not in UNWATCHED]
        relative = pathlib.Path(folder).relative_to(root)
        entries.update(str(relative / name) for name in folders + files)
    return entries


def _top_level(root):
    try:
        return {name for name in os.listdir(root) if name not in UNWATCHED}
    except OSError:
        return set()


def snapshot_outside_tmp():
    """``{place: entries}`` of the places a test must leave as it found them: the repository (every
    file), the site-packages folders and the working directory (their top level)."""
    places = {f'repository {REPO_ROOT}': _tree(REPO_ROOT)}
    for folder in _site_packages():
        places[f'site-packages {folder}'] = _top_level(folder)
    cwd = pathlib.Path.cwd().resolve()
    if cwd != REPO_ROOT and REPO_ROOT not in cwd.parents:
        places[f'working directory {cwd}'] = _top_level(cwd)
    return places


def changes_outside_tmp(before, after):
    """Lines naming what appeared or disappeared in each place between two snapshots."""
    lines = []
    for place in before.keys() & after.keys():
        added, removed = sorted(after[place] - before[place]), sorted(before[place] - after[place])
        if added:
            lines.append(f'{place}: left {", ".join(added[:8])}' + (' ...' if len(added) > 8 else ''))
        if removed:
            lines.append(f'{place}: removed {", ".join(removed[:8])}' + (' ...' if len(removed) > 8 else ''))
    return lines


@pytest.fixture(autouse=True)
def _writes_only_in_its_tmp_folder(request):
    """Fails the test that leaves anything (an empty folder included) in the repository, the installed
    packages or the working directory: a test writes only under its ``tmp_path``. (Test runs that share one
    virtualenv at the same time see each other's writes to its site-packages.)"""
    before = snapshot_outside_tmp()
    yield
    changes = changes_outside_tmp(before, snapshot_outside_tmp())
    if changes:
        pytest.fail(f'{request.node.nodeid} wrote outside its temporary folder:\n  ' + '\n  '.join(changes),
                    pytrace=False)
