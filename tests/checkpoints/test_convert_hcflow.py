"""The HCFlow converter on synthetic state dicts with the authors' key names and shapes."""
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.hcflow_arch import HCFlowNet
from basicsr_lmar.checkpoints.hcflow import convert_official_hcflow_state_dict
from basicsr_lmar.checkpoints.irn import haar_filters

REPO = pathlib.Path(__file__).resolve().parents[2]
AUTHORS_X4 = dict(K=14, L=2, after=[6, 6], nb=[2, 1], nf=64, gc=16, hidden=64, growth=32)


def _official_state_dict(K, L, after, nb, nf, gc, hidden, growth, prefix='', seed=0):
    """The authors' HCFlowNet_Rescaling keys and shapes, written from their FlowNet_Rescaling_x4 definition
    (independently of the converter): layers = per level [Haar, K - after flow steps, Split]; level l's
    conditional flow ``flow.level{l}_condFlow`` (conv_first, RRDB_trunk0/1, trunk_conv1, additional steps, f)."""
    generator = torch.Generator().manual_seed(seed)
    state, index, channels = {}, 0, 3

    def put(key, *shape):
        state[f'{prefix}{key}'] = torch.randn(shape, generator=generator) * 0.02

    for level in range(L):
        state[f'{prefix}flow.layers.{index}.haar_weights'] = haar_filters(channels)
        index += 1
        channels *= 4
        for k in range(K - after[level]):
            put(f'flow.layers.{index}.actnorm.bias', 1, channels, 1, 1)
            put(f'flow.layers.{index}.actnorm.logs', 1, channels, 1, 1)
            cin, cout = (3, 2 * (channels - 3)) if k % 2 == 0 else (channels - 3, 3)
            for i in range(1, 6):
                out = growth if i < 5 else cout
                put(f'flow.layers.{index}.affine.f.conv{i}.weight', out, cin + (i - 1) * growth, 3, 3)
                put(f'flow.layers.{index}.affine.f.conv{i}.bias', out)
            index += 1
        index += 1  # Split: no tensors
        split = channels // 2 if level < L - 1 else 3
        rest = channels - split
        c = f'flow.level{level}_condFlow'
        put(f'{c}.conv_first.weight', nf, split + (nf if level == 0 and L > 1 else 0), 3, 3)
        put(f'{c}.conv_first.bias', nf)
        for trunk, count in enumerate(nb):
            for j in range(count):
                for r in range(1, 4):
                    for i in range(1, 6):
                        out = gc if i < 5 else nf
                        put(f'{c}.RRDB_trunk{trunk}.{j}.RDB{r}.conv{i}.weight', out, nf + (i - 1) * gc, 3, 3)
                        put(f'{c}.RRDB_trunk{trunk}.{j}.RDB{r}.conv{i}.bias', out)
        put(f'{c}.trunk_conv1.weight', nf, nf, 3, 3)
        put(f'{c}.trunk_conv1.bias', nf)
        for k in range(after[level]):
            s = f'{c}.additional_flow_steps.{k}'
            put(f'{s}.actnorm.bias', 1, rest, 1, 1)
            put(f'{s}.actnorm.logs', 1, rest, 1, 1)
            state[f'{prefix}{s}.permute.weight'] = torch.linalg.qr(torch.randn(rest, rest, generator=generator))[0]
            put(f'{s}.affine.f.conv1.weight', hidden, rest // 2 + nf, 3, 3)
            put(f'{s}.affine.f.conv1.actnorm.bias', 1, hidden, 1, 1)
            put(f'{s}.affine.f.conv1.actnorm.logs', 1, hidden, 1, 1)
            put(f'{s}.affine.f.conv2.weight', hidden, hidden, 1, 1)
            put(f'{s}.affine.f.conv2.actnorm.bias', 1, hidden, 1, 1)
            put(f'{s}.affine.f.conv2.actnorm.logs', 1, hidden, 1, 1)
            put(f'{s}.affine.f.conv3.weight', 2 * (rest - rest // 2), hidden, 3, 3)
            put(f'{s}.affine.f.conv3.bias', 2 * (rest - rest // 2))
            put(f'{s}.affine.f.conv3.logs', 2 * (rest - rest // 2), 1, 1)
        put(f'{c}.f.weight', 2 * rest, nf, 3, 3)
        put(f'{c}.f.bias', 2 * rest)
        put(f'{c}.f.logs', 2 * rest, 1, 1)
        channels = split  # the next level squeezes what this one kept
    return state


@pytest.mark.parametrize('prefix', ['', 'module.'])
def test_all_532_authors_keys_load_strictly(prefix):
    official = _official_state_dict(**AUTHORS_X4, prefix=prefix)
    assert len(official) == 532
    converted, options = convert_official_hcflow_state_dict(official)
    assert options == {'in_channels': 3, 'scale': 4, 'flow_steps': [8, 8], 'prior_steps': [6, 6], 'growth': 32,
                       'rrdb_nf': 64, 'rrdb_gc': 16, 'rrdb_blocks': 3, 'hidden': 64}
    net = HCFlowNet(**options)
    net.load_state_dict(converted, strict=True)
    assert len(converted) == len(official) == len(net.state_dict())
    assert sum(p.numel() for p in net.parameters()) == sum(v.numel() for v in official.values()) == 4_396_350
    # weights land where their authors' names say
    p = prefix
    assert torch.equal(net.levels[1].steps[3].coupling.net.convs[4].bias,
                       official[f'{p}flow.layers.14.affine.f.conv5.bias'])
    prior = net.levels[0].prior
    assert torch.equal(prior.rrdbs[2].blocks[1].convs[3].weight,
                       official[f'{p}flow.level0_condFlow.RRDB_trunk1.0.RDB2.conv4.weight'])
    assert torch.equal(prior.steps[5].invconv.weight,
                       official[f'{p}flow.level0_condFlow.additional_flow_steps.5.permute.weight'])
    assert torch.equal(prior.head.logs, official[f'{p}flow.level0_condFlow.f.logs'])
    assert torch.equal(prior.steps[0].coupling.net.conv2.actnorm.logs,
                       official[f'{p}flow.level0_condFlow.additional_flow_steps.0.affine.f.conv2.actnorm.logs'])


def test_checkpoint_wrappers_and_bad_keys():
    official = _official_state_dict(**AUTHORS_X4)
    converted, _ = convert_official_hcflow_state_dict({'state_dict': official})
    assert len(converted) == 532
    with pytest.raises(KeyError, match='unexpected key'):
        convert_official_hcflow_state_dict({**official, 'operations.0.haar_weights': haar_filters(3)})
    broken = dict(official)
    broken['flow.layers.0.haar_weights'] = -broken['flow.layers.0.haar_weights']
    with pytest.raises(ValueError, match='not the Haar filters'):
        convert_official_hcflow_state_dict(broken)


def _authors_encode(state, hr, L, nb):
    """The authors' forward (HR -> LR, z1, z2), written from their module definitions on their key names."""
    def conv(prefix, x, padding=1, bias=True):
        return F.conv2d(x, state[f'{prefix}.weight'], state[f'{prefix}.bias'] if bias else None, padding=padding)

    def actnorm(prefix, x):
        return (x + state[f'{prefix}.bias']) * torch.exp(state[f'{prefix}.logs'])

    def dense(prefix, x, residual=False):
        feats = [x]
        for i in range(1, 5):
            feats.append(F.leaky_relu(conv(f'{prefix}.conv{i}', torch.cat(feats, 1)), 0.2))
        out = conv(f'{prefix}.conv5', torch.cat(feats, 1))
        return out * 0.2 + x if residual else out

    def cond_feature(c, u):
        first = conv(f'{c}.conv_first', u)
        x = first
        for trunk, count in enumerate(nb):
            for j in range(count):
                y = x
                for r in range(1, 4):
                    y = dense(f'{c}.RRDB_trunk{trunk}.{j}.RDB{r}', y, residual=True)
                x = y * 0.2 + x
        return conv(f'{c}.trunk_conv1', x) + first

    def cond_flow(c, z, feature):
        k = 0
        while f'{c}.additional_flow_steps.{k}.actnorm.bias' in state:
            s = f'{c}.additional_flow_steps.{k}'
            z = actnorm(f'{s}.actnorm', z)
            z = F.conv2d(z, state[f'{s}.permute.weight'][:, :, None, None])
            z1, z2 = z[:, :z.shape[1] // 2], z[:, z.shape[1] // 2:]
            h = F.relu(actnorm(f'{s}.affine.f.conv1.actnorm', conv(f'{s}.affine.f.conv1', torch.cat((z1, feature), 1),
                                                                     bias=False)))
            h = F.relu(actnorm(f'{s}.affine.f.conv2.actnorm', conv(f'{s}.affine.f.conv2', h, padding=0, bias=False)))
            h = conv(f'{s}.affine.f.conv3', h) * torch.exp(state[f'{s}.affine.f.conv3.logs'] * 3)
            z2 = (z2 + h[:, 0::2]) * torch.exp(0.318 * torch.atan(2 * h[:, 1::2]))
            z = torch.cat((z1, z2), 1)
            k += 1
        h = conv(f'{c}.f', feature) * torch.exp(state[f'{c}.f.logs'] * 3)
        return (z - h[:, 0::2]) * torch.exp(-0.318 * torch.atan(2 * h[:, 1::2]))

    index, x, kept, split_off = 0, hr, [], []
    for level in range(L):
        c = x.shape[1]
        out = F.conv2d(x, state[f'flow.layers.{index}.haar_weights'], stride=2, groups=c) / 4
        n, _, h, w = out.shape
        x = out.reshape(n, c, 4, h, w).transpose(1, 2).reshape(n, 4 * c, h, w)
        index += 1
        k = 0
        while f'flow.layers.{index}.actnorm.bias' in state:
            x = actnorm(f'flow.layers.{index}.actnorm', x)
            p = f'flow.layers.{index}.affine.f'
            if k % 2 == 0:
                hh = dense(p, x[:, :3])
                x = torch.cat((x[:, :3], (x[:, 3:] + hh[:, 0::2]) * torch.exp(0.318 * torch.atan(2 * hh[:, 1::2]))), 1)
            else:
                x = torch.cat((x[:, :3] + dense(p, x[:, 3:]), x[:, 3:]), 1)
            index, k = index + 1, k + 1
        index += 1
        split = x.shape[1] // 2 if level < L - 1 else 3
        kept.append(x[:, :split])
        split_off.append(x[:, split:])
        x = x[:, :split]
    feature2 = cond_feature('flow.level1_condFlow', x)
    z2 = cond_flow('flow.level1_condFlow', split_off[1], feature2)
    feature1 = cond_feature('flow.level0_condFlow', torch.cat((kept[0], F.interpolate(feature2, scale_factor=2)), 1))
    z1 = cond_flow('flow.level0_condFlow', split_off[0], feature1)
    return x, z1, z2


def test_converted_net_computes_the_authors_forward():
    small = dict(K=4, L=2, after=[2, 2], nb=[1, 1], nf=8, gc=4, hidden=8, growth=4)
    official = _official_state_dict(**small, seed=3)
    converted, options = convert_official_hcflow_state_dict(official)
    net = HCFlowNet(**options)
    net.load_state_dict(converted, strict=True)
    hr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        lr, (z1, z2) = net(hr, clamp=False)
        expected = _authors_encode(official, hr, 2, [1, 1])
    for ours, theirs in zip((lr, z1, z2), expected):
        assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.slow
def test_script_writes_a_basicsr_checkpoint(tmp_path):
    small = dict(K=4, L=2, after=[2, 2], nb=[1, 1], nf=8, gc=4, hidden=8, growth=4)
    torch.save(_official_state_dict(**small, prefix='module.'), tmp_path / 'official.pth')
    target = tmp_path / 'out' / 'hcflow.pth'
    result = subprocess.run([sys.executable, 'scripts/convert_official_hcflow.py', str(tmp_path / 'official.pth'),
                             str(target)], capture_output=True, text=True, check=True, cwd=REPO)
    assert 'type: HCFlowNet' in result.stdout and 'flow_steps: [2, 2]' in result.stdout
    params = torch.load(target, weights_only=True)['params']
    assert len(params) == len(_official_state_dict(**small))
