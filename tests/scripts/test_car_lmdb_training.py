"""The shipped CAR + EDSR option file trains from LMDBs made by scripts/create_lmdb.py and validates: HR-only
DIV2K-style folders -> ``create_lmdb.py folder`` -> basicsr's own train pipeline, shrunk."""
import re

import cv2
import numpy as np
import pytest
import torch
import yaml
from skimage import data

import basicsr_lmar  # noqa: F401
from tests.conftest import REPO_ROOT
from tests.scripts.tool_runs import load_script, run_stock_training

create_lmdb = load_script('create_lmdb')


def hr_folder(root, names, size):
    root.mkdir(parents=True)
    photo = data.astronaut()
    for i, name in enumerate(names):
        crop = np.ascontiguousarray(photo[60 * i:60 * i + size[0], 50 * i:50 * i + size[1], ::-1])
        cv2.imwrite(str(root / f'{name}.png'), crop)
    return root


@pytest.mark.parametrize('option_file', ['train_car_edsr_x4.yml'])
def test_car_trains_and_validates_from_lmdb(tmp_path, monkeypatch, option_file):
    train_hr = hr_folder(tmp_path / 'DIV2K_train_HR', ['0001', '0002', '0003', '0004'], (48, 56))
    train_lmdb = create_lmdb.main(['folder', str(train_hr), '--output', str(tmp_path / 'train_HR.lmdb')])[0]
    val_lmdb = create_lmdb.main(['folder', str(hr_folder(tmp_path / 'val_HR', ['baby', 'bird'], (36, 44))),
                                 '--output', str(tmp_path / 'val_HR.lmdb')])[0]
    opt = yaml.safe_load((REPO_ROOT / 'options' / option_file).read_text())
    opt.update(name='tiny_car_lmdb', num_gpu=0)
    train, val = opt['datasets']['train'], opt['datasets']['val']
    train.update(dataroot_gt=str(train_lmdb), io_backend={'type': 'lmdb'}, gt_size=32, batch_size_per_gpu=2,
                 num_worker_per_gpu=0)
    val.update(dataroot_gt=str(val_lmdb), io_backend={'type': 'lmdb'})
    opt['network_g'].update(num_feat=4, body_feat=4, top_feat=8, num_block=1)
    opt['network_sr'].update(num_feat=8, num_block=1)
    opt['train'].update(total_iter=4, scheduler={'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5})
    opt['val'].update(val_freq=4, save_img=True)
    opt['logger'].update(print_freq=1, save_checkpoint_freq=4, use_tb_logger=False)
    (tmp_path / 'tiny.yml').write_text(yaml.safe_dump(opt))

    log = run_stock_training(tmp_path / 'tiny.yml', tmp_path, monkeypatch)
    assert 'End of training' in log
    assert len(re.findall(r'l_pix: \S+', log)) >= 4
    assert re.search(r'# psnr: \d+\.\d+', log) and re.search(r'# ssim: \d\.\d+', log)
    models = tmp_path / 'experiments' / 'tiny_car_lmdb' / 'models'
    for label in ('g', 'sr'):
        assert (models / f'net_{label}_latest.pth').is_file()
    params = torch.load(models / 'net_g_latest.pth', map_location='cpu', weights_only=True)['params']
    assert 'kernel_head.2.weight' in params
    images = sorted(p.name for p in (tmp_path / 'experiments' / 'tiny_car_lmdb' / 'visualization').rglob('*.png'))
    assert images and any('baby' in name for name in images)
