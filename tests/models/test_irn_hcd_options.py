"""The shipped option files validate, and the stock BasicSR test pipeline runs HCDModel end to end."""
import os
import pathlib
import subprocess
import sys

import cv2
import pytest
import torch
import yaml
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY
from skimage import data

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.irn_arch import InvRescaleNet
from basicsr_lmar.models.hcd_model import HCDModel
from basicsr_lmar.models.irn_model import IRNModel
from basicsr_lmar.options import validate_registered
from basicsr_lmar.registry import RESCALER_REGISTRY

HCD_SCHEMA = HCDModel.option_schemas['hcd']
IRN_TRAIN_SCHEMA, IRN_VAL_Z_SCHEMA = IRNModel.option_schemas['train'], IRNModel.option_schemas['val']
REPO = pathlib.Path(__file__).resolve().parents[2]


def _load(name):
    with open(REPO / 'options' / name) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


@pytest.mark.parametrize('name, scale', [('train_irn_x2.yml', 2), ('train_irn_x4.yml', 4), ('test_irn_x2.yml', 2),
                                         ('test_irn_x4.yml', 4)])
def test_irn_option_files_validate(name, scale):
    opt = _load(name)
    assert opt['model_type'] == 'IRNModel' and opt['scale'] == scale
    validate_registered(opt['network_g'], 'network_g', ARCH_REGISTRY)
    IRN_VAL_Z_SCHEMA.validate(opt['val'], 'val')
    if 'train' in opt:
        train = IRN_TRAIN_SCHEMA.validate(opt['train'], 'train')
        assert train['optim_g']['lr'] == 2e-4 and train['total_iter'] == 500000
        assert list(train['scheduler']['milestones']) == [100000, 200000, 300000, 400000]
        assert opt['datasets']['train']['gt_size'] == 144 and opt['datasets']['train']['batch_size_per_gpu'] == 16
        expected = 1_667_952 if scale == 2 else 4_355_136
        net = ARCH_REGISTRY.get('InvRescaleNet')(**{k: v for k, v in opt['network_g'].items() if k != 'type'})
        assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize('name', ['test_hcd_irn_x2.yml', 'test_hcd_irn_x4.yml', 'test_hcd_car_x4.yml'])
def test_hcd_option_files_validate(name):
    opt = _load(name)
    assert opt['model_type'] == 'HCDModel'
    hcd = HCD_SCHEMA.validate(opt['hcd'], 'hcd')
    assert hcd['epsilon'] == 0.3 and abs(hcd['step_size'] - 20 / 255) < 1e-12 and hcd['norm'] == 'l2'
    assert hcd['steps_hr'] == hcd['steps_lr'] == 15
    if 'irn' in name:
        validate_registered(opt['network_g'], 'network_g', ARCH_REGISTRY)
        assert opt['rescaler']['type'] in RESCALER_REGISTRY


@pytest.mark.slow
def test_basicsr_test_pipeline_runs_hcd(tmp_path):
    hr = tmp_path / 'hr'
    hr.mkdir()
    cv2.imwrite(str(hr / 'chelsea.png'), data.chelsea()[60:92, 100:132, ::-1])
    net = InvRescaleNet(scale=2, block_num=[1], growth=4)
    torch.save({'params': net.state_dict()}, tmp_path / 'irn.pth')
    opt = {
        'name': 'tiny_hcd', 'model_type': 'HCDModel', 'scale': 2, 'num_gpu': 0,
        'datasets': {'test_1': {'name': 'tiny', 'type': 'HROnlyDataset', 'dataroot_gt': str(hr),
                                'io_backend': {'type': 'disk'}}},
        'network_g': {'type': 'InvRescaleNet', 'scale': 2, 'block_num': [1], 'growth': 4},
        'path': {'pretrain_network_g': str(tmp_path / 'irn.pth')},
        'rescaler': {'type': 'IRNRescaler', 'z_policy': 'zero'},
        'hcd': {'steps_hr': 1, 'steps_lr': 1, 'epsilon': 0.05, 'step_size': 0.01},
        'val': {'save_img': True, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2}}},
    }
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    run = subprocess.run([sys.executable, '-c', 'from basicsr_lmar.test import main; main(".")', '-opt', 'opt.yml',
                          '--force_yml', 'num_gpu=0'], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    log = next((tmp_path / 'results' / 'tiny_hcd').glob('test_tiny_hcd_*.log')).read_text()
    assert 'psnr_gain_hcd1' in log and 'seconds_hcd1' in log
    assert (tmp_path / 'results' / 'tiny_hcd' / 'visualization' / 'tiny' / 'chelsea_tiny_hcd_LR_hcd1.png').is_file()


@pytest.mark.slow
def test_basicsr_train_pipeline_runs_irn(tmp_path):
    gt = tmp_path / 'gt'
    gt.mkdir()
    for name, image in (('astronaut', data.astronaut()), ('coffee', data.coffee())):
        cv2.imwrite(str(gt / f'{name}.png'), image[100:148, 200:248, ::-1])
    opt = _load('train_irn_x2.yml')
    opt.update(name='tiny_irn', num_gpu=0, manual_seed=0)
    opt['network_g'] = {'type': 'InvRescaleNet', 'scale': 2, 'block_num': [1], 'growth': 4}
    for phase in ('train', 'val'):
        opt['datasets'][phase] = dict(opt['datasets'][phase], dataroot_gt=str(gt))
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2, num_worker_per_gpu=0)
    opt['train'] = dict(opt['train'], total_iter=2)
    opt['val'] = dict(opt['val'], val_freq=2, save_img=True)
    opt['logger'] = {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(json_ready(opt)))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    run = subprocess.run([sys.executable, '-c', 'from basicsr_lmar.train import main; main(".")', '-opt', 'opt.yml'],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    log = next((tmp_path / 'experiments' / 'tiny_irn').glob('train_tiny_irn_*.log')).read_text()
    assert 'l_reconstruction' in log and '# psnr' in log
    assert (tmp_path / 'experiments' / 'tiny_irn' / 'models' / 'net_g_2.pth').is_file()


def json_ready(value):
    """OrderedDicts from BasicSR's YAML loader -> plain dicts for yaml.safe_dump."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value
