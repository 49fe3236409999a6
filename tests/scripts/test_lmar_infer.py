import importlib.util
import pathlib

import cv2
import numpy as np
import pytest
import torch
from skimage import data

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.lmar_arch import LMARResampler
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / 'scripts' / 'lmar_infer.py'


def _module():
    spec = importlib.util.spec_from_file_location('lmar_infer', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    resampler = LMARResampler(mlp_backend='torch', mlp_width=16, mlp_hidden_layers=1)
    enhancer = UHDUNet(model_channel=2)
    torch.save({'params': resampler.state_dict()}, tmp_path / 'lmar.pth')
    torch.save({'params': enhancer.state_dict()}, tmp_path / 'enhancer.pth')
    (tmp_path / 'opt.yml').write_text(
        'network_g: {type: LMARResampler, mlp_backend: torch, mlp_width: 16, mlp_hidden_layers: 1}\n'
        'network_enhancer: {type: UHDUNet, model_channel: 2}\n'
        f'path: {{pretrain_network_g: {tmp_path / "lmar.pth"}, '
        f'pretrain_network_enhancer: {tmp_path / "enhancer.pth"}}}\n')
    inputs = tmp_path / 'in'
    inputs.mkdir()
    photo = data.astronaut()[:96, :128, ::-1]  # BGR for OpenCV
    cv2.imwrite(str(inputs / 'a8.png'), photo)
    cv2.imwrite(str(inputs / 'b16.png'), photo.astype(np.uint16) * 257)
    cv2.imwrite(str(inputs / 'c.jpg'), photo)
    return tmp_path, resampler, enhancer


def test_folder_of_8_16_bit_png_and_jpeg(setup):
    tmp_path, resampler, enhancer = setup
    module = _module()
    args = module.parse_args(['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'in'), '-o',
                              str(tmp_path / 'out'), '--scale', '2', '--resizer', 'bicubic', '--device', 'cpu'])
    written, failed = module.run(args)
    assert [pathlib.Path(p).name for p in written] == ['a8.png', 'b16.png', 'c.png'] and not failed
    out8 = cv2.imread(written[0], cv2.IMREAD_UNCHANGED)
    out16 = cv2.imread(written[1], cv2.IMREAD_UNCHANGED)
    assert out8.shape == (96, 128, 3) and out8.dtype == np.uint8
    assert out16.shape == (96, 128, 3) and out16.dtype == np.uint16
    # same pipeline as the script, computed here: LMAR at 48x64 -> enhancer -> bicubic back
    x = torch.from_numpy(cv2.imread(str(tmp_path / 'in' / 'a8.png'))[:, :, ::-1].astype(np.float32) / 255)
    x = x.permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        expected = resampler.resize(enhancer(resampler(x, (48, 64), kernel='bicubic')), (96, 128), 'bicubic')
    expected = (expected.clamp(0, 1)[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
    assert np.abs(out8.astype(np.float32) - expected).max() <= 1
    assert not list((tmp_path / 'out').glob('.*partial*'))  # temporary names were renamed


def test_unreadable_file_is_named_or_skipped(setup):
    tmp_path, _, _ = setup
    (tmp_path / 'in' / 'broken.png').write_bytes(b'not a png')
    module = _module()
    base = ['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'),
            '--scale', '3', '--device', 'cpu']
    with pytest.raises(SystemExit, match='broken.png'):
        module.run(module.parse_args(base))
    written, failed = module.run(module.parse_args(base + ['--skip-bad']))
    assert len(written) == 3 and [pathlib.Path(p).name for p in failed] == ['broken.png']


def test_missing_checkpoint_is_named(setup):
    tmp_path, _, _ = setup
    module = _module()
    args = module.parse_args(['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'o'),
                              '--lmar', str(tmp_path / 'nope.pth'), '--device', 'cpu'])
    with pytest.raises(SystemExit, match='nope.pth'):
        module.run(args)


def test_ema_weights_are_preferred(setup):
    """A checkpoint of a run with train.ema_decay holds 'params' and 'params_ema'; the EMA ones are used."""
    tmp_path, resampler, _ = setup
    averaged = LMARResampler(mlp_backend='torch', mlp_width=16, mlp_hidden_layers=1)
    with torch.no_grad():
        averaged.modulation.bias.fill_(0.25)
    torch.save({'params': resampler.state_dict(), 'params_ema': averaged.state_dict()}, tmp_path / 'lmar.pth')
    loaded, _ = _module().build_networks(str(tmp_path / 'opt.yml'))
    torch.testing.assert_close(loaded.modulation.bias, torch.full((3, ), 0.25))
