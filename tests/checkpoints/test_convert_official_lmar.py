import importlib.util
import pathlib

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet
from basicsr_lmar.checkpoints.lmar import convert_official_uhd_unet, load_official_state_dict, official_uhd_unet_key

BASE = 'lmar_official/base_model.bin'
LMAR = 'lmar_official/LMAR_model.bin'


def test_every_official_key_maps_and_loads_strictly(reference_file):
    official = load_official_state_dict(reference_file(BASE))
    assert len(official) == 199
    converted = convert_official_uhd_unet(official)
    assert len(converted) == 199 and all(converted[official_uhd_unet_key(k)] is v for k, v in official.items())
    net = UHDUNet(block='invertible')
    result = net.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in net.parameters()) == 264_460


def test_lmar_checkpoint_enhancer_under_model_prefix_is_the_same(reference_file):
    base = convert_official_uhd_unet(load_official_state_dict(reference_file(BASE)))
    lmar_state = load_official_state_dict(reference_file(LMAR))
    enhancer = convert_official_uhd_unet(lmar_state, prefix='model.')
    assert enhancer.keys() == base.keys()
    assert all(torch.equal(enhancer[k], base[k]) for k in base)
    # the other parts (extractor_mid., imnet., modulation.) are left to the caller
    with pytest.raises(KeyError, match=r"'model\.hr_inc\.double_conv\.0\.weight'"):
        convert_official_uhd_unet(lmar_state, prefix='')


def test_converted_enhancer_brightens_a_darkened_photo(reference_file):
    net = UHDUNet().eval()
    net.load_state_dict(convert_official_uhd_unet(load_official_state_dict(reference_file(BASE))))
    original = data.astronaut()[::2, ::2].astype(np.float32) / 255  # 256x256
    dark = original**2.2 * 0.3  # gamma + exposure: a low-light version
    with torch.no_grad():
        out = net(torch.from_numpy(dark).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    psnr_dark = peak_signal_noise_ratio(original, dark, data_range=1)
    psnr_out = peak_signal_noise_ratio(original, out, data_range=1)
    assert out.mean() > 2 * dark.mean()
    assert psnr_out > psnr_dark + 5


def test_unknown_key_is_named():
    with pytest.raises(KeyError, match='hr_backbone.not_a_module.weight'):
        convert_official_uhd_unet({'final_out.weight': torch.zeros(3, 16, 1, 1),
                                   'hr_backbone.not_a_module.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match="starts with 'model.'"):
        convert_official_uhd_unet({'final_out.weight': torch.zeros(3, 16, 1, 1)}, prefix='model.')


def test_script_writes_a_basicsr_checkpoint(reference_file, tmp_path):
    source = reference_file(BASE)
    output = tmp_path / 'cnn_i.pth'
    script = pathlib.Path(__file__).resolve().parents[2] / 'scripts' / 'convert_official_lmar.py'
    spec = importlib.util.spec_from_file_location('convert_official_lmar', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(source), str(output)])
    params = torch.load(output, map_location='cpu')['params']
    UHDUNet().load_state_dict(params, strict=True)
