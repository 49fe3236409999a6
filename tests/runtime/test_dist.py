"""Launchers that cannot work are named before anything starts (runtime/dist.py)."""
import pytest

from basicsr_lmar.errors import UserError
from basicsr_lmar.runtime import dist

SLURM_MESSAGE = ("--launcher slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST are not set, so this process was not "
                 "started by slurm's srun. Start it with srun (docs/distributed.md), or use torchrun with --launcher "
                 "pytorch, or leave --launcher out for one process.")


@pytest.fixture
def outside_slurm(monkeypatch):
    """No slurm variables; the ones the set-up writes are removed again after the test."""
    for name in dist.SLURM_VARIABLES + ('MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK'):
        monkeypatch.setenv(name, '')  # recorded, so that the test's own writes are undone
        monkeypatch.delenv(name)


def test_slurm_launcher_outside_slurm_is_named(outside_slurm, monkeypatch):
    """basicsr's (and formerly the plugin's) slurm set-up read os.environ['SLURM_PROCID']: a KeyError traceback."""
    import os

    with pytest.raises(UserError) as error:
        dist.init_dist('slurm', backend='gloo')
    assert str(error.value) == SLURM_MESSAGE
    assert 'MASTER_ADDR' not in os.environ and 'RANK' not in os.environ  # nothing set on the way
    with pytest.raises(UserError, match='^--launcher slurm: SLURM_NODELIST is not set, so'):
        monkeypatch.setenv('SLURM_PROCID', '0')
        monkeypatch.setenv('SLURM_NTASKS', '2')
        dist.check_launcher(['-opt', 'x.yml', '--launcher', 'slurm'])
    dist.check_launcher(['-opt', 'x.yml'])  # no launcher: nothing to check
    dist.check_launcher(['-opt', 'x.yml', '--launcher', 'pytorch'])


def test_slurm_node_list_needs_scontrol_or_master_addr(outside_slurm, monkeypatch, tmp_path):
    monkeypatch.setenv('SLURM_PROCID', '0')
    monkeypatch.setenv('SLURM_NTASKS', '1')
    monkeypatch.setenv('SLURM_NODELIST', 'node[01-02]')
    monkeypatch.setenv('PATH', str(tmp_path))  # no scontrol
    with pytest.raises(UserError, match=r"^--launcher slurm: SLURM_NODELIST is 'node\[01-02\]' but slurm's scontrol is "
                                        "not on the PATH to expand it; set MASTER_ADDR"):
        dist._slurm_environment()
    monkeypatch.setenv('MASTER_ADDR', '10.0.0.1')
    dist._slurm_environment(port=29611)
    import os
    assert (os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'], os.environ['RANK'], os.environ['WORLD_SIZE']) == (
        '10.0.0.1', '29611', '0', '1')


def test_unknown_launcher_and_backend_are_user_errors():
    with pytest.raises(UserError, match="^--launcher must be none, pytorch or slurm; got 'mpi'$"):
        dist.init_dist('mpi')
    with pytest.raises(UserError, match="^dist_params.backend must be one of nccl, gloo; got 'mpi'$"):
        dist.init_dist('pytorch', backend='mpi')
