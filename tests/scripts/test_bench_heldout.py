"""The benchmarks' --heldout DIR / --split plumbing, on a temporary folder of small HR images, and the fixed test
crops of the HCD timings."""
import argparse

import cv2
import numpy as np
import pytest

from basicsr_lmar.data.skimage_photos import load_photo
from tests.scripts.tool_runs import load_benchmark as load


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / 'hr'
    folder.mkdir()
    for name, (y, x) in (('cat', (60, 120)), ('cup', (100, 200))):
        photo = load_photo('chelsea' if name == 'cat' else 'coffee')[y:y + 72, x:x + 72]
        cv2.imwrite(str(folder / f'{name}.png'), (photo[..., ::-1] * 255).round().astype(np.uint8))
    return folder


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
