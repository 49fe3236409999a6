"""The benchmarks' --heldout DIR / --split / --save-weights plumbing, on a temporary folder of small HR images,
with tiny networks and a few iterations (no figure is asserted, only the plumbing)."""
import argparse

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


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / 'hr'
    folder.mkdir()
    for name, (y, x) in (('cat', (60, 120)), ('cup', (100, 200))):
        photo = load_photo('chelsea' if name == 'cat' else 'coffee')[y:y + 72, x:x + 72]
        cv2.imwrite(str(folder / f'{name}.png'), (photo[..., ::-1] * 255).round().astype(np.uint8))
    return folder


def test_car_quality_heldout_signed_and_saved_weights_load_in_car_rescale(hr_folder, tmp_path):
    bench = load('bench_car_quality')
    weights = tmp_path / 'car.pth'
    rows = bench.main(['--iters', '2', '--crop', '32', '--batch', '1', '--width', '4', '4', '8', '0', '--signed',
                       '--heldout', str(hr_folder), '--save-weights', str(weights)])
    assert [row[0] for row in rows] == ['cat', 'cup'] and rows[0][1] == (72, 72)
    checkpoint = torch.load(weights, weights_only=True)
    assert checkpoint['network_g']['signed_kernels'] is True
    rescale = load('car_rescale', REPO_ROOT / 'scripts')
    scores = rescale.main(['-opt', str(tmp_path / 'car.yml'), '-i', str(hr_folder), '--sr-out', str(tmp_path / 'sr'),
                           '--device', 'cpu'])
    # car_rescale's PSNR of the saved resampler + bicubic is the benchmark's CAR column
    np.testing.assert_allclose([s[0] for s in scores], [row[2][0] for row in rows], atol=1e-6)
    stopping = load('bench_hcd_stopping')
    assert stopping.car_rescaler(argparse.Namespace(car_checkpoint=str(weights))).resampler.signed_kernels is True


def test_car_ceiling_on_a_folder(hr_folder):
    mean = load('bench_car_ceiling').main(['--oracle-iters', '0', '--teacher-steps', '--shifts',
                                           '--heldout', str(hr_folder)])
    box_gain, optimal_gain = mean
    assert optimal_gain > box_gain  # the least-squares LR is the ceiling


def test_enhancer_benchmark_reads_the_folder(hr_folder):
    enhancers = load('bench_enhancers')
    name, image = enhancers.source_image(argparse.Namespace(heldout=str(hr_folder), split=None))
    assert name == 'cat' and image.shape == (72, 72, 3)
    assert enhancers.source_image(argparse.Namespace(heldout=None, split=None))[0] == 'coffee'


def test_hcd_timings_run_on_the_fixed_test_crops():
    heldout = load('heldout')
    crops = heldout.test_crops(64)
    assert [name for name, _ in crops] == [f'{photo}@{y},{x}' for photo, (y, x) in heldout.TEST_CROPS]
    assert all(crop.shape == (3, 64, 64) for _, crop in crops)
