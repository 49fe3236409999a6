"""The test harness's own check: no test writes outside its temporary folder (tests/conftest.py)."""
import pathlib

import basicsr

from tests.conftest import REPO_ROOT, _tree, changes_outside_tmp, snapshot_outside_tmp


def test_the_check_watches_the_repository_and_the_installed_basicsr():
    places = snapshot_outside_tmp()
    repository = places[f'repository {REPO_ROOT}']
    assert 'basicsr_lmar/preflight.py' in repository and 'tests/conftest.py' in repository
    assert not any(path.startswith(('.git/', '.venv/')) or '__pycache__' in path for path in repository)
    site = pathlib.Path(basicsr.__file__).resolve().parents[1]  # where basicsr's own train puts experiments/
    assert 'basicsr' in places[f'site-packages {site}']


def test_an_empty_folder_left_behind_is_named(tmp_path):
    before = {'site-packages /x': {'basicsr'}, f'repository {tmp_path}': _tree(tmp_path)}
    (tmp_path / 'experiments').mkdir()
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'b.txt').write_text('x')
    after = {'site-packages /x': {'basicsr', 'experiments'}, f'repository {tmp_path}': _tree(tmp_path)}
    assert sorted(changes_outside_tmp(before, after)) == [
        f'repository {tmp_path}: left a, a/b.txt, experiments', 'site-packages /x: left experiments']
    assert sorted(changes_outside_tmp(after, before)) == [
        f'repository {tmp_path}: removed a, a/b.txt, experiments', 'site-packages /x: removed experiments']
    assert changes_outside_tmp(after, after) == []
