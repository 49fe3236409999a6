"""Converter key mapping, on synthetic state dicts with the authors' key names and shapes.

Names and shapes follow ``sunwj/CAR``: ``modules.py`` (DSN under nn.DataParallel) and ``EDSR/`` (EDSR-PyTorch
naming, ``Upsampler`` as ``tail.0``); the real files are not available offline.
"""
import importlib.util
from collections import OrderedDict

import pytest
import torch
from basicsr.archs.edsr_arch import EDSR

from basicsr_lmar.archs.car_arch import CARResamplerNet
from basicsr_lmar.checkpoints import car as car_checkpoints
from tests.conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location('convert_official_car', REPO_ROOT / 'scripts' / 'convert_official_car.py')
converter = importlib.util.module_from_spec(spec)
spec.loader.exec_module(converter)


def conv(shapes, name, cin, cout, k):
    shapes[f'module.{name}.weight'] = (cout, cin, k, k)
    shapes[f'module.{name}.bias'] = (cout, )


def authors_kgn_shapes(scale):
    k2 = (3 * scale + 1)**2
    up = 8 // scale
    shapes = OrderedDict()
    conv(shapes, 'sub_mean', 3, 3, 1)
    conv(shapes, 'ds_1.1', 3, 64, 5)
    conv(shapes, 'ds_2.downsample.1', 256, 128, 1)
    conv(shapes, 'ds_4.downsample.1', 512, 128, 1)
    for i in range(5):
        conv(shapes, f'res_4.{i}.transform.1', 128, 128, 3)
        conv(shapes, f'res_4.{i}.transform.4', 128, 128, 3)
    conv(shapes, 'ds_8.downsample.1', 512, 256, 1)
    for trunk in ('kernels_trunk', 'offsets_trunk'):
        for index in (1, 4, 7):
            conv(shapes, f'{trunk}.{index}', 256, 256, 3)
        conv(shapes, f'{trunk}.9.upsample.0', 256, 256 * up * up, 1)
        conv(shapes, f'{trunk}.11', 256, 256, 3)
        head = 'kernels_weight' if trunk == 'kernels_trunk' else None
        for name in ([head] if head else ['offsets_h_generation', 'offsets_v_generation']):
            conv(shapes, f'{name}.1', 256, 256, 3)
            conv(shapes, f'{name}.4', 256, k2, 3)
    return shapes


def authors_usn_shapes(scale, blocks=32, feats=256):
    shapes = OrderedDict()
    conv(shapes, 'sub_mean', 3, 3, 1)
    conv(shapes, 'add_mean', 3, 3, 1)
    conv(shapes, 'head.0', 3, feats, 3)
    for i in range(blocks):
        conv(shapes, f'body.{i}.body.0', feats, feats, 3)
        conv(shapes, f'body.{i}.body.2', feats, feats, 3)
    conv(shapes, f'body.{blocks}', feats, feats, 3)
    for stage in range({2: 1, 4: 2}[scale]):
        conv(shapes, f'tail.0.{2 * stage}', feats, 4 * feats, 3)
    conv(shapes, 'tail.1', feats, 3, 3)
    return shapes


def numbered(shapes):
    """Each tensor filled with its own index, so the mapping can be traced."""
    return OrderedDict((key, torch.full(shape, float(i))) for i, (key, shape) in enumerate(shapes.items()))


@pytest.mark.parametrize('scale, trainable', [(2, 10_645_651), (4, 9_896_443)])
def test_kgn_keys_map_onto_resampler(scale, trainable):
    shapes = authors_kgn_shapes(scale)
    # the synthetic file has the authors' trainable parameter count (sub_mean is frozen)
    count = sum(torch.Size(s).numel() for k, s in shapes.items() if 'sub_mean' not in k)
    assert count == trainable
    authors = numbered(shapes)
    ours = car_checkpoints.convert_official_car_resampler(authors)
    net = CARResamplerNet(scale=scale)
    net.load_state_dict(ours, strict=True)
    net.requires_grad_(False)
    index = {key: i for i, key in enumerate(shapes)}
    assert float(net.head[0].weight[0, 0, 0, 0]) == index['module.ds_1.1.weight']
    assert float(net.body[3].conv2.bias[0]) == index['module.res_4.3.transform.4.bias']
    assert float(net.kernel_trunk[6].weight.flatten()[0]) == index['module.kernels_trunk.9.upsample.0.weight']
    assert float(net.offset_v_head[2].bias[0]) == index['module.offsets_v_generation.4.bias']
    assert float(net.offset_trunk[8].weight.flatten()[0]) == index['module.offsets_trunk.11.weight']


@pytest.mark.parametrize('scale', [2, 4])
def test_usn_keys_map_onto_basicsr_edsr(scale):
    shapes = authors_usn_shapes(scale, blocks=3, feats=8)  # small but same naming as 32 x 256
    authors = numbered(shapes)
    ours = car_checkpoints.convert_official_edsr({'state_dict': authors} if scale == 2 else authors)
    options = car_checkpoints.edsr_options(ours, scale)
    assert options['num_block'] == 3 and options['num_feat'] == 8 and options['img_range'] == 1.
    options.pop('type')
    net = EDSR(**options)
    net.load_state_dict(ours, strict=True)
    net.requires_grad_(False)
    index = {key: i for i, key in enumerate(shapes)}
    assert float(net.conv_after_body.weight.flatten()[0]) == index['module.body.3.weight']
    assert float(net.body[2].conv2.bias[0]) == index['module.body.2.body.2.bias']
    assert float(net.conv_last.bias[0]) == index['module.tail.1.bias']
    if scale == 4:
        assert float(net.upsample[2].weight.flatten()[0]) == index['module.tail.0.2.weight']


def test_full_size_usn_and_cli(tmp_path):
    authors_g = numbered(authors_kgn_shapes(4))
    authors_sr = numbered(authors_usn_shapes(4, blocks=4, feats=16))
    torch.save(authors_g, tmp_path / 'kgn.pth')
    torch.save(authors_sr, tmp_path / 'usn.pth')
    converter.main(['--scale', '4', '--kgn', str(tmp_path / 'kgn.pth'), '--usn', str(tmp_path / 'usn.pth'),
                    '--out-dir', str(tmp_path / 'out')])
    params = torch.load(tmp_path / 'out' / 'car_edsr_x4_net_sr.pth')['params']
    assert car_checkpoints.edsr_options(params, 4)['num_block'] == 4
    assert (tmp_path / 'out' / 'car_edsr_x4_net_g.pth').is_file()


def test_unknown_key_is_named():
    with pytest.raises(KeyError, match='decoder.weight'):
        car_checkpoints.convert_official_car_resampler({'module.decoder.weight': torch.zeros(1)})


def test_authors_layout_loads_with_signed_kernels_too():
    ours = car_checkpoints.convert_official_car_resampler(numbered(authors_kgn_shapes(4)))
    CARResamplerNet(scale=4, signed_kernels=True).load_state_dict(ours, strict=True)
