import collections
import contextlib
import logging
import math
import os
import random
import sys

import numpy as np
import pytest
import torch
import yaml
from basicsr.models.lr_scheduler import MultiStepRestartLR
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from basicsr_lmar.models.plugin_mixin import PluginModelMixin
from basicsr_lmar.runtime.resume import (ResumableEnlargedSampler, ResumeStateError, capture_rng_state,
                                         changed_model_sections, check_resume_state_model, load_resume_state,
                                         model_record, plain_state, read_training_state, remove_partial_saves,
                                         repaired_stock_resume, restore_rng_state, warn_if_model_options_changed)
from tests.conftest import REPO_ROOT


@contextlib.contextmanager
def chdir(folder):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


class _Dataset(torch.utils.data.Dataset):

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return index


def test_sampler_skips_once_and_restores_rng_when_indices_are_first_requested():
    sampler = ResumableEnlargedSampler(_Dataset(), num_replicas=1, rank=0, ratio=1)
    sampler.set_epoch(3)
    full = list(sampler)
    torch.manual_seed(123)
    state = capture_rng_state()
    expected_draw = torch.rand(1)
    torch.manual_seed(999)
    sampler.resume_once(4, state)
    assert list(sampler) == full[4:]
    torch.testing.assert_close(torch.rand(1), expected_draw)  # restored at iteration start
    assert list(sampler) == full  # only once


def test_rng_state_round_trip_covers_python_numpy_torch():
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_rng_state_loads_with_weights_only(tmp_path):
    np.random.seed(5)
    np.random.randn()  # a cached Gaussian in numpy's state too
    state = capture_rng_state()
    torch.save({'rng': state}, tmp_path / 'state')
    loaded = torch.load(tmp_path / 'state', weights_only=True)['rng']
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item())
    restore_rng_state(loaded)
    assert (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item()) == expected


class _Sized(torch.utils.data.Dataset):

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return index


@pytest.mark.parametrize('samples, batch, world, ratio', [(5, 2, 1, 1), (6, 2, 2, 1), (7, 3, 2, 1), (5, 4, 3, 2),
                                                          (8, 2, 2, 1), (1, 4, 1, 1)])
def test_filled_epochs_have_the_iterations_basicsr_counts_and_cover_every_sample(samples, batch, world, ratio):
    """basicsr's loop counts ceil(samples x ratio / (batch x world)) iterations per epoch; with the last
    batch filled, the drop_last loader of every rank yields exactly that many, covering every sample."""
    dataset = _Sized(samples)
    expected = math.ceil(samples * ratio / (batch * world))
    seen = set()
    for rank in range(world):
        sampler = ResumableEnlargedSampler(dataset, num_replicas=world, rank=rank, ratio=ratio)
        sampler.fill_last_batch(batch)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True)
        batches = list(loader)
        assert len(loader) == len(batches) == expected
        seen |= {int(i) for b in batches for i in b}
    assert seen == set(range(samples))


def test_partial_saves_are_recognised_by_their_suffix(tmp_path):
    for name in ('3.state.tmp123', 'net_g_3.pth.tmp9', 'net_g_3.pth', '3.state', 'notes.tmp', 'x.tmp12a'):
        (tmp_path / name).write_bytes(b'')
    assert remove_partial_saves(tmp_path) == ['3.state.tmp123', 'net_g_3.pth.tmp9']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['3.state', 'net_g_3.pth', 'notes.tmp', 'x.tmp12a']


# ------------------------------------------------------------------------ the training state's format
class _ProbeModel(PluginModelMixin, SRModel):
    """The mixin on basicsr's SRModel (net_g built, the options every model shares), with basicsr's multi-step
    scheduler."""

    def init_training_settings(self):
        self.optimizers = [torch.optim.Adam(self.net_g.parameters(), lr=1.0)]
        self.schedulers = [MultiStepRestartLR(self.optimizers[0], milestones=[2, 2, 4], gamma=0.5)]


def _probe_opt(tmp_path, model_type='CARModel', num_feat=2):
    return {'name': 'probe', 'model_type': model_type, 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
            'manual_seed': 0, 'world_size': 1, 'rank': 0, 'auto_resume': False, 'train': {'total_iter': 10},
            'path': {'models': str(tmp_path), 'training_states': str(tmp_path), 'resume_state': None},
            'network_g': {'type': 'UHDUNet', 'model_channel': num_feat}}


def _lrs(model, steps):
    rates = []
    for _ in range(steps):
        model.optimizers[0].step()
        model.update_learning_rate(0)
        rates.append(model.optimizers[0].param_groups[0]['lr'])
    return rates


def test_training_state_loads_weights_only_and_resumes_the_schedulers_milestones(tmp_path):
    """The state of a plugin model holds no Counter (which torch 2.1's weights-only loader refuses); resuming
    gives the scheduler back its Counter and the learning rates of an uninterrupted run."""
    uninterrupted = _ProbeModel(_probe_opt(tmp_path))
    expected = _lrs(uninterrupted, 6)
    model = _ProbeModel(_probe_opt(tmp_path))
    _lrs(model, 3)
    model.save_training_state(epoch=0, current_iter=3)
    raw = torch.load(tmp_path / '3.state', weights_only=True)
    assert type(raw['schedulers'][0]['milestones']) is dict and raw['schedulers'][0]['milestones'] == {2: 2, 4: 1}
    assert raw['model'] == model_record(_probe_opt(tmp_path)) and raw['model']['model_type'] == 'CARModel'
    opt = _probe_opt(tmp_path)
    opt['path']['resume_state'] = str(tmp_path / '3.state')
    resume_state = load_resume_state(opt)
    assert resume_state['schedulers'][0]['milestones'] == collections.Counter({2: 2, 4: 1})
    resumed = _ProbeModel(_probe_opt(tmp_path))
    resumed.resume_training(resume_state)
    assert type(resumed.schedulers[0].milestones) is collections.Counter
    assert _lrs(resumed, 3) == expected[3:]


def test_plain_state_keeps_tensors_and_ordered_dicts():
    state = {'a': collections.Counter({1: 2}), 'b': [collections.OrderedDict(x=torch.ones(1))], 'c': (1, 'text')}
    plain = plain_state(state)
    assert type(plain['a']) is dict and type(plain['b'][0]) is collections.OrderedDict
    assert plain['b'][0]['x'] is state['b'][0]['x'] and plain['c'] == (1, 'text')


def _state_file(path, model_type='HCFlowModel', **options):
    record = model_record({'model_type': model_type, 'scale': 4, 'network_g': {'type': 'X', **options}})
    torch.save({'epoch': 0, 'iter': 10, 'optimizers': [], 'schedulers': [], 'model': record}, path)
    return path


def test_another_models_state_is_refused_by_name(tmp_path):
    state = _state_file(tmp_path / '10.state')
    opt = {'model_type': 'CARModel', 'scale': 4, 'network_g': {'type': 'X'}, 'path': {'resume_state': str(state)}}
    with pytest.raises(ResumeStateError) as info:
        check_resume_state_model(opt)
    assert str(info.value).startswith(f'path.resume_state: {state} was written by HCFlowModel, this option file '
                                      'trains CARModel; point path.resume_state at a state of a CARModel run')
    opt['model_type'] = 'HCFlowModel'
    check_resume_state_model(opt)  # its own model: accepted
    _state_file(state, model_type=None)
    torch.save({'epoch': 0, 'iter': 10, 'optimizers': [], 'schedulers': []}, state)  # no record (basicsr's own)
    check_resume_state_model(opt)


def test_auto_resume_refuses_another_models_latest_state(tmp_path):
    folder = tmp_path / 'experiments' / 'run' / 'training_states'
    folder.mkdir(parents=True)
    _state_file(folder / '10.state')
    opt = {'name': 'run', 'model_type': 'CARModel', 'auto_resume': True, 'root_path': str(tmp_path), 'num_gpu': 0,
           'path': {}}
    with pytest.raises(ResumeStateError, match=r'was written by HCFlowModel, this option file trains CARModel; '
                                               r'--auto_resume took the latest state of this run name'):
        load_resume_state(opt)


def test_changed_network_options_are_named_in_a_warning(tmp_path):
    state = torch.load(_state_file(tmp_path / '10.state', num_feat=8), weights_only=True)
    opt = {'model_type': 'HCFlowModel', 'scale': 4, 'network_g': {'type': 'X', 'num_feat': 8},
           'path': {'resume_state': 'x/10.state'}}
    assert changed_model_sections(state['model'], opt) == []
    opt['network_g']['num_feat'] = 16
    opt['network_d'] = {'type': 'Y'}
    assert changed_model_sections(state['model'], opt) == ['network_d', 'network_g']
    records = []
    logger = logging.getLogger('test_resume_warning')
    logger.addHandler(logging.Handler())
    logger.handle = records.append
    warn_if_model_options_changed(opt, state, logger)
    assert [r.getMessage() for r in records] == [
        'path.resume_state: x/10.state was written with other options in network_d, network_g than this option '
        "file has; the run resumes with this file's options."]


def test_unreadable_states_are_named(tmp_path):
    (tmp_path / 'text.state').write_text('not a state')
    with pytest.raises(ResumeStateError, match=r'text.state is not a file that torch.save writes'):
        read_training_state(tmp_path / 'text.state')
    torch.save({'iter': 1, 'rng': np.zeros(3)}, tmp_path / 'numpy.state')
    with pytest.raises(ResumeStateError, match=r'numpy.state holds Python objects beyond tensors and containers '
                                               r'\(numpy\._?core\.multiarray\._reconstruct\); earlier basicsr-lmar'):
        read_training_state(tmp_path / 'numpy.state')
    torch.save({'iter': 1, 'schedulers': [{'milestones': collections.Counter({2: 1})}]}, tmp_path / 'counter.state')
    try:
        assert read_training_state(tmp_path / 'counter.state')['schedulers'][0]['milestones'] == {2: 1}
    except ResumeStateError as error:  # a torch whose weights-only loader refuses a Counter
        assert f'(collections.Counter); torch {torch.__version__} does not read it' in str(error)


def test_plugin_entry_refuses_another_models_state_in_one_line_before_any_folder(tmp_path, monkeypatch, capsys):
    from basicsr_lmar import train
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_car_tiny.yml').read_text())
    opt['path']['resume_state'] = str(_state_file(tmp_path / '10.state'))
    (tmp_path / 'car.yml').write_text(yaml.safe_dump(opt))
    monkeypatch.setattr(sys, 'argv', ['basicsr-lmar-train', '-opt', str(tmp_path / 'car.yml')])
    with pytest.raises(SystemExit) as info:
        train.main(str(tmp_path))
    assert info.value.code == 2
    assert capsys.readouterr().err == (f'basicsr-lmar-train: error: path.resume_state: {tmp_path / "10.state"} was '
                                       'written by HCFlowModel, this option file trains CARModel; point '
                                       'path.resume_state at a state of a CARModel run, or set it to ~ to start '
                                       'afresh.\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['10.state', 'car.yml']


CAR_TINY = REPO_ROOT / 'tests' / 'data_files' / 'train_car_tiny.yml'
OPTIM_SR = {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999]}


def _car_training_state(folder, optim_sr):
    """The training state (iteration 3) of a tiny CARModel run, with or without ``train.optim_sr``."""
    opt = yaml.safe_load(CAR_TINY.read_text())
    opt['train']['optim_sr'] = OPTIM_SR if optim_sr else None
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['path'].update(models=str(folder), training_states=str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    MODEL_REGISTRY.get('CARModel')(opt).save_training_state(0, 3)
    return folder / '3.state'


def _train_car(tmp_path, monkeypatch, *flags, optim_sr=False, resume_state=None):
    """basicsr-lmar-train on the tiny CAR option file from ``tmp_path``; its exit code."""
    from basicsr_lmar import train
    opt = yaml.safe_load(CAR_TINY.read_text())
    opt['train']['optim_sr'] = OPTIM_SR if optim_sr else None
    opt['path']['resume_state'] = None if resume_state is None else str(resume_state)
    (tmp_path / 'car.yml').write_text(yaml.safe_dump(opt))
    monkeypatch.setattr(sys, 'argv', ['basicsr-lmar-train', '-opt', str(tmp_path / 'car.yml'), *flags])
    with pytest.raises(SystemExit) as info:
        train.main(str(tmp_path))
    return info.value.code


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*'))


def test_a_state_of_other_optimizers_is_refused_by_name_before_any_folder(tmp_path, monkeypatch, capsys):
    """A CARModel state written with train.optim_sr (two optimizers) resumed by a file without it (one): basicsr
    stops on a bare assertion after building everything; the preflight names the options and exits 2 first.
    A state that does not record its optimizer keys is compared by their number."""
    state = _car_training_state(tmp_path / 'states', optim_sr=True)
    assert torch.load(state, weights_only=True)['optimizer_keys'] == ['optim_g', 'optim_sr']
    before = _files(tmp_path)
    assert _train_car(tmp_path, monkeypatch, resume_state=state) == 2
    assert capsys.readouterr().err == (
        f'basicsr-lmar-train: error: path.resume_state: {state} holds the state of 2 optimizers (train.optim_g, '
        'train.optim_sr), this option file trains with 1 optimizer (train.optim_g), and each optimizer resumes '
        'from its own saved state. Give the train section the options of the run that wrote it, so that it builds '
        'the same optimizers (train.optim_sr set in one run only), or set path.resume_state to ~ to start afresh '
        '(path.pretrain_network_* can load its networks).\n')
    assert _files(tmp_path) == sorted(before + ['car.yml'])
    old_format = torch.load(state, weights_only=True)
    del old_format['optimizer_keys']
    torch.save(old_format, state)
    assert _train_car(tmp_path, monkeypatch, resume_state=state) == 2
    assert 'holds the state of 2 optimizers, this option file trains with 1 optimizer (train.optim_g), and' in \
        capsys.readouterr().err
    assert _files(tmp_path) == sorted(before + ['car.yml'])


def test_the_same_optimizers_resume_and_auto_resume_refuses_other_ones(tmp_path, monkeypatch, capsys):
    """The check passes a state of the same optimizers; the state --auto_resume finds is checked the same way,
    before basicsr writes anything into the run's folder."""
    state = _car_training_state(tmp_path / 'states', optim_sr=False)
    opt = yaml.safe_load(CAR_TINY.read_text())
    opt['path']['resume_state'] = str(state)
    check_resume_state_model(opt, ['optim_g'])
    with pytest.raises(ResumeStateError, match=r'holds the state of 1 optimizer \(train\.optim_g\), this option '
                                               r'file trains with 2 optimizers \(train\.optim_g, train\.optim_sr\)'):
        check_resume_state_model(opt, ['optim_g', 'optim_sr'])
    run = tmp_path / 'experiments' / opt['name'] / 'training_states'
    _car_training_state(run, optim_sr=False)
    before = _files(tmp_path)
    assert _train_car(tmp_path, monkeypatch, '--auto_resume', optim_sr=True) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'basicsr-lmar-train: error: path.resume_state: {run / "3.state"} holds the state of 1 '
                          'optimizer (train.optim_g), this option file trains with 2 optimizers') and \
        err.endswith('the same optimizers (train.optim_sr set in one run only), or give the run another name to '
                     'start afresh.\n')
    assert _files(tmp_path) == sorted(before + ['car.yml'])


def test_stock_resume_refuses_another_models_state_in_one_line(tmp_path, capsys):
    """``python -m basicsr.train --auto_resume`` (basicsr's load_resume_state, repaired): the same refusal,
    as basicsr.train's one-line error."""
    folder = tmp_path / 'experiments' / 'run' / 'training_states'
    folder.mkdir(parents=True)
    _state_file(folder / '10.state')
    opt = {'name': 'run', 'model_type': 'CARModel', 'auto_resume': True, 'num_gpu': 0, 'path': {}}

    def basicsr_load_resume_state(opt):  # what basicsr's does on a GPU machine: load the state
        return torch.load(folder / '10.state')

    load = repaired_stock_resume(basicsr_load_resume_state)
    with pytest.raises(SystemExit) as info:
        with chdir(tmp_path):
            load(opt)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('basicsr.train: error: path.resume_state: ') and err.count('\n') == 1
    assert 'was written by HCFlowModel, this option file trains CARModel' in err
