import pathlib
import subprocess
import sys

import pytest
import torch

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.irn_arch import InvRescaleNet
from basicsr_lmar.checkpoints.irn import convert_official_irn_state_dict, haar_filters


def _official_state_dict(scale, block_num, growth, prefix='', seed=0):
    """A state dict with the authors' key names and shapes, written independently of the converter:
    operations list = [Haar, blocks..., Haar, blocks...]; each block has F, G, H dense blocks conv1..conv5
    (F: 3s^2-3 -> 3 channels, G and H: 3 -> 3s^2-3, conv k sees in + (k-1)*growth channels)."""
    generator = torch.Generator().manual_seed(seed)
    state, index, channels = {}, 0, 3
    for blocks in block_num:
        state[f'{prefix}operations.{index}.haar_weights'] = haar_filters(channels)
        index += 1
        channels *= 4
        for _ in range(blocks):
            for name, (cin, cout) in {'F': (channels - 3, 3), 'G': (3, channels - 3), 'H': (3, channels - 3)}.items():
                for k in range(1, 6):
                    out = growth if k < 5 else cout
                    shape = (out, cin + (k - 1) * growth, 3, 3)
                    state[f'{prefix}operations.{index}.{name}.conv{k}.weight'] = torch.randn(
                        shape, generator=generator) * .02
                    state[f'{prefix}operations.{index}.{name}.conv{k}.bias'] = torch.randn(
                        out, generator=generator) * .02
            index += 1
    return state


@pytest.mark.parametrize('scale, block_num, prefix', [(2, [8], ''), (4, [8, 8], 'module.')])
def test_full_size_official_names_and_shapes_load_strictly(scale, block_num, prefix):
    official = _official_state_dict(scale, block_num, 32, prefix)
    converted, options = convert_official_irn_state_dict(official)
    assert options == {'in_channels': 3, 'scale': scale, 'block_num': block_num, 'growth': 32}
    net = InvRescaleNet(**options)
    net.load_state_dict(converted, strict=True)
    assert sum(p.numel() for p in net.parameters()) == sum(
        v.numel() for k, v in official.items() if 'haar' not in k)
    # Every weight lands where its author name says: F of operation 1, conv3 -> steps.1.lr_update.convs.2
    assert torch.equal(net.steps[1].lr_update.convs[2].weight, official[f'{prefix}operations.1.F.conv3.weight'])
    last = len(net.steps) - 1
    assert torch.equal(net.steps[-1].rest_log_scale.convs[4].bias, official[f'{prefix}operations.{last}.H.conv5.bias'])


def _author_forward(state, x, block_num):
    """The authors' computation written from their definitions, on their key names: grouped Haar conv
    (/4, sub-band-major), y1 = x1 + F(x2); s = 2 sigmoid(H(y1)) - 1; y2 = x2 e^s + G(y1)."""
    F = torch.nn.functional

    def dense(prefix, t):
        feats = [t]
        for k in range(1, 6):
            out = F.conv2d(torch.cat(feats, 1), state[f'{prefix}.conv{k}.weight'], state[f'{prefix}.conv{k}.bias'],
                           padding=1)
            feats.append(F.leaky_relu(out, 0.2) if k < 5 else out)
        return feats[-1]

    index, c = 0, x.shape[1]
    for blocks in block_num:
        w = state[f'operations.{index}.haar_weights']
        n, _, h, wd = x.shape
        x = F.conv2d(x, w, stride=2, groups=c) / 4
        x = x.reshape(n, c, 4, h // 2, wd // 2).transpose(1, 2).reshape(n, 4 * c, h // 2, wd // 2)
        c *= 4
        index += 1
        for _ in range(blocks):
            x1, x2 = x[:, :3], x[:, 3:]
            y1 = x1 + dense(f'operations.{index}.F', x2)
            s = 2 * torch.sigmoid(dense(f'operations.{index}.H', y1)) - 1
            x = torch.cat((y1, x2 * torch.exp(s) + dense(f'operations.{index}.G', y1)), 1)
            index += 1
    return x


def test_converted_tiny_net_matches_author_computation():
    official = {k: v.double() for k, v in _official_state_dict(4, [1, 2], 4).items()}
    converted, options = convert_official_irn_state_dict({'state_dict': official})
    net = InvRescaleNet(**options).double()
    net.load_state_dict(converted, strict=True)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(net(x), _author_forward(official, x, [1, 2]), atol=1e-10)


def test_bad_checkpoints_are_named():
    official = _official_state_dict(2, [1], 4)
    official['operations.0.haar_weights'] = official['operations.0.haar_weights'] * 2
    with pytest.raises(ValueError, match='haar_weights'):
        convert_official_irn_state_dict(official)
    with pytest.raises(KeyError, match='conv_first'):
        convert_official_irn_state_dict({'conv_first.weight': torch.zeros(1)})


@pytest.mark.slow
def test_script_writes_loadable_params(tmp_path):
    source, target = tmp_path / 'IRN_x2.pth', tmp_path / 'out' / 'irn_x2.pth'
    torch.save(_official_state_dict(2, [2], 8, 'module.'), source)
    result = subprocess.run([sys.executable, 'scripts/convert_official_irn.py', str(source), str(target)],
                            capture_output=True, text=True, check=True,
                            cwd=pathlib.Path(__file__).resolve().parents[2])
    assert 'block_num: [2]' in result.stdout
    net = InvRescaleNet(scale=2, block_num=[2], growth=8)
    net.load_state_dict(torch.load(target, weights_only=True)['params'], strict=True)


def test_script_names_a_missing_checkpoint_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, 'scripts/convert_official_irn.py', str(tmp_path / 'IRN_x4.pth'),
                             str(tmp_path / 'out.pth')], capture_output=True, text=True,
                            cwd=pathlib.Path(__file__).resolve().parents[2])
    assert result.returncode == 2
    assert result.stderr.strip() == (f"convert_official_irn.py: error: the authors' IRN checkpoint: "
                                     f"{tmp_path / 'IRN_x4.pth'} does not exist.")
    assert not (tmp_path / 'out.pth').exists()
