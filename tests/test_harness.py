"""The test harness's own checks: no test writes outside its temporary folder (tests/conftest.py); a training
subprocess that hangs fails its test with the stacks of its processes (tests/models/run_helpers.py)."""
import os
import pathlib
import sys

import basicsr
import pytest

from tests.conftest import REPO_ROOT, _tree, changes_outside_tmp, snapshot_outside_tmp
from tests.models.run_helpers import _run_or_dump_stacks


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


def test_a_hung_subprocess_fails_with_the_stack_of_every_process(tmp_path):
    # a parent that waits on a child, as torchrun waits on its ranks: both stacks are printed
    child = 'import time\ndef wait_for_peer():\n    time.sleep(600)\nwait_for_peer()'
    parent = f'import subprocess, sys\nsubprocess.run([sys.executable, "-c", {child!r}])'
    with pytest.raises(AssertionError) as failure:
        _run_or_dump_stacks([sys.executable, '-c', parent], tmp_path, dict(os.environ), timeout=5)
    message = str(failure.value)
    assert 'ran past 5 s' in message and 'wait_for_peer' in message and 'subprocess.py' in message, message
