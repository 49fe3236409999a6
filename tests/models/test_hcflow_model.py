"""HCFlowModel: the authors' losses and clipping, ActNorm init semantics, validation at heats; option files; HCD."""
import pathlib

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY
from skimage import data

import basicsr_lmar  # noqa: F401
from basicsr_lmar.models.hcd_model import HCDModel
from basicsr_lmar.models.hcflow_model import HCFlowModel
from basicsr_lmar.options import OptionError, validate_registered
from basicsr_lmar.registry import RESCALER_REGISTRY

HCD_SCHEMA = HCDModel.option_schemas['hcd']
HCFLOW_TRAIN_SCHEMA, HCFLOW_VAL_SCHEMA = HCFlowModel.option_schemas['train'], HCFlowModel.option_schemas['val']
REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_NET = {'type': 'HCFlowNet', 'scale': 4, 'flow_steps': [2, 2], 'prior_steps': [1, 1], 'growth': 4, 'rrdb_nf': 8,
            'rrdb_gc': 4, 'rrdb_blocks': 1, 'hidden': 8}


def _opt(tmp_path, train=None, val=None, is_train=True):
    return {
        'name': 'hcflow_test', 'model_type': 'HCFlowModel', 'num_gpu': 0, 'dist': False, 'rank': 0, 'world_size': 1,
        'is_train': is_train, 'scale': 4, 'network_g': dict(TINY_NET),
        'path': {'experiments_root': str(tmp_path), 'models': str(tmp_path), 'training_states': str(tmp_path),
                 'visualization': str(tmp_path / 'visualization')},
        'train': dict({'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, 'total_iter': 10,
                       'optim_g': {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.99]}},
                      **(train or {})),
        'val': dict({'save_img': False}, **(val or {})),
    }


def _patches():
    photo = data.astronaut()[100:132, 200:232].astype(np.float32) / 255
    other = data.coffee()[100:132, 200:232].astype(np.float32) / 255
    return torch.from_numpy(np.stack([photo, other])).permute(0, 3, 1, 2).contiguous()


def test_a_training_step_lowers_the_loss_and_initialises_actnorm_once(tmp_path):
    torch.manual_seed(0)
    model = build_model(_opt(tmp_path))
    net = model.get_bare_model(model.net_g)
    assert not net.actnorm_initialised
    gt = _patches()
    model.feed_data({'gt': gt})
    model.optimize_parameters(1)
    assert net.actnorm_initialised and set(model.log_dict) >= {'l_lr_fit', 'l_latent', 'l_reconstruction', 'l_total'}
    first = model.log_dict['l_total']
    calls = []
    net.initialise_actnorm = lambda *args, **kwargs: calls.append(1)  # must not be called again
    for it in range(2, 6):
        model.feed_data({'gt': gt})
        model.optimize_parameters(it)
    assert calls == [] and model.log_dict['l_total'] < first


def test_loaded_networks_are_not_reinitialised(tmp_path):
    torch.manual_seed(0)
    model = build_model(_opt(tmp_path))
    model.feed_data({'gt': _patches()})
    model.optimize_parameters(1)
    model.save_network(model.net_g, 'net_g', 1)
    opt = _opt(tmp_path / 'b')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'net_g_1.pth')
    loaded = build_model(opt)
    net = loaded.get_bare_model(loaded.net_g)
    assert net.actnorm_initialised
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loaded.feed_data({'gt': _patches() * 0.3})
    assert loaded.initialise_actnorm() == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_gradients_are_clipped_by_value_then_norm(tmp_path):
    torch.manual_seed(0)
    model = build_model(_opt(tmp_path, train={'grad_clip_value': 1e-4, 'grad_clip_norm': 1e-3}))
    params = [p for p in model.net_g.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    model._clip_gradients(model.optimizer_g, (), {})
    grads = torch.cat([p.grad.flatten() for p in params])
    assert grads.abs().max() <= 1e-4 + 1e-12 and grads.norm() <= 1e-3 * (1 + 1e-5)
    model = build_model(_opt(tmp_path, train={'grad_clip_value': 1e-4, 'grad_clip_norm': None}))
    for p in model.net_g.parameters():
        if p.requires_grad:
            p.grad = torch.full_like(p, -3.0)
    model._clip_gradients(model.optimizer_g, (), {})
    assert all(torch.all(p.grad == -1e-4) for p in model.net_g.parameters() if p.requires_grad)


def test_test_gives_an_8bit_lr_and_heats_differ(tmp_path):
    torch.manual_seed(0)
    model = build_model(_opt(tmp_path, val={'heats': [0.0, 1.0]}, is_train=False))
    net = model.get_bare_model(model.net_g)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.feed_data({'gt': _patches()})
    model.test()
    assert model.lq.shape == (2, 3, 8, 8) and torch.equal(model.lq * 255, (model.lq * 255).round())
    cold = model.output
    model.val_heat = 1.0
    model.test()
    hot = model.output
    model.test()
    assert torch.equal(hot, model.output) and not torch.equal(hot, cold)  # seeded latents: repeatable


def test_validation_reports_every_heat(tmp_path):
    hr = tmp_path / 'hr'
    hr.mkdir()
    cv2.imwrite(str(hr / 'chelsea.png'), data.chelsea()[60:92, 100:132, ::-1])
    opt = _opt(tmp_path, is_train=False, val={'heats': [0.0, 1.0], 'metrics': {
        'psnr': {'type': 'calculate_psnr', 'crop_border': 4}}})
    model = build_model(opt)
    from basicsr.data import build_dataloader, build_dataset
    dataset = build_dataset({'name': 'tiny', 'type': 'HROnlyDataset', 'dataroot_gt': str(hr), 'phase': 'val',
                             'io_backend': {'type': 'disk'}, 'scale': 4})
    loader = build_dataloader(dataset, {'phase': 'val'}, num_gpu=0, dist=False)
    model.validation(loader, 0, None, save_img=False)
    assert set(model.best_metric_results) == {'tiny_heat0', 'tiny_heat1'}


def test_option_errors(tmp_path):
    with pytest.raises(OptionError, match=r'\[train\].*grad_clip'):
        build_model(_opt(tmp_path, train={'grad_clip': 5}))
    with pytest.raises(OptionError, match='heats'):
        build_model(_opt(tmp_path, val={'heats': []}))
    opt = _opt(tmp_path)
    opt['network_g']['scale'] = 2
    opt['network_g']['flow_steps'] = opt['network_g']['prior_steps'] = [1]
    with pytest.raises(OptionError, match=r'\[scale\]'):
        build_model(opt)


def _load(name):
    with open(REPO / 'options' / name) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


@pytest.mark.parametrize('name, scale', [('train_hcflow_x4.yml', 4), ('train_hcflow_x2.yml', 2),
                                         ('test_hcflow_x4.yml', 4), ('test_hcflow_x2.yml', 2)])
def test_option_files_validate(name, scale):
    opt = _load(name)
    assert opt['model_type'] == 'HCFlowModel' and opt['scale'] == scale == opt['network_g']['scale']
    validate_registered(opt['network_g'], 'network_g', ARCH_REGISTRY)
    val = HCFLOW_VAL_SCHEMA.validate(opt['val'], 'val')
    assert list(val['heats']) == [0.0, 1.0]
    assert all(m['crop_border'] == scale for m in val['metrics'].values())
    if 'train' in opt:
        train = HCFLOW_TRAIN_SCHEMA.validate(opt['train'], 'train')
        assert train['optim_g']['lr'] == 2.5e-4 and list(train['optim_g']['betas']) == [0.9, 0.99]
        assert train['lr_fit_opt']['loss_weight'] == 0.05 and train['latent_opt']['loss_weight'] == 1e-5
        assert train['grad_clip_value'] == 5 and train['grad_clip_norm'] == 100 and train['eps_std'] == 1.0
        assert opt['datasets']['train']['gt_size'] == 160 and opt['datasets']['train']['batch_size_per_gpu'] == 16


def test_hcd_option_file_validates_and_runs_hcd_with_the_hcflow_adapter(tmp_path):
    opt = _load('test_hcd_hcflow_x4.yml')
    hcd = HCD_SCHEMA.validate(opt['hcd'], 'hcd')
    assert hcd['steps_hr'] == hcd['steps_lr'] == 15 and opt['rescaler']['type'] in RESCALER_REGISTRY
    validate_registered(opt['network_g'], 'network_g', ARCH_REGISTRY)
    # the same file around a tiny net: HCDModel builds the adapter from it and improves the image
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('HCFlowNet')(**{k: v for k, v in TINY_NET.items() if k != 'type'})
    with torch.no_grad():  # a net that is not the identity-initialised flow
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    torch.save({'params': net.state_dict()}, tmp_path / 'hcflow.pth')
    opt.update(is_train=False, dist=False, rank=0, world_size=1, num_gpu=0, network_g=dict(TINY_NET))
    opt['path'] = {'pretrain_network_g': str(tmp_path / 'hcflow.pth'), 'visualization': str(tmp_path)}
    opt['hcd'] = dict(opt['hcd'], steps_hr=3, steps_lr=3, steps_list=None, step_size=0.02)
    model = build_model(opt)
    model.feed_data({'gt': _patches()})
    model.test()
    mse = ((model.output - model.gt)**2).flatten(1).mean(1)
    base = ((model.output_base - model.gt)**2).flatten(1).mean(1)
    assert (mse < base).all()
