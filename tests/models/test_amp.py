"""``train.amp: bf16`` trains like fp32 on a few steps (CPU autocast); the GPU-only fp16 is refused on CPU."""
import copy

import pytest
import torch
import yaml
from basicsr.models import build_model

from tests.conftest import REPO_ROOT


def _car_options(tmp_path, amp):
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_car_tiny.yml').read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'] = {'models': str(tmp_path), 'training_states': str(tmp_path), 'visualization': str(tmp_path)}
    opt['train']['amp'] = amp
    for section in opt['datasets'].values():
        section['phase'] = 'train'
    return opt


def _train(opt, steps=3):
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(opt))
    gt = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    losses = []
    for it in range(1, steps + 1):
        model.feed_data({'gt': gt})
        model.optimize_parameters(it)
        losses.append(float(model.log_dict['l_pix']))
    return losses, model


def test_bf16_matches_fp32_on_a_few_car_steps(tmp_path):
    fp32, _ = _train(_car_options(tmp_path, 'none'))
    bf16, model = _train(_car_options(tmp_path, 'bf16'))
    assert model.amp_dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: losses agree to a few parts in a thousand, not bit for bit
    for a, b in zip(fp32, bf16):
        assert b == pytest.approx(a, rel=2e-2)
    assert bf16 != fp32  # autocast really ran in reduced precision


def test_fp16_needs_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: fp16 is allowed')
    with pytest.raises(ValueError, match='fp16 needs a GPU'):
        _train(_car_options(tmp_path, 'fp16'), steps=1)


def test_bf16_matches_fp32_on_a_few_lmar_steps(tmp_path):
    from basicsr.archs import build_network
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_lmar_tiny.yml').read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    torch.manual_seed(1)
    torch.save({'params': build_network(dict(opt['network_enhancer'])).state_dict()}, tmp_path / 'enhancer.pth')
    opt['path'].update(pretrain_network_enhancer=str(tmp_path / 'enhancer.pth'), models=str(tmp_path),
                       training_states=str(tmp_path), visualization=str(tmp_path))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    runs = {}
    for amp in ('none', 'bf16'):
        opt['train']['amp'] = amp
        torch.manual_seed(0)
        model = build_model(copy.deepcopy(opt))
        losses = []
        for it in range(1, 4):
            model.feed_data({'lq': x})
            model.optimize_parameters(it)
            losses.append(float(model.log_dict['l_rc']))
        runs[amp] = losses
    for a, b in zip(runs['none'], runs['bf16']):
        assert b == pytest.approx(a, rel=5e-2)
    assert runs['bf16'] != runs['none']
