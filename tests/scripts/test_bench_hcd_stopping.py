"""scripts/benchmarks/bench_hcd_stopping.py: a tiny side-by-side run on a --heldout folder (an IRN of the
irn_x4 reproduction's shape, saved as basicsr saves it), the rule grid, the larger crop sets, the minimum-steps
option reaching the op, and a missing network named with the command that trains it."""
import cv2
import numpy as np
import pytest
import torch
import yaml

from basicsr_lmar.data.skimage_photos import load_photo
from tests.scripts.tool_runs import load_benchmark, refused


def briefly_trained_irn(iterations=20):
    """The irn_x4 reproduction's network after a few IRNModel steps on crops of a training photo (an untrained
    one may not lower HCD's loss at its first step, where the rule is checked)."""
    from basicsr.models import build_model

    torch.manual_seed(0)
    opt = {'name': 'irn', 'model_type': 'IRNModel', 'num_gpu': 0, 'dist': False, 'rank': 0, 'world_size': 1,
           'is_train': True, 'scale': 4, 'path': {},
           'network_g': {'type': 'InvRescaleNet', 'scale': 4, 'block_num': [1, 1], 'growth': 16},
           'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': iterations}}
    model = build_model(opt)
    photo = torch.from_numpy(load_photo('astronaut')).permute(2, 0, 1)
    for step in range(iterations):
        y, x = (int(v) for v in torch.randint(0, 512 - 32, (2, )))
        model.feed_data({'gt': photo[None, :, y:y + 32, x:x + 32]})
        model.optimize_parameters(step)
    return model.get_bare_model(model.net_g)


@pytest.fixture(scope='module')
def bench():
    return load_benchmark('bench_hcd_stopping')


def test_crop_positions(bench):
    assert bench.crop_positions(100, 100, 128) == []
    two = bench.crop_positions(300, 400, 128)
    assert len(two) == 2 and two == bench.crop_positions(300, 400, 128, 2)
    eight = bench.crop_positions(300, 400, 128, len(bench.CROP_FRACTIONS))
    assert set(two) < set(eight) and len(eight) == len(bench.CROP_FRACTIONS)
    assert all(0 <= y <= 300 - 128 and 0 <= x <= 400 - 128 for y, x in eight)


def test_tiny_side_by_side_and_grid(bench, tmp_path, capsys):
    folder = tmp_path / 'hr'
    folder.mkdir()
    image = load_photo('chelsea')[100:164, 150:214]
    cv2.imwrite(str(folder / 'cat.png'), (image[..., ::-1] * 255).round().astype(np.uint8))
    weights = tmp_path / 'net_g_latest.pth'
    torch.save({'params': briefly_trained_irn().state_dict()}, weights)
    argv = ['--heldout', str(folder), '--size', '32', '--crops-per-image', '3', '--rescalers', 'irn', '--steps', '4',
            '--repeats', '1', '--irn-weights', str(weights)]
    summaries = bench.main(argv + ['--stop-min-steps', '4'])  # the minimum equals N: the rule never fires
    out = capsys.readouterr().out
    assert '3 crops of 32x32' in out and 'small IRN x4, z = 0, batch of 3: stopping / fixed N=4 time ratio' in out
    for mode, (ratio, difference, steps_hr, steps_lr) in summaries['irn'].items():
        assert np.isfinite(ratio) and ratio > 0 and np.isfinite(difference), mode
        assert steps_hr == steps_lr == 4, mode
    fires_at_once = ['--stop-min-steps', '0', '--stop-patience', '1', '--stop-gain-fraction', '1e9']
    summaries = bench.main(argv + fires_at_once + ['--grid'])
    out = capsys.readouterr().out
    assert f'IRN x4 from {weights}' in out
    for mode, (_, _, steps_hr, steps_lr) in summaries['irn'].items():
        assert steps_hr == steps_lr == 1, mode  # a rule that fires at its first check (W = 1)
    assert out.count('| W=') == len(bench.GRID) and '| W=1 M=5 frac=0.1 |' in out


def test_rule_specs(bench):
    assert bench.parse_rule('W=3,f=0.02') == (3, None, 0.02, 0)
    assert bench.parse_rule('W=1, M=5, f=0.1, t=0.003') == (1, 0.003, 0.1, 5)
    for bad in ('W=3', 'f=0.1', 'W=2,g=0.1', 'W=,f=0.1'):
        with pytest.raises(Exception, match='--rules'):
            bench.parse_rule(bad)


def test_a_missing_network_names_the_reproduction(bench, tmp_path, capsys):
    message = refused(bench, ['--rescalers', 'hcflow', '--hcflow-weights', str(tmp_path / 'none.pth')], capsys)
    assert 'none.pth' in message and 'scripts/reproduce.py hcflow_x4' in message
    message = refused(bench, ['--rescalers', 'car', '--car-weights', str(tmp_path / 'none.pth')], capsys)
    assert 'none.pth' in message and 'scripts/reproduce.py car_bicubic_x4' in message


def test_car_is_the_resampler_of_the_car_bicubic_x4_reproduction_with_bicubic_upscaling(bench, tmp_path):
    import argparse

    from basicsr.archs import build_network

    from tests.conftest import REPO_ROOT

    opt = yaml.safe_load((REPO_ROOT / 'options' / 'repro' / 'car_bicubic_x4_clamped.yml').read_text())
    torch.manual_seed(0)
    net = build_network(opt['network_g'])
    weights = tmp_path / 'net_g_latest.pth'
    torch.save({'params': net.state_dict()}, weights)
    rescaler = bench.car_rescaler(argparse.Namespace(car_weights=str(weights)))
    hr = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(rescaler.downscale(hr), net.downscale(hr))
    assert not rescaler.resampler.signed_kernels and not any(p.requires_grad for p in rescaler.parameters())
    assert rescaler.upscale(rescaler.downscale(hr)).shape == hr.shape
