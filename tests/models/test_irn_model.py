import numpy as np
import pytest
import torch
from basicsr.models import build_model
from skimage import data

import basicsr_lmar  # noqa: F401
from basicsr_lmar.options import OptionError



def _opt(tmp_path, train=None, val=None):
    return {
        'name': 'irn_test', 'model_type': 'IRNModel', 'num_gpu': 0, 'dist': False, 'rank': 0, 'world_size': 1,
        'is_train': True, 'scale': 2,
        'network_g': {'type': 'InvRescaleNet', 'scale': 2, 'block_num': [1], 'growth': 8},
        'path': {'experiments_root': str(tmp_path), 'models': str(tmp_path), 'training_states': str(tmp_path),
                 'visualization': str(tmp_path / 'visualization')},
        'train': dict({'optim_g': {'type': 'Adam', 'lr': 5e-4, 'weight_decay': 1e-5, 'betas': [0.9, 0.999]},
                       'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
                       'total_iter': 10, 'warmup_iter': -1}, **(train or {})),
        'val': dict({'save_img': False}, **(val or {})),
    }


def _patches():
    photo = data.astronaut()[100:132, 200:232].astype(np.float32) / 255
    other = data.coffee()[100:132, 200:232].astype(np.float32) / 255
    return torch.from_numpy(np.stack([photo, other])).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize('train, keys', [
    ({}, ('l_reconstruction', 'l_total')),
    ({'latent_opt': None, 'reconstruction_opt': None}, ('l_lr_fit', )),
    ({'lr_fit_opt': None, 'reconstruction_opt': None}, ('l_latent', )),
])
def test_irn_losses_decrease(tmp_path, train, keys):
    torch.manual_seed(0)
    model = build_model(_opt(tmp_path, train=train))
    gt = _patches()
    history = []
    for it in range(10):
        model.feed_data({'gt': gt})
        model.optimize_parameters(it)
        history.append(dict(model.log_dict))
    for key in keys:
        first = np.mean([h[key] for h in history[:2]])
        last = np.mean([h[key] for h in history[-2:]])
        assert last < first, (key, [h[key] for h in history])


def test_irn_test_produces_quantised_lr_and_hr(tmp_path):
    model = build_model(_opt(tmp_path))
    model.feed_data({'gt': _patches()})
    model.test()
    visuals = model.get_current_visuals()
    assert visuals['lq'].shape == (2, 3, 16, 16) and visuals['result'].shape == (2, 3, 32, 32)
    levels = visuals['lq'] * 255
    assert torch.equal(levels, levels.round())


def test_irn_option_errors(tmp_path):
    with pytest.raises(OptionError, match=r'\[train\].*lamda|lr_fit_opt'):
        build_model(_opt(tmp_path, train={'lamda_fit': 16}))
    with pytest.raises(OptionError, match='z_policy'):
        build_model(_opt(tmp_path, val={'z_policy': 'mean'}))
    opt = _opt(tmp_path)
    opt['network_g']['growht'] = 8
    with pytest.raises(OptionError, match=r'\[network_g\].*growht'):
        build_model(opt)


def test_loss_crop_border_leaves_the_hr_border_out_of_the_reconstruction_loss(tmp_path):
    torch.manual_seed(0)
    model = build_model(_opt(tmp_path, train={'loss_crop_border': 3}))
    seen = []
    loss = model.cri_reconstruction
    model.cri_reconstruction = lambda hr, gt: seen.append((hr.shape, gt.shape)) or loss(hr, gt)
    model.feed_data({'gt': _patches()})
    model.optimize_parameters(1)
    assert seen == [((2, 3, 26, 26), (2, 3, 26, 26))] and 'l_reconstruction' in model.log_dict
    with pytest.raises(OptionError, match=r"\[train\].*'loss_crop_border'"):
        build_model(_opt(tmp_path, train={'loss_crop_border': 1.5}))
