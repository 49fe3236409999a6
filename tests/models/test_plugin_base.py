"""PluginBaseModel: guarded steps, checkpoints that explain mismatches, frozen networks."""
import os

import pytest
import torch

from basicsr_lmar.checkpoints.state_dicts import CheckpointMismatchError, atomic_torch_save
from basicsr_lmar.models.plugin_base import NonFiniteLossError, PluginBaseModel


def make_model(tmp_path, **train):
    opt = {'num_gpu': 0, 'is_train': True, 'dist': False, 'manual_seed': 0, 'world_size': 1, 'rank': 0,
           'train': train, 'path': {'models': str(tmp_path), 'training_states': str(tmp_path)},
           'network_g': {'type': 'UHDUNet', 'model_channel': 2}}
    return PluginBaseModel(opt)


def test_nonfinite_loss_skips_the_step_then_stops_the_run(tmp_path):
    model = make_model(tmp_path, max_nonfinite_steps=3)
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    assert model.guarded_step((weight * float('nan')).sum(), optimizer) is False
    assert torch.equal(weight.detach(), torch.ones(2)) and model.nonfinite_streak == 1
    assert model.guarded_step((weight ** 2).sum(), optimizer) is True  # a finite step resets the streak
    assert model.nonfinite_streak == 0 and model.nonfinite_total == 1
    assert not torch.equal(weight.detach(), torch.ones(2))
    model.guarded_step((weight * float('inf')).sum(), optimizer)
    model.guarded_step((weight * float('inf')).sum(), optimizer)
    with pytest.raises(NonFiniteLossError, match='3 consecutive .* train.max_nonfinite_steps'):
        model.guarded_step((weight * float('nan')).sum(), optimizer)


def test_checkpoint_mismatch_names_keys_shapes_and_saved_options(tmp_path):
    model = make_model(tmp_path)
    model.network_options['network_g'] = {'type': 'UHDUNet', 'model_channel': 2}
    small = model.build_trainable_network('network_g')
    model.save_network(small, 'net_g', 5)
    saved = torch.load(tmp_path / 'net_g_5.pth', weights_only=False)
    assert saved['basicsr_lmar']['network_options'] == {'type': 'UHDUNet', 'model_channel': 2}
    model.opt['network_g'] = {'type': 'UHDUNet', 'model_channel': 4}
    big = model.build_trainable_network('network_g')
    with pytest.raises(CheckpointMismatchError) as err:
        model.load_network(big, str(tmp_path / 'net_g_5.pth'), option_key='path.pretrain_network_g')
    message = str(err.value)
    assert 'path.pretrain_network_g' in message and 'tensors differ in shape' in message
    assert 'shape of body.bottom_block' in message and 'network (16,), checkpoint (8,)' in message
    assert "'model_channel': 2" in message and 'strict_load' in message


def test_frozen_network_requires_its_checkpoint_and_freezes(tmp_path):
    model = make_model(tmp_path)
    model.opt['network_enhancer'] = {'type': 'UHDUNet', 'model_channel': 2}
    with pytest.raises(FileNotFoundError, match='path.pretrain_network_enhancer is required'):
        model.build_frozen_network('network_enhancer')
    model.opt['path']['pretrain_network_enhancer'] = str(tmp_path / 'absent.pth')
    with pytest.raises(FileNotFoundError, match=r'path.pretrain_network_enhancer: .*absent.pth does not exist'):
        model.build_frozen_network('network_enhancer')
    model.opt['path']['pretrain_network_enhancer'] = None
    source = model.build_trainable_network('network_enhancer')
    model.save_network(source, 'net_enhancer', 1)
    model.opt['path']['pretrain_network_enhancer'] = str(tmp_path / 'net_enhancer_1.pth')
    frozen = model.build_frozen_network('network_enhancer')
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    frozen(x).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients flow through to the input


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / 'state.pth'

    def broken_save(obj, path):
        with open(path, 'wb') as handle:
            handle.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        atomic_torch_save({'a': 1}, str(target))
    assert os.listdir(tmp_path) == []


def test_bf16_autocast_on_cpu_and_fp16_refused(tmp_path):
    model = make_model(tmp_path, amp='bf16')
    with model.autocast():
        out = torch.nn.functional.linear(torch.rand(2, 3), torch.rand(4, 3))
    assert out.dtype == torch.bfloat16
    with pytest.raises(ValueError, match='fp16 needs a GPU'):
        make_model(tmp_path, amp='fp16')
