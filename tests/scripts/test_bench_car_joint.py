"""scripts/benchmarks/bench_car_joint.py: the --quick run (all arms, figure, saved pair that car_rescale.py
evaluates to the same PSNR, the SR cache) and the adaptivity measures."""
import json

import cv2
import numpy as np
import pytest
import torch

from basicsr_lmar.data.skimage_photos import load_photo
from tests.conftest import REPO_ROOT
from tests.scripts.tool_runs import load_benchmark, load_script

BENCH = REPO_ROOT / 'scripts' / 'benchmarks'


def load(name, folder=None):
    return load_benchmark(name) if folder is None else load_script(name, folder)


@pytest.fixture(scope='module')
def joint():
    return load('bench_car_joint')


def test_quick_run_arms_figure_cache_and_saved_pair(joint, tmp_path, capsys):
    folder = tmp_path / 'hr'
    folder.mkdir()
    for name, photo in (('cat', 'chelsea'), ('cup', 'coffee')):
        image = load_photo(photo)[96:160, 160:224]  # 64x64: the quick run evaluates 64x64 corners
        cv2.imwrite(str(folder / f'{name}.png'), (image[..., ::-1] * 255).round().astype(np.uint8))
    prefix = tmp_path / 'pair'
    argv = ['--quick', '--heldout', str(folder), '--cache', str(tmp_path / 'cache'),
            '--figure', str(tmp_path / 'f.png'), '--save-weights', str(prefix), '--json', str(tmp_path / 'r.json')]
    results = joint.main(argv)
    (label, result), = results.items()
    assert result['images'] == ['cat', 'cup'] and str(folder) in label
    arms = result['arms']
    assert [arm[:3] for arm in arms] == ['(a)', '(b)', '(c)', '(b)']
    b_rows = arms['(b) CAR+SR joint']
    assert all(np.isfinite(row[0]) and row[3] >= 0 for row in b_rows)  # PSNR, SSIM, spread, offset
    assert np.isnan(arms[next(iter(arms))][0][2])  # bicubic arms have no kernels
    assert json.loads((tmp_path / 'r.json').read_text())['results'][label]['images'] == ['cat', 'cup']
    assert cv2.imread(str(tmp_path / 'f.png')) is not None
    rescale = load('car_rescale', REPO_ROOT / 'scripts')
    scores = rescale.main(['-opt', f'{prefix}.yml', '-i', str(folder), '--sr-out', str(tmp_path / 'sr'),
                           '--device', 'cpu'])
    np.testing.assert_allclose([s[0] for s in scores], [row[0] for row in b_rows], atol=1e-6)
    capsys.readouterr()
    again = joint.main(argv[:5] + ['--skip-c'])
    assert 'from the cache' in capsys.readouterr().out
    assert list(again[label]['arms']) == [arm for arm in arms if not arm.startswith('(c)')]


def test_adaptivity_of_a_constant_kernel_is_zero_and_centre_of_mass(joint):
    k, scale = 13, 4
    kernels = torch.zeros(1, k * k, 3, 5)
    kernels[:, k * k // 2] = 1  # centre delta everywhere
    zeros = torch.zeros_like(kernels)
    spread, offset = joint.adaptivity(kernels, zeros, zeros, scale)
    assert spread == 0 and offset == 0
    offsets_h = torch.full_like(kernels, 0.25)  # a quarter of the scale = one HR pixel to the right
    com_x, com_y = joint.centre_of_mass(kernels, offsets_h, zeros, scale)
    torch.testing.assert_close(com_x, torch.ones(1, 3, 5))
    torch.testing.assert_close(com_y, torch.zeros(1, 3, 5))
    assert joint.adaptivity(kernels, offsets_h, zeros, scale)[1] == pytest.approx(1.0)
    varying = kernels.clone()
    varying[0, :, 0, 0] = 1 / (k * k)  # one pixel with another kernel: spread > 0
    assert joint.adaptivity(varying, zeros, zeros, scale)[0] > 0
    checkerboard = kernels.clone()  # a fixed pattern with the pixel-shuffle's period (2 at x4) is no adaptation
    checkerboard[0, :, ::2, ::2] = 1 / (k * k)
    assert joint.adaptivity(checkerboard, zeros, zeros, scale)[0] == pytest.approx(0, abs=1e-7)


def test_signed_joint_quick_at_x2(joint):
    results = joint.main(['--quick', '--scale', '2', '--signed', '--skip-c', '--iters', '1', '--pretrain-iters', '1'])
    rows = next(iter(results.values()))['arms']['(b) CAR+SR joint']
    assert len(rows) == 2 and all(np.isfinite(r[0]) for r in rows)


def tiny_setup(joint, *extra):
    args = joint.parse_args(['--quick', *extra])
    torch.manual_seed(0)
    train = [torch.rand(1, 3, 48, 48)]
    return args, train, joint.build_car(args), joint.build_sr(args)


def parameters(net):
    return [p.detach().clone() for p in net.parameters()]


def changed(before, net):
    return [not torch.equal(b, p) for b, p in zip(before, net.parameters())]


def test_car_warmup_trains_car_alone_then_both_within_the_budget(joint):
    args, train, car, sr = tiny_setup(joint, '--iters', '4', '--car-warmup', '0.5')
    car0, sr0 = parameters(car), parameters(sr)
    warm = joint.Schedule(iterations=2)
    assert joint.train_joint(car, sr, train, args, warm, 'warm', train_sr_too=False)[0] == 2
    assert not any(changed(sr0, sr)) and any(changed(car0, car))  # the SR network is frozen in the warm-up
    assert all(p.requires_grad for p in sr.parameters())  # and trainable again afterwards
    warm_iters, iters, cpu = joint.train_b(car, sr, train, args)
    assert (warm_iters, iters) == (2, 4) and cpu > 0  # the warm-up counts toward (b)'s budget
    assert any(changed(sr0, sr))  # the joint phase trains the SR network
    args, train, car, sr = tiny_setup(joint, '--iters', '3', '--car-warmup', '1')
    sr0 = parameters(sr)
    assert joint.train_b(car, sr, train, args)[:2] == (3, 3) and not any(changed(sr0, sr))


def test_lr_sr_joint_sets_the_sr_learning_rate_of_arm_b_only(joint):
    args, train, car, sr = tiny_setup(joint, '--lr-sr-joint', '0')
    car0, sr0 = parameters(car), parameters(sr)
    joint.train_joint(car, sr, train, args, joint.Schedule(iterations=2))
    assert not any(changed(sr0, sr)) and any(changed(car0, car))
    args, train, car, sr = tiny_setup(joint)  # default: --lr-sr
    sr0 = parameters(sr)
    joint.train_joint(car, sr, train, args, joint.Schedule(iterations=2))
    assert any(changed(sr0, sr))
