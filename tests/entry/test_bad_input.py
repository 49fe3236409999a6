"""Mistakes in what a run is given end with one line naming the file, key or image and the fix, exit code 2,
before any folder is created: the plugin's training and test entries (``basicsr-lmar-train``/``-test``),
in-process, on tiny runs of real photos."""
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network

import basicsr_lmar  # noqa: F401
from basicsr_lmar.cli.errors import DEBUG_ENV_VAR, run_main
from basicsr_lmar.data.skimage_photos import load_photo
from tests.conftest import REPO_ROOT
from tests.scripts.tool_runs import load_script

IRN_OPTIONS = REPO_ROOT / 'tests' / 'data_files' / 'train_irn_tiny.yml'


def irn_options(tmp_path, name, is_train=True, **path):
    opt = yaml.safe_load(IRN_OPTIONS.read_text())
    opt['name'] = name
    opt['path'].update(path)
    if not is_train:
        for key in ('train', 'logger'):
            opt.pop(key)
        opt['datasets'] = {'test_1': opt['datasets']['val']}
    return opt


def write(tmp_path, opt):
    path = tmp_path / f'{opt["name"]}.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def photo_folder(folder, names, size=(40, 48)):
    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        crop = load_photo('chelsea')[30 * index:30 * index + size[0], :size[1], ::-1]
        cv2.imwrite(str(folder / name), (crop * 255).round().astype(np.uint8))
    return folder


def refused_by_entry(option_file, root, monkeypatch, capsys, *flags, is_train=True):
    """Runs the entry as its console script does; returns the last line of stderr, after checking exit code 2,
    no traceback and that nothing was created under ``root`` (experiments/, results/, tb_logger/)."""
    from basicsr_lmar.train import run

    prog = 'basicsr-lmar-train' if is_train else 'basicsr-lmar-test'
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, 'argv', [prog, '-opt', str(option_file), *flags])
    before = sorted(p.name for p in root.iterdir())
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_main(lambda argv: run(sys.argv[1:], str(root), is_train), argv=[], prog=prog)
    err = capsys.readouterr().err
    assert info.value.code == 2 and 'Traceback' not in err, err
    assert sorted(p.name for p in root.iterdir()) == before  # no experiments/, results/, tb_logger/
    return err.strip().splitlines()[-1]


@pytest.fixture
def irn_checkpoint(tmp_path):
    opt = yaml.safe_load(IRN_OPTIONS.read_text())
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(opt['network_g'])).state_dict()}, tmp_path / 'net_g.pth')
    return tmp_path / 'net_g.pth'


@pytest.mark.parametrize('is_train', [True, False])
def test_a_truncated_pretrained_checkpoint(tmp_path, monkeypatch, capsys, irn_checkpoint, is_train):
    """``head -c 20000 net_g.pth > t.pth`` as path.pretrain_network_g: OSError [Errno 22] from torch, rc 1 and
    experiments/<name>/ left behind, before."""
    truncated = tmp_path / 't.pth'
    truncated.write_bytes(irn_checkpoint.read_bytes()[:20000])
    option_file = write(tmp_path, irn_options(tmp_path, 'truncated', is_train, pretrain_network_g=str(truncated)))
    prog = 'basicsr-lmar-train' if is_train else 'basicsr-lmar-test'
    assert refused_by_entry(option_file, tmp_path, monkeypatch, capsys, is_train=is_train) == (
        f'{prog}: error: path.pretrain_network_g: {truncated} is damaged (20000 bytes): its zip archive ends early or '
        'is corrupted, so torch cannot read it (an interrupted download, copy or save cuts a file short); copy or '
        'download it again, or point path.pretrain_network_g at another checkpoint.')


def test_another_networks_checkpoint_with_strict_load_false(tmp_path, monkeypatch, capsys):
    """Zero tensors loaded, "Loaded InvRescaleNet from ..." and PSNR 8.79 dB, before."""
    car = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_car_tiny.yml').read_text())['network_g']
    torch.save({'params': build_network(dict(car)).state_dict()}, tmp_path / 'car.pth')
    option_file = write(tmp_path, irn_options(tmp_path, 'other_arch', pretrain_network_g=str(tmp_path / 'car.pth'),
                                              strict_load_g=False))
    assert refused_by_entry(option_file, tmp_path, monkeypatch, capsys) == (
        f'basicsr-lmar-train: error: path.pretrain_network_g: {tmp_path}/car.pth has no tensor that fits '
        'InvRescaleNet: path.strict_load_g: false loads the tensors whose names and shapes match, and none of its 44 '
        'does. Point path.pretrain_network_g at a checkpoint of InvRescaleNet, or set network_g to the network it was '
        'saved for.')


def test_dataroot_gt_pointing_to_a_file(tmp_path, monkeypatch, capsys):
    """"folder '/…/baby.png' does not exist" (it exists, as a file), before."""
    photo = photo_folder(tmp_path / 'Set5', ['baby.png']) / 'baby.png'
    opt = irn_options(tmp_path, 'file_root')
    opt['datasets']['val'] = {'name': 'Set5', 'type': 'HROnlyDataset', 'dataroot_gt': str(photo)}
    assert refused_by_entry(write(tmp_path, opt), tmp_path, monkeypatch, capsys) == (
        f"basicsr-lmar-train: error: datasets.val (Set5).dataroot_gt: '{photo}' is a file, not a folder of images; set "
        f"dataroot_gt to the folder that holds it ('{tmp_path}/Set5').")


def lmdb_val(tmp_path, opt, names=('baby.png', 'bird.png')):
    folder = photo_folder(tmp_path / 'Set5', names)
    lmdb_path = load_script('create_lmdb').create_folder(str(folder))
    opt['datasets']['val'] = {'name': 'Set5', 'type': 'HROnlyDataset', 'dataroot_gt': lmdb_path,
                              'io_backend': {'type': 'lmdb'}}
    return tmp_path / 'Set5.lmdb' / 'meta_info.txt'


def test_an_lmdb_with_an_empty_meta_info(tmp_path, monkeypatch, capsys):
    """What basicsr's lmdb_util left after a UnicodeEncodeError: ZeroDivisionError in basicsr's loader set-up."""
    opt = irn_options(tmp_path, 'empty_meta')
    meta = lmdb_val(tmp_path, opt)
    meta.write_text('')
    assert refused_by_entry(write(tmp_path, opt), tmp_path, monkeypatch, capsys) == (
        f'basicsr-lmar-train: error: datasets.val (Set5).dataroot_gt: {meta} is empty: the LMDB lists no image (the '
        'build that wrote it did not finish). Delete the LMDB and build it again with scripts/create_lmdb.py.')


@pytest.mark.parametrize('listed', ['24,48', '128,128'])
def test_an_lmdb_whose_meta_info_lists_a_wrong_size(tmp_path, monkeypatch, capsys, listed):
    """Listed smaller than real: refused as too small without naming meta_info.txt; listed 128 but really 40: a
    crash at the first batch after the run folders were created, before."""
    opt = irn_options(tmp_path, 'wrong_meta')
    meta = lmdb_val(tmp_path, opt)
    meta.write_text(meta.read_text().replace('bird.png (40,48,3)', f'bird.png ({listed},3)'))
    height, width = listed.split(',')
    assert refused_by_entry(write(tmp_path, opt), tmp_path, monkeypatch, capsys) == (
        f"basicsr-lmar-train: error: datasets.val (Set5).dataroot_gt: {meta} line 2 lists 'bird' as {height}x{width} "
        '(HxW) but the image stored under that key is 40x48; correct the line or rebuild the LMDB with '
        'scripts/create_lmdb.py.')


def test_slurm_launcher_outside_slurm(tmp_path, monkeypatch, capsys):
    """``KeyError: 'SLURM_PROCID'`` traceback from runtime/dist.py, before."""
    for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(name, raising=False)
    option_file = write(tmp_path, irn_options(tmp_path, 'slurm'))
    assert refused_by_entry(option_file, tmp_path, monkeypatch, capsys, '--launcher', 'slurm') == (
        'basicsr-lmar-train: error: --launcher slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST are not set, so this '
        "process was not started by slurm's srun. Start it with srun (docs/distributed.md), or use torchrun with "
        '--launcher pytorch, or leave --launcher out for one process.')


def test_stock_route_checks_the_launcher_before_basicsr(monkeypatch, capsys, tmp_path):
    """``python -m basicsr.train --launcher slurm``: the preflight's wrapper of basicsr's parse_options."""
    from basicsr_lmar import preflight

    for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    option_file = write(tmp_path, irn_options(tmp_path, 'stock_slurm'))
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(option_file), '--launcher', 'slurm'])

    def parse_options(root_path, is_train=True):
        raise AssertionError('basicsr parsed the options')

    with pytest.raises(SystemExit) as info:
        preflight.checked_parse_options(parse_options)(str(tmp_path))
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith('basicsr.train: error: --launcher slurm: SLURM_PROCID, SLURM_NTASKS')
