"""The quality benchmarks' --heldout DIR / --split / --save-weights plumbing (issue 15), on a temporary folder
of small HR images, with tiny networks and a few iterations (no figure is asserted, only the plumbing)."""
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
    hcd = load('bench_hcd')
    assert hcd.load_car_rescaler(str(weights)).resampler.signed_kernels is True


def test_car_ceiling_on_a_folder(hr_folder):
    mean = load('bench_car_ceiling').main(['--oracle-iters', '0', '--teacher-steps', '--shifts',
                                           '--heldout', str(hr_folder)])
    box_gain, optimal_gain = mean
    assert optimal_gain > box_gain  # the least-squares LR is the ceiling


def test_hcd_crops_come_from_the_split_or_folder(hr_folder):
    hcd = load('bench_hcd')
    parser = argparse.ArgumentParser()
    hcd.add_heldout_arguments(parser)
    crops, where = hcd.evaluation_crops(parser.parse_args(['--heldout', str(hr_folder)]), 32)
    assert [name for name, _ in crops] == ['cat@0,0', 'cat@20,20', 'cat@40,40', 'cup@0,0', 'cup@20,20', 'cup@40,40']
    assert crops[0][1].shape == (3, 32, 32) and str(hr_folder) in where
    default, where = hcd.evaluation_crops(parser.parse_args([]), 32)
    assert len(default) == len(hcd.HELD_OUT) and 'test' in where
    validation, _ = hcd.evaluation_crops(parser.parse_args(['--split', 'validation']), 32)
    assert {name.split('@')[0] for name, _ in validation} == {'camera', 'coins', 'brick'}


def test_hcd_saves_the_trained_irn(hr_folder, tmp_path, monkeypatch):
    hcd = load('bench_hcd')
    monkeypatch.setattr(hcd, 'quality_tables', lambda *args, **kwargs: [])
    hcd.main(['--quick', '--train-seconds', '0.2', '--skip-bicubic', '--heldout', str(hr_folder),
              '--save-weights', str(tmp_path / 'irn.pth')])
    checkpoint = torch.load(tmp_path / 'irn.pth', weights_only=True)
    from basicsr.archs import build_network
    net = build_network(dict(checkpoint['network_g']))
    net.load_state_dict(checkpoint['params'])


def test_enhancer_and_lmar_objective_read_the_folder(hr_folder):
    enhancers = load('bench_enhancers')
    name, image = enhancers.source_image(argparse.Namespace(heldout=str(hr_folder), split=None))
    assert name == 'cat' and image.shape == (72, 72, 3)
    assert enhancers.source_image(argparse.Namespace(heldout=None, split=None))[0] == 'coffee'
    objective = load('bench_lmar_demo_objective')
    from basicsr_lmar.data.skimage_dataset import SkimagePhotoDataset
    dataset = SkimagePhotoDataset(dict(phase='val', split='test', degradation='lowlight', resize_to=[48, 64]))
    samples = objective.folder_samples(argparse.Namespace(heldout=str(hr_folder), split='test'), dataset)
    assert [s['lq_path'] for s in samples] == ['cat.png', 'cup.png']
    assert samples[0]['gt'].shape == samples[0]['lq'].shape == (3, 48, 64)
    assert samples[0]['lq'].mean() < 0.7 * samples[0]['gt'].mean()  # darkened as the demo's data
