"""Multi-process training equals single-process training, and resume equals no interruption.

For each model family, on CPU with gloo: 2 processes × batch 1 for K steps, validating along the way,
exit cleanly and give the parameters and validation metrics of 1 process × batch 2 on the same samples
with the same seed, and rank 0 alone writes files; HCD's test path likewise; a run interrupted
mid-epoch and resumed from its training state continues with exactly the losses and parameters of an
uninterrupted run; runs end at ``total_iter`` whatever the number of samples, batch and processes.
Option files are tiny versions of the families' real ones (tests/data_files/).
"""
import copy
import re
import shutil

import cv2
import pytest
import torch
import yaml
from skimage import data

from tests.models.run_helpers import (CONSOLE_SCRIPT, REPO_ROOT, assert_state_dicts_close, audited_writes,
                                      load_params, logged_losses, logged_metrics, run_training, write_options)

# family -> (option file, checkpoint labels of the trained networks, loss keys that must be logged)
FAMILIES = {
    'enhancer': ('train_uhdunet_tiny.yml', ['net_g'], ['l_pix']),
    'lmar': ('train_lmar_tiny.yml', ['net_g', 'net_d'], ['l_rc', 'l_fa', 'l_g_gan', 'l_d']),
    'car': ('train_car_tiny.yml', ['net_g', 'net_sr'], ['l_pix']),
    'irn': ('train_irn_tiny.yml', ['net_g'], ['l_total']),
    'hcflow': ('train_hcflow_tiny.yml', ['net_g'], ['l_lr_fit', 'l_latent', 'l_reconstruction', 'l_total']),
}


def _frozen_enhancer_checkpoint(opt, folder):
    """LMAR trains in front of a pretrained enhancer: a freshly initialised one stands in for it."""
    from basicsr.archs import build_network
    torch.manual_seed(1)
    enhancer = build_network(dict(opt['network_enhancer']))
    path = folder / 'enhancer.pth'
    torch.save({'params': enhancer.state_dict()}, path)
    return str(path)


def _options(family, folder):
    filename = FAMILIES[family][0]
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / filename).read_text())
    if 'network_enhancer' in opt:
        opt['path']['pretrain_network_enhancer'] = _frozen_enhancer_checkpoint(opt, folder)
    return opt


def _set_batch(opt, batch):
    opt['datasets']['train']['batch_size_per_gpu'] = batch


def _use_sgd(opt):
    """Gradient synchronisation is compared under SGD, where an update is linear in the gradient.

    Adam's first step is lr·sign(g): for parameters whose gradient is mathematically zero (a conv bias
    followed by instance norm) g is rounding noise, whose sign differs between an all-reduce and a batch
    mean, so Adam would turn 1e-10 differences into ±lr even though both runs compute the same thing.
    """
    for key, value in opt['train'].items():
        if key.startswith('optim_'):
            opt['train'][key] = {'type': 'SGD', 'lr': value.get('lr', 1e-3)}


def assert_only_rank_0_wrote(writes, experiment):
    """Rank 0 wrote the run's files (log, checkpoints, training state, validation images); rank 1 none."""
    assert writes[1] == [], writes[1][:10]
    written = {path for _, path in writes[0]}
    assert any(path.endswith('net_g_latest.pth') for path in written), sorted(written)
    assert any('/visualization/' in path for path in written), sorted(written)
    assert all(path.startswith(str(experiment.parent)) for path in written), sorted(written)  # experiments/


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_two_processes_with_validation_equal_one_process_with_double_batch(family, tmp_path):
    labels = FAMILIES[family][1]
    opt = _options(family, tmp_path)
    assert opt['val']['save_img'] and opt['val']['val_freq'] == 2  # validation mid-run (iteration 2) and at the end
    opt['train']['total_iter'] = 3
    opt['logger']['save_checkpoint_freq'] = 2
    _use_sgd(opt)

    distributed = copy.deepcopy(opt)
    distributed['name'] = f'{family}_ddp'
    _set_batch(distributed, 1)
    output = run_training(write_options(distributed, tmp_path, 'ddp.yml'), tmp_path, nproc=2,
                          audit_writes=tmp_path / 'writes')
    assert 'World size (gpu number): 2' in output
    assert_only_rank_0_wrote(audited_writes(tmp_path / 'writes', 2), tmp_path / 'experiments' / distributed['name'])

    single = copy.deepcopy(opt)
    single['name'] = f'{family}_single'
    _set_batch(single, 2)
    single_output = run_training(write_options(single, tmp_path, 'single.yml'), tmp_path, nproc=1)

    for label in labels:
        a = load_params(tmp_path / 'experiments' / distributed['name'] / 'models' / f'{label}_latest.pth')
        b = load_params(tmp_path / 'experiments' / single['name'] / 'models' / f'{label}_latest.pth')
        # Same arithmetic up to the order of the gradient sum (all-reduce vs batch mean).
        assert_state_dicts_close(a, b, rtol=1e-4, atol=2e-6)
    metrics, single_metrics = logged_metrics(output), logged_metrics(single_output)
    assert len(metrics) == 2 and [name for name, _ in metrics] == ['psnr', 'psnr'], metrics  # iteration 2, end
    assert [name for name, _ in single_metrics] == [name for name, _ in metrics]
    for (_, value), (_, expected) in zip(metrics, single_metrics):
        assert value == pytest.approx(expected, abs=2e-3)


def _hcd_test_options(tmp_path):
    """HCD around a tiny IRN x2 (fresh weights: a box-average rescaler) on two 32x32 crops."""
    from basicsr_lmar.archs.irn_arch import InvRescaleNet
    hr = tmp_path / 'hr'
    hr.mkdir()
    cv2.imwrite(str(hr / 'chelsea.png'), data.chelsea()[60:92, 100:132, ::-1])
    cv2.imwrite(str(hr / 'coffee.png'), data.coffee()[100:132, 200:232, ::-1])
    torch.manual_seed(0)
    torch.save({'params': InvRescaleNet(scale=2, block_num=[1], growth=4).state_dict()}, tmp_path / 'irn.pth')
    return {
        'name': 'tiny_hcd', 'model_type': 'HCDModel', 'scale': 2, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'test_1': {'name': 'tiny', 'type': 'HROnlyDataset', 'dataroot_gt': str(hr),
                                'io_backend': {'type': 'disk'}}},
        'network_g': {'type': 'InvRescaleNet', 'scale': 2, 'block_num': [1], 'growth': 4},
        'path': {'pretrain_network_g': str(tmp_path / 'irn.pth')},
        'rescaler': {'type': 'IRNRescaler', 'z_policy': 'zero'},
        'hcd': {'steps_hr': 1, 'steps_lr': 1, 'epsilon': 0.05, 'step_size': 0.01, 'seed': 0},
        'val': {'save_img': True, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2}}},
    }


@pytest.mark.slow
def test_hcd_test_path_on_two_processes_equals_one_process(tmp_path):
    opt = _hcd_test_options(tmp_path)
    test_script = CONSOLE_SCRIPT.parent / 'basicsr-lmar-test'  # results under the working directory
    distributed = dict(opt, name='hcd_ddp')
    output = run_training(write_options(distributed, tmp_path, 'ddp.yml'), tmp_path, nproc=2, entry=test_script,
                          audit_writes=tmp_path / 'writes')
    writes = audited_writes(tmp_path / 'writes', 2)
    assert writes[1] == [], writes[1][:10]
    assert any('/results/hcd_ddp/visualization/tiny' in path for _, path in writes[0]), writes[0]
    single_output = run_training(write_options(dict(opt, name='hcd_single'), tmp_path, 'single.yml'), tmp_path,
                                 entry=test_script)
    psnr = [(name, value) for name, value in logged_metrics(output) if name.startswith('psnr')]
    expected = [(name, value) for name, value in logged_metrics(single_output) if name.startswith('psnr')]
    assert {name for name, _ in psnr} == {'psnr_base', 'psnr_hcd1', 'psnr_gain_hcd1'}
    assert psnr == expected
    for name in ('chelsea_hcd_ddp_LR_hcd1.png', 'coffee_hcd_ddp_SR_base.png'):
        assert (tmp_path / 'results' / 'hcd_ddp' / 'visualization' / 'tiny' / name).is_file()


def _last_iteration(output):
    return max(int(match) for match in re.findall(r'iter:\s+(\d+),', output))


@pytest.mark.slow
@pytest.mark.parametrize('nproc, samples, batch, total_iter', [(1, 5, 2, 30), (2, 6, 2, 6)])
def test_runs_reach_total_iter_when_batches_do_not_divide_the_samples(tmp_path, nproc, samples, batch, total_iter):
    """Two cases where basicsr's loop alone ends at 22 and 4 (its loader drops the incomplete last batch of
    every epoch that its iteration count includes)."""
    opt = _options('irn', tmp_path)
    opt.pop('val')
    opt['datasets'] = {'train': opt['datasets']['train']}
    opt['datasets']['train'].update(num_samples=samples, batch_size_per_gpu=batch)
    opt['train']['total_iter'] = total_iter
    opt['logger'].update(print_freq=1, save_checkpoint_freq=1000)
    output = run_training(write_options(opt, tmp_path, 'irn.yml'), tmp_path, nproc=nproc)
    assert _last_iteration(output) == total_iter
    assert 'training stopped at iteration' not in output


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_resume_mid_epoch_is_exact(family, tmp_path):
    labels, loss_keys = FAMILIES[family][1], FAMILIES[family][2]
    opt = _options(family, tmp_path)
    opt.pop('val', None)
    opt['datasets'] = {'train': opt['datasets']['train']}
    opt['name'] = f'{family}_resume'
    _set_batch(opt, 2)
    opt['datasets']['train']['num_samples'] = 8  # 4 iterations per epoch: the checkpoint at 2 is mid-epoch
    opt['train']['total_iter'] = 5
    opt['logger']['save_checkpoint_freq'] = 2
    opt['logger']['print_freq'] = 1
    models = tmp_path / 'experiments' / opt['name'] / 'models'

    uninterrupted = run_training(write_options(opt, tmp_path, 'full.yml'), tmp_path)
    for label in labels:
        shutil.copy(models / f'{label}_latest.pth', tmp_path / f'{label}_uninterrupted.pth')

    resumed_opt = copy.deepcopy(opt)
    resumed_opt['path']['resume_state'] = str(tmp_path / 'experiments' / opt['name'] / 'training_states' / '2.state')
    resumed = run_training(write_options(resumed_opt, tmp_path, 'resume.yml'), tmp_path)
    assert 'Resuming training from epoch: 0, iter: 2' in resumed

    for iteration in (3, 4, 5):
        expected, got = logged_losses(uninterrupted, iteration), logged_losses(resumed, iteration)
        assert set(loss_keys) <= set(expected)
        assert got == expected, f'iteration {iteration}'
    for label in labels:
        assert_state_dicts_close(load_params(tmp_path / f'{label}_uninterrupted.pth'),
                                 load_params(models / f'{label}_latest.pth'))
