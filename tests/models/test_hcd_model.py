import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.models import build_model
from skimage import data
from torch.utils.data import DataLoader

import basicsr_lmar  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_lmar.archs.irn_arch import InvRescaleNet
from basicsr_lmar.options import OptionError

METRICS = {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True},
           'ssim': {'type': 'calculate_ssim', 'crop_border': 2, 'test_y_channel': True}}



@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / 'hr'
    folder.mkdir()
    for name, image in (('astronaut', data.astronaut()), ('coffee', data.coffee())):
        crop = image[100:134, 200:234]  # 34x34: not a multiple of 4, cropped to 32x32 by the model
        cv2.imwrite(str(folder / f'{name}.png'), crop[..., ::-1])
    return folder


@pytest.fixture
def irn_weights(tmp_path):
    # A fresh IRN is a sensible rescaler: box-average downscaling, z = 0 gives box upsampling.
    torch.manual_seed(0)
    net = InvRescaleNet(scale=4, block_num=[1, 1], growth=4)
    path = tmp_path / 'irn.pth'
    torch.save({'params': net.state_dict()}, path)
    return path


def _opt(tmp_path, weights, **overrides):
    opt = {
        'name': 'hcd_test', 'model_type': 'HCDModel', 'num_gpu': 0, 'dist': False, 'rank': 0, 'is_train': False,
        'scale': 4,
        'network_g': {'type': 'InvRescaleNet', 'scale': 4, 'block_num': [1, 1], 'growth': 4},
        'rescaler': {'type': 'IRNRescaler', 'z_policy': 'zero'},
        'hcd': {'steps_hr': 3, 'steps_lr': 3, 'seed': 0, 'steps_list': [1]},
        'path': {'pretrain_network_g': str(weights), 'visualization': str(tmp_path / 'vis')},
        'val': {'save_img': True, 'metrics': METRICS},
    }
    opt.update(overrides)
    return opt


def _loader(folder):
    dataset = build_dataset({'name': 'tiny', 'type': 'HROnlyDataset', 'dataroot_gt': str(folder),
                             'io_backend': {'type': 'disk'}, 'phase': 'test'})
    return DataLoader(dataset, batch_size=1)


def test_hcd_validation_reports_base_hcd_gain_latency_and_saves_8bit_lr(tmp_path, hr_folder, irn_weights):
    model = build_model(_opt(tmp_path, irn_weights))
    model.validation(_loader(hr_folder), current_iter='test', tb_logger=None, save_img=True)
    results = model.metric_results
    for key in ('psnr_base', 'psnr_hcd3', 'psnr_hcd1', 'psnr_gain_hcd3', 'ssim_gain_hcd3', 'seconds_hcd3'):
        assert key in results, sorted(results)
    assert np.isclose(results['psnr_gain_hcd3'], results['psnr_hcd3'] - results['psnr_base'])
    assert len(model.per_image) == 2 and all(r['seconds_hcd3'] > 0 for r in model.per_image)
    # The stored LR PNG is the HCD LR (8-bit exact), and reconstructing it gives the reported PSNR.
    lr_png = cv2.imread(str(tmp_path / 'vis' / 'tiny' / 'astronaut_hcd_test_LR_hcd3.png'))[..., ::-1]
    assert lr_png.shape == (8, 8, 3)
    model.feed_data({'gt': torch.from_numpy(data.astronaut()[100:132, 200:232].copy()).permute(2, 0, 1)[None] / 255.})
    model.test()
    assert np.array_equal((model.lq[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), lr_png)
    assert (tmp_path / 'vis' / 'tiny' / 'astronaut_hcd_test_SR_base.png').is_file()


def test_hcd_improves_bicubic_rescaler_on_every_image(tmp_path, hr_folder, irn_weights):
    opt = _opt(tmp_path, irn_weights, rescaler={'type': 'BicubicSRRescaler', 'scale': 4})
    del opt['network_g'], opt['path']['pretrain_network_g']
    # Small images: a ball and step sized for 32x32 (the paper's 0.3 and 20/255 are l2 over whole photos).
    opt['hcd'] = {'steps_hr': 4, 'steps_lr': 4, 'seed': 0, 'epsilon': 0.1, 'step_size': 0.02}
    model = build_model(opt)
    model.validation(_loader(hr_folder), current_iter='test', tb_logger=None, save_img=False)
    # Bicubic down/up is not a matched pair: HCD improves every image over it.
    assert all(record['psnr_gain_hcd4'] > 0 for record in model.per_image), model.per_image


def test_hcd_with_car_pair_rescaler(tmp_path, hr_folder):
    # A tiny CAR resampler (random weights) with the parameter-free bicubic upscaler: built from the
    # CARModel-style sections network_g / network_sr through CARRescaler.
    car = {'type': 'CARResamplerNet', 'scale': 4, 'num_feat': 4, 'body_feat': 4, 'top_feat': 4, 'num_block': 0}
    net = ARCH_REGISTRY.get('CARResamplerNet')(**{k: v for k, v in car.items() if k != 'type'})
    torch.save({'params': net.state_dict()}, tmp_path / 'car.pth')
    opt = _opt(tmp_path, tmp_path / 'car.pth', network_g=car, network_sr={'type': 'BicubicUpscaler', 'scale': 4},
               rescaler={'type': 'CARRescaler'})
    opt['hcd'] = {'steps_hr': 2, 'steps_lr': 2, 'seed': 0, 'epsilon': 0.1, 'step_size': 0.02}
    model = build_model(opt)
    model.validation(_loader(hr_folder), current_iter='test', tb_logger=None, save_img=False)
    assert len(model.per_image) == 2 and all('psnr_hcd2' in record for record in model.per_image)
    model.feed_data({'gt': torch.from_numpy(data.chelsea()[60:92, 100:132].copy()).permute(2, 0, 1)[None] / 255.})
    model.test()
    levels = model.get_current_visuals()['lq'] * 255
    assert levels.shape == (1, 3, 8, 8) and torch.equal(levels, levels.round())


def test_missing_pretrained_weights_are_named(tmp_path, irn_weights):
    opt = _opt(tmp_path, irn_weights)
    del opt['path']['pretrain_network_g']
    with pytest.raises(FileNotFoundError, match='path.pretrain_network_g'):
        build_model(opt)


@pytest.mark.parametrize('change, message', [
    ({'hcd': {'epsilon': -0.1}}, r"\[hcd\].*'epsilon'"),
    ({'hcd': {'steps_hr': -1}}, r"\[hcd\].*'steps_hr'"),
    ({'hcd': {'norm': 'l1'}}, r"\[hcd\].*'norm'"),
    ({'hcd': {'step': 3}}, r"\[hcd\].*'step'.*steps_hr"),
    ({'rescaler': {'type': 'IRNRescalr'}}, r'\[rescaler\].*IRNRescaler'),
    ({'rescaler': {'type': 'IRNRescaler', 'z_policy': 'mean'}}, r"\[rescaler\].*z_policy"),
    ({'network_up': {'type': 'InvRescaleNet'}}, r'\[network_up\] is not used'),
    ({'scale': 2}, r'\[scale\]'),
    ({'is_train': True}, 'test-time only'),
])
def test_option_errors(tmp_path, irn_weights, change, message):
    with pytest.raises(OptionError, match=message):
        build_model(_opt(tmp_path, irn_weights, **change))


def test_the_rescalers_networks_are_frozen_model_attributes(tmp_path, irn_weights):
    model = build_model(_opt(tmp_path, irn_weights))
    assert model.net_g is model.rescaler.net
    assert not model.net_g.training and not any(p.requires_grad for p in model.net_g.parameters())
