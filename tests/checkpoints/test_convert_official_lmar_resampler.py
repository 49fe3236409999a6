"""The LMAR resampler inside the authors' LMAR_model.bin (skips when the reference files are absent)."""
import importlib.util
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.lmar_arch import LMARResampler
from basicsr_lmar.checkpoints.lmar import convert_official_lmar_resampler, load_official_state_dict
from basicsr_lmar.archs.feature_hooks import FeatureHook

LMAR = 'lmar_official/LMAR_model.bin'


def _script():
    script = pathlib.Path(__file__).resolve().parents[2] / 'scripts' / 'convert_official_lmar.py'
    spec = importlib.util.spec_from_file_location('convert_official_lmar', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dark_photo():
    photo = data.astronaut()[::2, ::2].astype(np.float32) / 255  # 256x256
    return torch.from_numpy(photo**2.2 * 0.3).permute(2, 0, 1)[None].contiguous()


def test_strict_load_and_parameter_count(reference_file):
    state = load_official_state_dict(reference_file(LMAR))
    converted = convert_official_lmar_resampler(state)
    net = LMARResampler(mlp_backend='torch')
    result = net.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 79_893
    assert torch.equal(net.imnet.params, state['imnet.params'])
    with pytest.raises(KeyError, match='imnet.params'):
        convert_official_lmar_resampler({k: v for k, v in state.items() if k != 'imnet.params'})


def test_released_resampler_stays_close_to_plain_downscale_and_helps_its_enhancer(reference_file, tmp_path):
    module = _script()
    source = reference_file(LMAR)
    enhancer_out, resampler_out = tmp_path / 'enhancer.pth', tmp_path / 'lmar.pth'
    module.main([str(source), str(enhancer_out), '--resampler-output', str(resampler_out)])
    net = LMARResampler(mlp_backend='torch').eval()
    net.load_state_dict(torch.load(resampler_out)['params'], strict=True)
    enhancer = module.convert_enhancer(str(source), 'model.').eval()
    enhancer.load_state_dict(torch.load(enhancer_out)['params'], strict=True)
    hook = FeatureHook(enhancer, enhancer.BOTTLENECK_LAYER)
    x = _dark_photo()
    with torch.no_grad():
        target = hook.extract(x)
        for size in ((128, 128), (64, 64)):
            out = net(x, size, return_intermediates=True)
            x_c, x_d = out['x_c'], out['x_d']
            assert torch.isfinite(x_c).all()
            assert (x_c - x_d).abs().mean() < 0.02  # a small learned correction of the plain downscale
            # the layout is read right: the resampler lowers its own training objective (eq. 10)
            loss = {name: F.smooth_l1_loss(net.resize(hook.extract(image), target.shape[-2:]), target).item()
                    for name, image in (('lmar', x_c), ('plain', x_d))}
            assert loss['lmar'] < loss['plain']
