"""Multi-process training equals single-process training, and resume equals no interruption.

For each model family, on CPU with gloo: 2 processes × batch 1 for K steps give the parameters of
1 process × batch 2 on the same samples with the same seed; a run interrupted mid-epoch and resumed
from its training state continues with exactly the losses and parameters of an uninterrupted run.
Option files are tiny versions of the families' real ones (tests/data_files/).
"""
import copy
import shutil

import pytest
import torch
import yaml

from tests.models.run_helpers import (REPO_ROOT, assert_state_dicts_close, load_params, logged_losses, run_training,
                                      write_options)

# family -> (option file, checkpoint labels of the trained networks, loss keys that must be logged)
FAMILIES = {
    'enhancer': ('train_uhdunet_tiny.yml', ['net_g'], ['l_pix']),
    'lmar': ('train_lmar_tiny.yml', ['net_g', 'net_d'], ['l_rc', 'l_fa', 'l_g_gan', 'l_d']),
    'car': ('train_car_tiny.yml', ['net_g', 'net_sr'], ['l_pix']),
    'irn': ('train_irn_tiny.yml', ['net_g'], ['l_total']),
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


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_two_processes_equal_one_process_with_double_batch(family, tmp_path):
    labels = FAMILIES[family][1]
    opt = _options(family, tmp_path)
    opt.pop('val', None)
    opt['datasets'] = {'train': opt['datasets']['train']}
    opt['train']['total_iter'] = 3
    opt['logger']['save_checkpoint_freq'] = 1000
    _use_sgd(opt)

    distributed = copy.deepcopy(opt)
    distributed['name'] = f'{family}_ddp'
    _set_batch(distributed, 1)
    output = run_training(write_options(distributed, tmp_path, 'ddp.yml'), tmp_path, nproc=2)
    assert 'World size (gpu number): 2' in output

    single = copy.deepcopy(opt)
    single['name'] = f'{family}_single'
    _set_batch(single, 2)
    run_training(write_options(single, tmp_path, 'single.yml'), tmp_path, nproc=1)

    for label in labels:
        a = load_params(tmp_path / 'experiments' / distributed['name'] / 'models' / f'{label}_latest.pth')
        b = load_params(tmp_path / 'experiments' / single['name'] / 'models' / f'{label}_latest.pth')
        # Same arithmetic up to the order of the gradient sum (all-reduce vs batch mean).
        assert_state_dicts_close(a, b, rtol=1e-4, atol=2e-6)


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
