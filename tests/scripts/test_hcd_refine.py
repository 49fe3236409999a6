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
