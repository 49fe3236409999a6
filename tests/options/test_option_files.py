"""Properties every shipped option file must have."""
import pathlib

import pytest
import yaml

OPTIONS = sorted((pathlib.Path(__file__).resolve().parents[2] / 'options').glob('*.yml'))


@pytest.mark.parametrize('path', OPTIONS, ids=lambda p: p.name)
def test_backend_is_left_to_the_plugin(path):
    """The README promises NCCL on GPUs and gloo on CPUs, chosen automatically: a shipped file that
    names NCCL would fail on a CPU machine."""
    opt = yaml.safe_load(path.read_text()) or {}
    assert (opt.get('dist_params') or {}).get('backend') in (None, 'gloo'), path.name
