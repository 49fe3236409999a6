import copy
import os
import subprocess
import sys

import pytest
import torch
import yaml
from basicsr.utils.registry import MODEL_REGISTRY
from torch.utils.data import DataLoader

import basicsr_lmar  # noqa: F401  (registers the plugin)
from basicsr_lmar.data.skimage_dataset import SkimagePhotoDataset
from basicsr_lmar.ops.rounding import quantize_8bit
from basicsr_lmar.options import OptionError
from tests.conftest import REPO_ROOT, linked_package

TINY = REPO_ROOT / 'tests' / 'data_files' / 'train_car_tiny.yml'


def tiny_opt(tmp_path, **changes):
    opt = yaml.safe_load(TINY.read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'),
                       visualization=str(tmp_path / 'visualization'), experiments_root=str(tmp_path))
    for key, value in changes.items():
        opt[key] = value
    return opt


def hr_batch(n=2, size=32, seed=0):
    data = SkimagePhotoDataset(dict(name='t', phase='train', split='train', degradation='none', gt_size=size,
                                    num_samples=n, seed=seed))
    return {'gt': torch.stack([data[i]['gt'] for i in range(n)])}


def fixed_batch_l1(model, batch):
    model.feed_data(batch)
    model.test()
    return float((model.output - model.gt).abs().mean())


@pytest.mark.parametrize('upscaler', ['edsr', 'bicubic'])
def test_joint_iterations_lower_l1(tmp_path, upscaler):
    torch.manual_seed(0)
    changes = {'network_sr': None, 'upscaler': 'bicubic'} if upscaler == 'bicubic' else {}
    model = MODEL_REGISTRY.get('CARModel')(tiny_opt(tmp_path, **changes))
    assert model.sr_trainable is (upscaler == 'edsr')
    batch = hr_batch()
    before = fixed_batch_l1(model, batch)
    sr_before = [p.detach().clone() for p in model.net_sr.parameters()]
    for it in range(12):
        model.feed_data(batch)
        model.optimize_parameters(it + 1)
    assert {'l_pix', 'l_offset', 'l_tv', 'l_total'} <= set(model.log_dict)
    after = fixed_batch_l1(model, batch)
    assert after < before * 0.9, (before, after)
    moved = any(not torch.equal(a, b) for a, b in zip(sr_before, model.net_sr.parameters()))
    assert moved is (upscaler == 'edsr')  # joint update of both nets; the bicubic upscaler has no parameters


def test_test_time_lr_is_8_bit_and_validation_saves_lr(tmp_path):
    model = MODEL_REGISTRY.get('CARModel')(tiny_opt(tmp_path))
    data = SkimagePhotoDataset(dict(name='skimage_heldout', phase='val', split='heldout', photos=['chelsea'],
                                    degradation='none'))
    loader = DataLoader(data, batch_size=1)
    model.validation(loader, current_iter=3, tb_logger=None, save_img=True)
    assert 0 < model.metric_results['psnr'] < 100
    folder = tmp_path / 'visualization' / 'chelsea'
    lr = folder / 'chelsea_3_lr.png'
    assert lr.is_file() and (folder / 'chelsea_3.png').is_file()
    import cv2
    assert cv2.imread(str(lr)).shape == (296 // 4, 448 // 4, 3)  # 300x451 cropped to multiples of 8
    model.feed_data({'gt': data[0]['gt'][None]})
    model.test()
    levels = model.lq * 255
    torch.testing.assert_close(levels, levels.round())


def test_soft_round_gradient_and_modes():
    x = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64, requires_grad=True)
    soft = quantize_8bit(x, 'soft', alpha=0.9)
    grad, = torch.autograd.grad(soft.sum(), x)
    assert torch.isfinite(grad).all() and (grad > 0).all()  # monotonic for alpha < 1
    sharp = quantize_8bit(x, 'soft', alpha=1.0).detach()
    hard = quantize_8bit(x, 'round')
    # soft rounding moves values towards the grid, more for larger alpha; alpha -> 0 is the identity
    distance = lambda y: (y.detach() - hard).abs().mean()  # noqa: E731
    assert distance(sharp) < distance(soft) < distance(x)
    torch.testing.assert_close(quantize_8bit(x, 'soft', alpha=1e-4).detach(), x.detach(), atol=1e-6, rtol=0)
    ste = quantize_8bit(x, 'ste')
    torch.testing.assert_close(ste.detach(), hard)
    grad, = torch.autograd.grad(ste.sum(), x)
    torch.testing.assert_close(grad, torch.ones_like(grad))


def test_option_errors_name_the_section(tmp_path):
    with pytest.raises(OptionError, match=r'\[network_sr\].*upscaler: bicubic'):
        MODEL_REGISTRY.get('CARModel')(tiny_opt(tmp_path, network_sr=None))
    opt = tiny_opt(tmp_path)
    opt['network_g']['scale'] = 2
    with pytest.raises(OptionError, match=r'\[network_g\] scale 2 differs'):
        MODEL_REGISTRY.get('CARModel')(opt)
    opt = tiny_opt(tmp_path)
    opt['train']['lr_rounding'] = 'hard'
    with pytest.raises(OptionError, match=r'\[train\].*lr_rounding'):
        MODEL_REGISTRY.get('CARModel')(opt)
    opt = tiny_opt(tmp_path)
    opt['train']['offset_opt']['type'] = 'L1Loss'
    with pytest.raises(OptionError, match=r'\[train.offset_opt\] type must be CAROffsetLoss'):
        MODEL_REGISTRY.get('CARModel')(opt)
    opt = tiny_opt(tmp_path)
    opt['network_sr']['upscale'] = 2
    model = MODEL_REGISTRY.get('CARModel')(opt)
    model.feed_data(hr_batch(1))
    with pytest.raises(ValueError, match=r'\[network_sr\] output shape'):
        model.optimize_parameters(1)


@pytest.mark.slow
def test_train_entry_runs_car(tmp_path):
    opt = yaml.safe_load(TINY.read_text())
    opt['name'] = 'debug_car_entry'
    options = tmp_path / 'car.yml'
    options.write_text(yaml.safe_dump(opt))
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO_ROOT))
    # python basicsr_lmar/train.py writes under the folder above the package: reached through a link here
    checkout = linked_package(tmp_path / 'checkout', REPO_ROOT / 'basicsr_lmar')
    root = checkout / 'experiments' / opt['name']
    result = subprocess.run([sys.executable, str(checkout / 'basicsr_lmar' / 'train.py'), '-opt', str(options)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert 'l_offset' in output and '# psnr' in output
    assert (root / 'models' / 'net_sr_latest.pth').is_file() and (root / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.parametrize('name', ['train_car_edsr_x2', 'train_car_edsr_x4', 'train_car_bicubic_x4',
                                  'test_car_edsr_x2', 'test_car_edsr_x4', 'test_car_bicubic_x4'])
def test_shipped_options_validate(name):
    from basicsr.utils.options import ordered_yaml
    opt = yaml.load((REPO_ROOT / 'options' / f'{name}.yml').read_text(), Loader=ordered_yaml()[0])
    opt['is_train'] = name.startswith('train')
    MODEL_REGISTRY.get('CARModel').validate_options(opt)
    scale = opt['scale']
    assert opt['network_g']['scale'] == scale
    for metric in opt['val']['metrics'].values():
        assert metric['crop_border'] == scale and metric['test_y_channel']
    if opt['is_train']:
        assert opt['datasets']['train']['gt_size'] == {2: 96, 4: 192}[scale]
        assert opt['train']['optim_g']['betas'] == [0.9, 0.999] and opt['train']['optim_g']['eps'] == 1e-6
        # the paper's clamped head from the box start, trained on the 8-bit values of test time
        assert opt['network_g']['kernel_init'] == 'box' and opt['train']['lr_rounding'] == 'soft_ste'


def test_optim_sr_gives_the_sr_network_its_own_optimizer_scheduler_and_resumable_state(tmp_path):
    """train.optim_sr: optimizer_g updates network_g alone, optimizer_sr network_sr at its own learning rate;
    basicsr builds a scheduler per optimizer and the training state carries both, in that order."""
    opt = tiny_opt(tmp_path)
    opt['train']['optim_sr'] = {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999]}
    opt['train']['scheduler']['milestones'] = [2]
    torch.manual_seed(0)
    model = MODEL_REGISTRY.get('CARModel')(copy.deepcopy(opt))
    assert model.optimizers == [model.optimizer_g, model.optimizer_sr] and len(model.schedulers) == 2
    ids = lambda net: {id(p) for p in net.parameters()}  # noqa: E731
    assert {id(p) for group in model.optimizer_g.param_groups for p in group['params']} == ids(model.net_g)
    assert {id(p) for group in model.optimizer_sr.param_groups for p in group['params']} == ids(model.net_sr)
    before = [[p.detach().clone() for p in net.parameters()] for net in (model.net_g, model.net_sr)]
    for it in (1, 2, 3):
        model.update_learning_rate(it)
        model.feed_data(hr_batch())
        model.optimize_parameters(it)
    for net, old in zip((model.net_g, model.net_sr), before):
        assert any(not torch.equal(a, b) for a, b in zip(old, net.parameters()))  # both networks trained
    assert [o.param_groups[0]['lr'] for o in model.optimizers] == [5e-4, 5e-5]  # halved at the milestone
    (tmp_path / 'states').mkdir()
    model.save_training_state(0, 3)
    state = torch.load(tmp_path / 'states' / '3.state', weights_only=False)
    resumed = MODEL_REGISTRY.get('CARModel')(copy.deepcopy(opt))
    resumed.resume_training(state)
    assert [o.param_groups[0]['lr'] for o in resumed.optimizers] == [5e-4, 5e-5]
    assert resumed.optimizer_sr.state_dict()['state'].keys() == model.optimizer_sr.state_dict()['state'].keys()
    opt['network_sr'], opt['upscaler'] = None, 'bicubic'
    with pytest.raises(OptionError, match=r'\[train\] optim_sr is set but network_sr is ~'):
        MODEL_REGISTRY.get('CARModel')(opt)


def test_without_optim_sr_one_optimizer_updates_both_networks(tmp_path):
    model = MODEL_REGISTRY.get('CARModel')(tiny_opt(tmp_path))
    assert model.optimizers == [model.optimizer_g] and not hasattr(model, 'optimizer_sr')
    assert len(model.optimizer_g.param_groups[0]['params']) == len(list(model.net_g.parameters())) + len(
        list(model.net_sr.parameters()))


def test_optimizer_networks_and_optimizer_labels_must_agree(tmp_path):
    """The labels a resume is checked against (optimizer_labels, from the options) are the optimizers built."""
    car_model = MODEL_REGISTRY.get('CARModel')

    class OwnSROptimizer(car_model):
        def optimizer_networks(self):
            return {'g': [self.net_g], 'sr': [self.net_sr]}

    with pytest.raises(TypeError, match=r"OwnSROptimizer: optimizer_networks\(\) has the labels \['g', 'sr'\], "
                                        r"optimizer_labels\(\) \['g'\]; a model that overrides one overrides the other"):
        OwnSROptimizer(tiny_opt(tmp_path))


def test_loss_crop_border_leaves_the_border_out_of_the_pixel_loss(tmp_path):
    opt = tiny_opt(tmp_path)
    opt['train']['loss_crop_border'] = 4
    model = MODEL_REGISTRY.get('CARModel')(opt)
    output = torch.rand(1, 3, 32, 32, requires_grad=True)
    gt = torch.rand(1, 3, 32, 32)
    loss = model.pixel_losses(output, gt)['l_pix']
    torch.testing.assert_close(loss, (output[..., 4:-4, 4:-4] - gt[..., 4:-4, 4:-4]).abs().mean())
    loss.backward()
    inner = torch.zeros_like(gt, dtype=torch.bool)
    inner[..., 4:-4, 4:-4] = True
    assert output.grad[~inner].abs().max() == 0 and output.grad[inner].abs().min() > 0
    model.feed_data(hr_batch())
    model.optimize_parameters(1)
    assert {'l_pix', 'l_offset', 'l_tv', 'l_total'} <= set(model.log_dict)
    opt = tiny_opt(tmp_path)
    opt['train']['loss_crop_border'] = 16
    with pytest.raises(OptionError, match=r'\[train\] loss_crop_border 16 leaves nothing of the 32x32 training crop '
                                          r'\(datasets.train.gt_size\); use at most 15'):
        MODEL_REGISTRY.get('CARModel')(opt)
    opt['train']['loss_crop_border'] = -1
    with pytest.raises(OptionError, match=r"\[train\].*'loss_crop_border'.*>= 0"):
        MODEL_REGISTRY.get('CARModel')(opt)


RESIDUAL = {'type': 'ResidualDownscaler', 'scale': 4, 'num_feat': 4}


def without_car_losses(opt):
    opt['train']['offset_opt'] = opt['train']['tv_opt'] = None
    return opt


def parameters(net):
    return [p.detach().clone() for p in net.parameters()]


def moved(before, net):
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_lr_rounding_modes_come_from_the_quantiser_and_soft_ste_is_the_default(tmp_path):
    from basicsr_lmar.models.car_model import CARModel
    from basicsr_lmar.ops.rounding import QUANTIZE_MODES

    assert set(CARModel.option_schemas['train'].options['lr_rounding'].choices) == set(QUANTIZE_MODES) - {'round'}
    opt = tiny_opt(tmp_path)
    del opt['train']['lr_rounding']
    model = MODEL_REGISTRY.get('CARModel')(opt)
    assert model.options.train.lr_rounding == 'soft_ste'
    model.feed_data(hr_batch())
    losses = model.training_losses(1)
    levels = model.lq.detach() * 255
    torch.testing.assert_close(levels, levels.round())  # training sees the values test-time rounding gives
    losses['l_pix'].backward()
    assert model.net_g.kernel_head[-1].weight.grad.abs().sum() > 0  # and the resampler still gets a gradient
    opt = tiny_opt(tmp_path)
    opt['train']['lr_rounding'] = 'round'
    with pytest.raises(OptionError, match=r'\[train\].*lr_rounding.*soft_ste'):
        MODEL_REGISTRY.get('CARModel')(opt)


def test_residual_downscaler_trains_with_the_sr_network_and_refuses_car_losses(tmp_path):
    torch.manual_seed(0)
    model = MODEL_REGISTRY.get('CARModel')(without_car_losses(tiny_opt(tmp_path, network_g=dict(RESIDUAL))))
    batch = hr_batch()
    before_l1, g_before, sr_before = fixed_batch_l1(model, batch), parameters(model.net_g), parameters(model.net_sr)
    for it in range(12):
        model.feed_data(batch)
        model.optimize_parameters(it + 1)
    assert set(model.log_dict) == {'l_pix', 'l_total', 'nonfinite_skips'}
    assert fixed_batch_l1(model, batch) < before_l1 * 0.9
    assert moved(g_before, model.net_g) and moved(sr_before, model.net_sr)
    assert model.content_adaptivity() == {}  # no kernels to measure
    for key, loss in (('offset_opt', 'CAROffsetLoss'), ('tv_opt', 'PartialTVLoss')):
        opt = without_car_losses(tiny_opt(tmp_path, network_g=dict(RESIDUAL)))
        opt['train'][key] = {'type': loss, 'loss_weight': 1e-3}
        with pytest.raises(OptionError, match=rf"\[train.{key}\] {loss} regularises CAR's offsets, which network_g "
                                              rf'ResidualDownscaler does not have; set {key}: ~'):
            MODEL_REGISTRY.get('CARModel')(opt)
    opt = without_car_losses(tiny_opt(tmp_path, network_g={'type': 'EDSR', 'upscale': 4}))
    with pytest.raises(OptionError, match=r'\[network_g\] type must be CARResamplerNet or ResidualDownscaler'):
        MODEL_REGISTRY.get('CARModel')(opt)


def test_bicubic_downscaler_has_no_optimizer_and_the_sr_network_starts_alike_for_every_downscaler(tmp_path):
    """Runs with one seed that differ only in network_g start from the same SR network; bicubic downscaling
    (ResidualDownscaler channels: none) is not trained and gives the 8-bit bicubic LR."""
    from basicsr_lmar.ops.resize import resize

    starts = []
    for network_g in (dict(RESIDUAL, channels='none'), dict(RESIDUAL), None):
        torch.manual_seed(0)
        opt = tiny_opt(tmp_path)
        opt['train']['optim_sr'] = {'type': 'Adam', 'lr': 1e-3}
        if network_g is not None:
            opt = without_car_losses(tiny_opt(tmp_path, network_g=network_g))
            opt['train']['optim_sr'] = {'type': 'Adam', 'lr': 1e-3}
        model = MODEL_REGISTRY.get('CARModel')(opt)
        starts.append(model.net_sr.state_dict())
        if network_g == dict(RESIDUAL, channels='none'):
            bicubic_model = model
    for other in starts[1:]:
        assert all(torch.equal(other[key], starts[0][key]) for key in starts[0])
    model = bicubic_model
    assert model.optimizers == [model.optimizer_sr] and not hasattr(model, 'optimizer_g')
    batch = hr_batch()
    model.feed_data(batch)
    model.test()
    hr = model.gt
    expected = torch.round(resize(hr, (hr.shape[-2] // 4, hr.shape[-1] // 4), 'bicubic', antialias=True,
                                  boundary='reflect').clamp(0, 1) * 255) / 255
    torch.testing.assert_close(model.lq, expected)
    sr_before = parameters(model.net_sr)
    model.optimize_parameters(1)
    assert moved(sr_before, model.net_sr)
    opt = without_car_losses(tiny_opt(tmp_path, network_g=dict(RESIDUAL, channels='none'), network_sr=None,
                                      upscaler='bicubic'))
    with pytest.raises(OptionError, match=r'\[network_g\] ResidualDownscaler has no parameters and network_sr is ~'):
        MODEL_REGISTRY.get('CARModel')(opt)


def test_train_g_false_trains_the_sr_network_on_a_fixed_resampler(tmp_path):
    torch.manual_seed(0)
    trained = MODEL_REGISTRY.get('CARModel')(tiny_opt(tmp_path))
    weights = tmp_path / 'net_g.pth'
    torch.save({'params': trained.net_g.state_dict()}, weights)
    opt = without_car_losses(tiny_opt(tmp_path))
    opt['train']['train_g'] = False
    opt['path']['pretrain_network_g'] = str(weights)
    model = MODEL_REGISTRY.get('CARModel')(copy.deepcopy(opt))
    assert model.optimizers == [model.optimizer_g]
    assert {id(p) for p in model.optimizer_g.param_groups[0]['params']} == {id(p) for p in model.net_sr.parameters()}
    g_before, sr_before = parameters(model.net_g), parameters(model.net_sr)
    for it in range(3):
        model.feed_data(hr_batch())
        model.optimize_parameters(it + 1)
    assert not moved(g_before, model.net_g) and moved(sr_before, model.net_sr)
    assert all(torch.equal(a, b) for a, b in zip(g_before, trained.net_g.parameters()))  # as loaded
    model.feed_data(hr_batch())
    model.test()
    assert set(model.content_adaptivity()) == {'kernel_spread', 'offset_length'}
    assert not model.net_g.training and model.net_sr.training  # validation leaves the modes as they were
    opt['path']['pretrain_network_g'] = None
    with pytest.raises(OptionError, match=r'\[train\] train_g: false keeps network_g as loaded, but '
                                          r'path.pretrain_network_g is not set'):
        MODEL_REGISTRY.get('CARModel')(opt)
    opt = tiny_opt(tmp_path)
    opt['train']['train_g'] = False
    opt['path']['pretrain_network_g'] = str(weights)
    with pytest.raises(OptionError, match=r'\[train.offset_opt\] CAROffsetLoss trains the resampler, which '
                                          r'train_g: false keeps fixed'):
        MODEL_REGISTRY.get('CARModel')(opt)
