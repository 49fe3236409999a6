"""Checkpoint files that cannot be read, and loads that do not fit, are named (checkpoints/state_dicts.py)."""
import logging
import pickle
import zipfile

import pytest
import torch
from basicsr.archs import build_network

import basicsr_lmar  # noqa: F401  (registers the archs)
from basicsr_lmar.checkpoints.state_dicts import (CheckpointMismatchError, DamagedCheckpointError,
                                                  check_pretrained_networks, load_network_weights, read_checkpoint)

IRN = {'type': 'InvRescaleNet', 'scale': 2, 'block_num': [1], 'growth': 8}
CAR = {'type': 'CARResamplerNet', 'scale': 4, 'num_feat': 8, 'body_feat': 8, 'top_feat': 16, 'num_block': 1}


def _save(tmp_path, name, network, **extra):
    torch.manual_seed(0)
    net = build_network(dict(network))
    torch.save({'params': net.state_dict(), **extra}, tmp_path / name)
    return tmp_path / name


class Log:
    """Collects what a load logs, as (level, message)."""

    def __init__(self):
        self.records = []

    def info(self, message):
        self.records.append(('info', message))

    def warning(self, message):
        self.records.append(('warning', message))


def test_a_truncated_checkpoint_is_named_as_damaged_with_its_size(tmp_path):
    """``head -c 20000 net_g.pth > t.pth``: torch's own error is ``OSError: [Errno 22] Invalid argument``."""
    source = _save(tmp_path, 'net_g.pth', CAR)
    truncated = tmp_path / 't.pth'
    truncated.write_bytes(source.read_bytes()[:20000])
    with pytest.raises(OSError):
        torch.load(truncated, weights_only=True)
    for mmap in (False, True):
        with pytest.raises(DamagedCheckpointError) as error:
            read_checkpoint(str(truncated), 'path.pretrain_network_g', mmap=mmap)
        assert str(error.value) == (
            f'path.pretrain_network_g: {truncated} is damaged (20000 bytes): its zip archive ends early or is '
            'corrupted, so torch cannot read it (an interrupted download, copy or save cuts a file short); copy or '
            'download it again, or point path.pretrain_network_g at another checkpoint.')
    truncated.write_bytes(source.read_bytes()[:-10])  # torch's error differs (no central directory): same message
    with pytest.raises(DamagedCheckpointError, match=r'is damaged \(\d+ bytes\): its zip archive ends early'):
        read_checkpoint(str(truncated), 'path.pretrain_network_g')


def test_empty_legacy_and_foreign_files_are_named(tmp_path):
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(DamagedCheckpointError, match=r'empty.pth is damaged \(0 bytes\): it is empty, so torch'):
        read_checkpoint(str(empty), '--net-g')
    legacy = tmp_path / 'legacy.pth'
    torch.save({'params': {'w': torch.zeros(64)}}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-20])
    with pytest.raises(DamagedCheckpointError, match=r'legacy.pth is damaged \(\d+ bytes\): its pickle data ends '
                                                     'early or is corrupted'):
        read_checkpoint(str(legacy), '--net-g')
    text = tmp_path / 'notes.pth'
    text.write_text('hello world\n' * 10)  # torch raises KeyError('101') here
    with pytest.raises(DamagedCheckpointError) as error:
        read_checkpoint(str(text), '--net-g')
    assert str(error.value) == (f"--net-g: {text} (120 bytes) is not a checkpoint: torch.save did not write it (it "
                                "starts with b'hell'); point --net-g at a .pth file of the network.")
    archive = tmp_path / 'archive.pth'
    with zipfile.ZipFile(archive, 'w') as handle:
        handle.writestr('a.txt', 'x')
    with pytest.raises(DamagedCheckpointError, match='archive.pth is damaged'):
        read_checkpoint(str(archive), '--net-g')
    pickled = tmp_path / 'object.pth'
    pickled.write_bytes(pickle.dumps({'params': zipfile.ZipInfo('a')}, protocol=2))  # readable, not weights only
    with pytest.raises(CheckpointMismatchError, match='object.pth is not a plain weights file'):
        read_checkpoint(str(pickled), '--net-g')
    with pytest.raises(FileNotFoundError, match=f'--net-g: {tmp_path} is a folder, not a checkpoint file.'):
        read_checkpoint(str(tmp_path), '--net-g')


def _basicsr_report(net, state):
    """What basicsr's own ``load_network`` logs for a non-strict load of ``state`` into ``net``."""
    from basicsr.models.base_model import BaseModel

    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger('basicsr')
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        owner = type('Owner', (), {'get_bare_model': lambda self, n: n})()
        BaseModel._print_different_keys_loading(owner, net, dict(state), strict=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return messages


def test_a_partial_load_logs_what_it_leaves_out_as_basicsr_does(tmp_path):
    """``strict_load_g: false``: the tensors that fit are loaded, the others named in basicsr's words."""
    small = _save(tmp_path, 'edsr1.pth', {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8,
                                          'num_block': 1, 'upscale': 2})
    net = build_network({'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 1, 'num_feat': 8, 'num_block': 2,
                         'upscale': 2})
    checkpoint = torch.load(small, weights_only=True)['params']
    log = Log()
    load_network_weights(net, str(small), strict=False, where='path.pretrain_network_g', logger=log)
    warnings = [message for level, message in log.records if level == 'warning']
    basicsr = _basicsr_report(net, checkpoint)
    size_lines = [w for w in basicsr if w.startswith('Size different')]  # basicsr lists these in set order
    assert warnings[:-1] == [w for w in basicsr if w not in size_lines] + sorted(size_lines)
    assert 'Current net - loaded net:' in warnings and '  body.1.conv1.weight' in warnings
    assert any(w.startswith('Size different, ignore [') for w in warnings)  # conv_last: 1 output channel, not 3
    loaded = sum(1 for k, v in net.state_dict().items() if k in checkpoint and v.shape == checkpoint[k].shape)
    assert warnings[-1] == (f'path.pretrain_network_g: loaded {loaded} of the {len(net.state_dict())} tensors of EDSR '
                            f'from {small} (path.strict_load_g: false); the others keep their initial values.')
    assert torch.equal(net.state_dict()['conv_first.weight'], checkpoint['conv_first.weight'])
    assert log.records[-1] == ('info', f'Loaded EDSR from {small} [params].')


def test_a_load_that_matches_no_tensor_is_an_error(tmp_path):
    """Another network's checkpoint with ``strict_load_g: false`` would load zero tensors and report success:
    it is an error, whose message does not suggest the non-strict load."""
    car = _save(tmp_path, 'car.pth', CAR, basicsr_lmar={'version': '0.1', 'network_options': CAR})
    net = build_network(dict(IRN))
    with pytest.raises(CheckpointMismatchError) as error:
        load_network_weights(net, str(car), strict=False, where='path.pretrain_network_g', logger=Log())
    assert str(error.value) == (
        f'path.pretrain_network_g: {car} has no tensor that fits InvRescaleNet: path.strict_load_g: false loads the '
        'tensors whose names and shapes match, and none of its 44 does; the checkpoint was saved by basicsr-lmar 0.1 '
        f'for options {CAR}. Point path.pretrain_network_g at a checkpoint of InvRescaleNet, or set network_g to the '
        'network it was saved for.')
    with pytest.raises(CheckpointMismatchError) as error:
        load_network_weights(net, str(car), strict=True, where='path.pretrain_network_g')
    assert str(error.value).splitlines()[-1] == (
        '  None of its tensors fits: it is the checkpoint of another network. Point path.pretrain_network_g at a '
        'checkpoint of InvRescaleNet, or set network_g to the network it was saved for.')


def test_the_preflight_check_raises_what_the_load_would(tmp_path):
    """check_pretrained_networks builds the network on the meta device and raises the load's own message."""
    car = _save(tmp_path, 'car.pth', CAR)
    bigger = _save(tmp_path, 'irn_growth16.pth', dict(IRN, growth=16))
    for path, strict in ((car, False), (bigger, True)):
        opt = {'model_type': 'IRNModel', 'network_g': dict(IRN),
               'path': {'pretrain_network_g': str(path), 'strict_load_g': strict}}
        with pytest.raises(CheckpointMismatchError) as checked:
            check_pretrained_networks(opt)
        with pytest.raises(CheckpointMismatchError) as loaded:
            load_network_weights(build_network(dict(IRN)), str(path), strict, where='path.pretrain_network_g')
        assert str(checked.value) == str(loaded.value)
    opt['path'] = {'pretrain_network_g': str(_save(tmp_path, 'irn.pth', IRN))}
    check_pretrained_networks(opt)  # a checkpoint that fits passes
    opt['path']['param_key_g'] = 'params_ema'  # falls back to params, as the load does
    check_pretrained_networks(opt)
