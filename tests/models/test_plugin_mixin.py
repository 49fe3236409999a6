"""PluginModelMixin: guarded steps, checkpoints that explain mismatches, frozen networks, options
validated once, DDP placement and optimizers for the plugin's models only."""
import os

import pytest
import torch
from basicsr.models.sr_model import SRModel

from basicsr_lmar.checkpoints.state_dicts import CheckpointMismatchError, atomic_torch_save
from basicsr_lmar.models.plugin_mixin import PluginModelMixin
from basicsr_lmar.models.training_guards import NonFiniteLossError
from basicsr_lmar.options import OptionError


class ProbeModel(PluginModelMixin, SRModel):
    """The mixin on basicsr's SRModel with nothing of its own (net_g built, no losses)."""

    def init_training_settings(self):
        pass


def make_model(tmp_path, **train):
    opt = {'num_gpu': 0, 'is_train': True, 'dist': False, 'manual_seed': 0, 'world_size': 1, 'rank': 0,
           'train': {'total_iter': 10, **train}, 'path': {'models': str(tmp_path), 'training_states': str(tmp_path)},
           'network_g': {'type': 'UHDUNet', 'model_channel': 2}}
    return ProbeModel(opt)


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


def test_any_torch_optimizer_by_name_and_a_clear_error_otherwise(tmp_path):
    model = make_model(tmp_path)
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(model.get_optimizer('AdamW', params, 1e-3, weight_decay=0.1), torch.optim.AdamW)
    assert isinstance(model.get_optimizer('Adam', params, 1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="'Adamm' is not a torch.optim optimizer.*Adam"):
        model.get_optimizer('Adamm', params, 1e-3)


def test_model_to_device_keeps_frozen_nets_unwrapped_and_wraps_trainable_on_cpu(tmp_path):
    """Single-process gloo group: DDP on CPU needs no device_ids; frozen nets are never wrapped; inside
    bare_networks() the model's wrapped networks are their bare modules."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model = make_model(tmp_path)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "rendezvous"}', rank=0, world_size=1)
    try:
        model.opt['dist'] = True
        frozen = torch.nn.Conv2d(1, 1, 1).requires_grad_(False)
        assert model.model_to_device(frozen) is frozen
        wrapped = model.model_to_device(torch.nn.Conv2d(1, 1, 1))
        assert isinstance(wrapped, DistributedDataParallel)
        model.net_g = wrapped
        with model.bare_networks():
            assert model.net_g is wrapped.module
        assert model.net_g is wrapped
    finally:
        dist.destroy_process_group()


def test_options_are_validated_once_frozen_and_given_to_basicsr_with_defaults(tmp_path):
    model = make_model(tmp_path, amp='bf16')
    assert model.options.train.amp == 'bf16' and model.options.train.max_nonfinite_steps == 10
    assert model.opt['train'] == {'total_iter': 10, 'warmup_iter': -1, 'max_nonfinite_steps': 10, 'amp': 'bf16'}
    assert model.options.network_g.model_channel == 2 and model.options.network_g.block  # arch default filled in
    with pytest.raises(AttributeError, match='immutable'):
        model.options.train.amp = 'none'


@pytest.mark.parametrize('train, message', [
    ({'ampp': 'bf16'}, r"\[train\].*unknown option 'ampp'.*closest first: amp"),
    ({'amp': 'bf61'}, r"\[train\].*option 'amp'.*one of \['none', 'bf16', 'fp16'\]; got 'bf61'"),
    ({'max_nonfinite_steps': 0}, r"\[train\].*'max_nonfinite_steps'.*>= 1"),
])
def test_train_option_mistakes_are_named_before_anything_is_built(tmp_path, train, message):
    with pytest.raises(OptionError, match=message):
        make_model(tmp_path, **train)


def test_network_sections_missing_or_unknown_are_named(tmp_path):
    opt = {'num_gpu': 0, 'is_train': False, 'dist': False, 'rank': 0, 'world_size': 1, 'path': {},
           'network_gg': {'type': 'UHDUNet'}}
    with pytest.raises(OptionError, match=r'\[network_g\] section is missing: ProbeModel needs the trained network'):
        ProbeModel(opt)
    opt['network_g'] = {'type': 'UHDUNet', 'model_channel': 2}
    with pytest.raises(OptionError, match=r'\[network_gg\] is not a network of ProbeModel, which reads network_g'):
        ProbeModel(opt)


def test_interrupted_saves_are_removed_at_the_next_start(tmp_path):
    (tmp_path / '4.state.tmp4242').write_bytes(b'partial')
    (tmp_path / 'net_g_4.pth.tmp17').write_bytes(b'partial')
    (tmp_path / 'net_g_2.pth').write_bytes(b'kept')
    make_model(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ['net_g_2.pth']
