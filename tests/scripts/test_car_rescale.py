import importlib.util

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network

import basicsr_lmar  # noqa: F401
from basicsr_lmar.data.skimage_photos import load_photo
from tests.conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location('car_rescale', REPO_ROOT / 'scripts' / 'car_rescale.py')
car_rescale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(car_rescale)


@pytest.fixture
def setup(tmp_path):
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_car_tiny.yml').read_text())
    torch.manual_seed(0)
    for label in ('g', 'sr'):
        net = build_network(dict(opt[f'network_{label}']))
        torch.save({'params': net.state_dict()}, tmp_path / f'net_{label}.pth')
    opt['path'] = {'pretrain_network_g': str(tmp_path / 'net_g.pth'),
                   'pretrain_network_sr': str(tmp_path / 'net_sr.pth')}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    hr = tmp_path / 'hr'
    hr.mkdir()
    cv2.imwrite(str(hr / 'astronaut.png'), (load_photo('astronaut')[:36, :52, ::-1] * 255).round().astype(np.uint8))
    cv2.imwrite(str(hr / 'coffee.jpg'), (load_photo('coffee')[100:140, 200:240, ::-1] * 255).astype(np.uint8))
    return tmp_path


def test_downscale_upscale_and_psnr(setup):
    scores = car_rescale.main(['-opt', str(setup / 'opt.yml'), '--hr', str(setup / 'hr'), '--lr-out',
                               str(setup / 'lr'), '--sr-out', str(setup / 'sr'), '--device', 'cpu'])
    assert len(scores) == 2 and all(0 < p < 100 for p, _ in scores)
    lr = cv2.imread(str(setup / 'lr' / 'astronaut.png'))
    assert lr.shape == (32 // 4, 48 // 4, 3)  # 36x52 cropped to multiples of 8
    assert cv2.imread(str(setup / 'sr' / 'coffee.png')).shape == (40, 40, 3)
    assert not list((setup / 'lr').glob('*.tmp*'))
    first = cv2.imread(str(setup / 'sr' / 'astronaut.png'))
    # upscaling the saved 8-bit LR reproduces the SR of the round trip exactly
    again = car_rescale.main(['-opt', str(setup / 'opt.yml'), '--lr', str(setup / 'lr'), '--hr', str(setup / 'hr'),
                              '--sr-out', str(setup / 'sr2'), '--device', 'cpu'])
    np.testing.assert_array_equal(cv2.imread(str(setup / 'sr2' / 'astronaut.png')), first)
    np.testing.assert_allclose(sorted(again), sorted(scores))


def test_missing_folder_is_named(setup):
    with pytest.raises(SystemExit, match='nowhere'):
        car_rescale.main(['-opt', str(setup / 'opt.yml'), '--hr', str(setup / 'nowhere'), '--lr-out',
                          str(setup / 'lr'), '--device', 'cpu'])


def test_gray_and_16bit_inputs_are_converted_and_a_corrupt_file_is_named(setup):
    photo = load_photo('astronaut')[:36, :52]  # the fixture's astronaut.png, at 16 bits
    cv2.imwrite(str(setup / 'hr' / 'gray.png'), (photo.mean(axis=2) * 255).round().astype(np.uint8))
    cv2.imwrite(str(setup / 'hr' / 'deep.png'), (photo[:, :, ::-1] * 65535).round().astype(np.uint16))
    car_rescale.main(['-opt', str(setup / 'opt.yml'), '--hr', str(setup / 'hr'), '--lr-out', str(setup / 'lr'),
                      '--device', 'cpu'])
    gray_lr = cv2.imread(str(setup / 'lr' / 'gray.png'), cv2.IMREAD_UNCHANGED)
    assert gray_lr.shape == (8, 12, 3) and gray_lr.dtype == np.uint8  # replicated to RGB, 8-bit LR
    deep_lr = cv2.imread(str(setup / 'lr' / 'deep.png'), cv2.IMREAD_UNCHANGED)
    assert deep_lr.shape == (8, 12, 3) and deep_lr.dtype == np.uint8
    # the 16-bit input was read at full depth: its LR matches the LR of the same photo read from 8 bits
    # to within the 8-bit rounding of the input
    assert np.abs(deep_lr.astype(int) - cv2.imread(str(setup / 'lr' / 'astronaut.png')).astype(int)).max() <= 3
    (setup / 'hr' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n cut short')
    with pytest.raises(Exception, match='broken.png: not a readable image'):
        car_rescale.main(['-opt', str(setup / 'opt.yml'), '--hr', str(setup / 'hr'), '--lr-out', str(setup / 'lr'),
                          '--device', 'cpu'])
