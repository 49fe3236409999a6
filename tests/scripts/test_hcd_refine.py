import os
import pathlib
import subprocess
import sys

import cv2
import pytest
import numpy as np
import yaml
from skimage import data

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_hcd_refine_writes_8bit_lr_pngs(tmp_path):
    folder = tmp_path / 'hr'
    folder.mkdir()
    cv2.imwrite(str(folder / 'rocket.png'), data.rocket()[200:234, 200:234, ::-1])  # 34 -> cropped to 32
    cv2.imwrite(str(folder / 'coffee.jpg'), data.coffee()[100:132, 200:232, ::-1])
    (folder / 'notes.txt').write_text('not an image')
    opt = {'name': 'refine', 'model_type': 'HCDModel', 'scale': 4,
           'rescaler': {'type': 'BicubicSRRescaler', 'scale': 4},
           'hcd': {'steps_hr': 3, 'steps_lr': 3, 'epsilon': 0.1, 'step_size': 0.02, 'seed': 0}}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    out = tmp_path / 'lr'
    run = subprocess.run([sys.executable, str(REPO / 'scripts' / 'hcd_refine.py'), '-opt', str(tmp_path / 'opt.yml'),
                          '-i', str(folder), '-o', str(out), '--device', 'cpu', '--save-sr'],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ['coffee.png', 'coffee_SR.png', 'rocket.png', 'rocket_SR.png']
    lr = cv2.imread(str(out / 'rocket.png'))
    assert lr.shape == (8, 8, 3) and lr.dtype == np.uint8
    assert 'mean RGB PSNR gain' in run.stdout
    gain = float(run.stdout.split('base rescaler: ')[1].split(' dB')[0])
    assert gain > 0
    # A second run skips existing outputs (no rewrite).
    mtime = (out / 'rocket.png').stat().st_mtime_ns
    run = subprocess.run([sys.executable, str(REPO / 'scripts' / 'hcd_refine.py'), '-opt', str(tmp_path / 'opt.yml'),
                          '-i', str(folder), '-o', str(out), '--device', 'cpu'],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0 and (out / 'rocket.png').stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_hcd_refine_batches_same_size_images_with_the_one_at_a_time_results(tmp_path):
    folder = tmp_path / 'hr'
    folder.mkdir()
    # a, b and d share a size after the crop to a multiple of 4 (33 -> 32), c does not; the batches are
    # [a, b] [c] [d] with --batch-size 2
    cv2.imwrite(str(folder / 'a.png'), data.rocket()[200:232, 200:232, ::-1])
    cv2.imwrite(str(folder / 'b.png'), data.coffee()[100:133, 200:233, ::-1])
    cv2.imwrite(str(folder / 'c.png'), data.astronaut()[100:124, 100:140, ::-1])
    cv2.imwrite(str(folder / 'd.png'), data.chelsea()[50:82, 60:92, ::-1])
    opt = {'name': 'refine', 'model_type': 'HCDModel', 'scale': 4,
           'rescaler': {'type': 'BicubicSRRescaler', 'scale': 4},
           'hcd': {'steps_hr': 3, 'steps_lr': 3, 'epsilon': 0.1, 'step_size': 0.02, 'seed': 0}}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    outputs = {}
    for batch_size in (1, 2):
        out = tmp_path / f'lr_batch{batch_size}'
        run = subprocess.run([sys.executable, str(REPO / 'scripts' / 'hcd_refine.py'),
                              '-opt', str(tmp_path / 'opt.yml'), '-i', str(folder), '-o', str(out),
                              '--device', 'cpu', '--batch-size', str(batch_size)],
                             env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        assert '4 images' in run.stdout
        outputs[batch_size] = {name: cv2.imread(str(out / f'{name}.png')) for name in 'abcd'}
    assert outputs[1]['c'].shape == (6, 10, 3) and outputs[1]['b'].shape == (8, 8, 3)
    for name in 'abcd':
        np.testing.assert_array_equal(outputs[2][name], outputs[1][name])
    run = subprocess.run([sys.executable, str(REPO / 'scripts' / 'hcd_refine.py'), '-opt', str(tmp_path / 'opt.yml'),
                          '-i', str(folder), '-o', str(tmp_path / 'x'), '--batch-size', '0'],
                         env=env, capture_output=True, text=True)
    assert run.returncode != 0 and '--batch-size must be >= 1' in run.stderr


def test_hcd_refine_names_an_image_smaller_than_the_scale(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location('hcd_refine', REPO / 'scripts' / 'hcd_refine.py')
    hcd_refine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hcd_refine)
    folder = tmp_path / 'hr'
    folder.mkdir()
    cv2.imwrite(str(folder / 'tiny.png'), data.rocket()[:3, :40, ::-1])
    opt = {'name': 'refine', 'model_type': 'HCDModel', 'scale': 4,
           'rescaler': {'type': 'BicubicSRRescaler', 'scale': 4}, 'hcd': {'steps_hr': 1, 'steps_lr': 1}}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    model = hcd_refine.load_model(str(tmp_path / 'opt.yml'), device='cpu')
    with pytest.raises(ValueError, match=r'tiny\.png is 40x3 pixels, smaller than the scale 4'):
        hcd_refine.refine_folder(model, str(folder), str(tmp_path / 'lr'))
    assert not list((tmp_path / 'lr').iterdir())
