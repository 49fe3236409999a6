import pytest
import torch
from basicsr.models import build_model

import basicsr_lmar  # noqa: F401
from basicsr_lmar.options import OptionError
from basicsr_lmar.ops.tiled_forward import tiled_forward


def model_options(tile=None, **train_extra):
    opt = {'name': 'enhancer', 'model_type': 'UHDEnhancerModel', 'is_train': False, 'num_gpu': 0, 'dist': False,
           'rank': 0, 'world_size': 1, 'scale': 1, 'network_g': {'type': 'UHDUNet', 'model_channel': 2},
           'path': {'pretrain_network_g': None}, 'val': {}}
    if tile is not None:
        opt['val']['tile'] = tile
    if train_extra:
        opt['is_train'] = True
        opt['train'] = {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [2],
                        'gamma': 0.5}, 'total_iter': 2, 'pixel_opt': {'type': 'L1Loss'}, **train_extra}
    return opt


def test_tiled_validation_uses_tiled_forward():
    torch.manual_seed(0)
    model = build_model(model_options(tile={'size': 16, 'overlap': 8}))
    lq = torch.rand(1, 3, 24, 40)
    model.feed_data({'lq': lq})
    model.test()
    with torch.no_grad():
        expected = tiled_forward(model.net_g.eval(), lq, 16, 8)
        whole = model.net_g(lq)
    torch.testing.assert_close(model.output, expected)
    assert (model.output - whole).abs().max() > 0


def test_without_tile_the_whole_frame_is_processed():
    model = build_model(model_options())
    lq = torch.rand(1, 3, 20, 28)
    model.feed_data({'lq': lq})
    model.test()
    with torch.no_grad():
        torch.testing.assert_close(model.output, model.net_g.eval()(lq))


def test_option_mistakes_are_named():
    with pytest.raises(OptionError, match=r"\[val.tile\].*'sise'.*size"):
        build_model(model_options(tile={'sise': 16}))
    with pytest.raises(OptionError, match=r'\[val.tile\] overlap 16 must be smaller than size 16'):
        build_model(model_options(tile={'size': 16, 'overlap': 16}))
    with pytest.raises(OptionError, match=r"\[network_g\].*'blok'"):
        opt = model_options()
        opt['network_g']['blok'] = 'invertible'
        build_model(opt)
    with pytest.raises(OptionError, match=r"\[train\].*'pixel_op'.*pixel_opt"):
        build_model(model_options(pixel_op={'type': 'L1Loss'}))
