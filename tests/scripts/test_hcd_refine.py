import os
import pathlib
import subprocess
import sys

import cv2
import pytest
import numpy as np
import torch
import yaml
from skimage import data

from basicsr_lmar.errors import UserError
from tests.scripts.tool_runs import load_script

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


def _opt(tmp_path, **extra):
    opt = {'name': 'refine', 'model_type': 'HCDModel', 'scale': 4,
           'rescaler': {'type': 'BicubicSRRescaler', 'scale': 4}, 'hcd': {'steps_hr': 1, 'steps_lr': 1}, **extra}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    return tmp_path / 'opt.yml'


def _folder(tmp_path, *names):
    folder = tmp_path / 'hr'
    folder.mkdir(exist_ok=True)
    for index, name in enumerate(names):
        cv2.imwrite(str(folder / name), data.rocket()[200 + 8 * index:232 + 8 * index, 200:236, ::-1])
    return folder


def test_hcd_refine_names_an_image_smaller_than_the_scale(tmp_path, capsys, monkeypatch):
    from basicsr_lmar.models.hcd_model import HCDModel
    from tests.scripts.tool_runs import forbid, refused

    hcd_refine = load_script('hcd_refine')
    folder = _folder(tmp_path, 'a.png')
    cv2.imwrite(str(folder / 'tiny.png'), data.rocket()[:3, :40, ::-1])
    model = hcd_refine.load_model(str(_opt(tmp_path)), device='cpu')
    forbid(monkeypatch, HCDModel, 'test')
    with pytest.raises(UserError, match=r'tiny\.png: 3x40 \(HxW\) is smaller than the minimum 4x4 of '
                                        'BicubicSRRescaler x4'):
        hcd_refine.refine_folder(model, str(folder), str(tmp_path / 'lr'))
    assert not (tmp_path / 'lr').exists()  # refused before the output folder was made
    message = refused(hcd_refine, ['-opt', str(tmp_path / 'opt.yml'), '-i', str(folder), '-o', str(tmp_path / 'lr'),
                                   '--device', 'cpu'], capsys)
    assert message.startswith(f'hcd_refine.py: error: 1 of 2 images cannot be processed in {folder} (-i/--input):')


def test_hcd_refine_rerun_says_it_skipped_finished_images(tmp_path, capsys, monkeypatch):
    from basicsr_lmar.models.hcd_model import HCDModel
    from tests.scripts.tool_runs import forbid

    hcd_refine = load_script('hcd_refine')
    folder = _folder(tmp_path, 'a.png', 'b.png')
    argv = ['-opt', str(_opt(tmp_path)), '-i', str(folder), '-o', str(tmp_path / 'lr'), '--device', 'cpu']
    assert len(hcd_refine.main(argv)) == 2
    capsys.readouterr()
    forbid(monkeypatch, HCDModel, 'test')
    assert hcd_refine.main(argv) == []
    out, err = capsys.readouterr()
    assert f'skipping 2 image(s) whose outputs exist in {tmp_path}/lr (--overwrite recomputes them)' in err
    assert out == 'hcd_refine: 0 image(s) computed; 2 skipped, outputs already there (--overwrite recomputes them)\n'


def test_hcd_refine_gain_is_basicsr_psnr_and_16_bit_is_kept(tmp_path, capsys):
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img

    from basicsr_lmar.ops.resize import resize
    from basicsr_lmar.ops.rounding import quantize

    hcd_refine = load_script('hcd_refine')
    folder = tmp_path / 'hr'
    folder.mkdir()
    photo = data.astronaut()[100:136, 100:140].astype(np.float64) / 255  # 36x40: cropped to 36x40 at x4
    cv2.imwrite(str(folder / 'deep.png'), (photo[:, :, ::-1] * 65535).round().astype(np.uint16))
    gains = hcd_refine.main(['-opt', str(_opt(tmp_path)), '-i', str(folder), '-o', str(tmp_path / 'lr'),
                             '--device', 'cpu', '--save-sr'])
    assert 'deep.png is 16-bit; its lr output is 8-bit, as the method stores it' in capsys.readouterr().err
    assert cv2.imread(str(tmp_path / 'lr' / 'deep.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    sr16 = cv2.imread(str(tmp_path / 'lr' / 'deep_SR.png'), cv2.IMREAD_UNCHANGED)
    assert sr16.dtype == np.uint16 and sr16.shape == (36, 40, 3)
    # the gain is basicsr's PSNR of the 8-bit reconstructions: HCD's minus the base rescaler's
    hr = torch.from_numpy(cv2.imread(str(folder / 'deep.png'), cv2.IMREAD_UNCHANGED)[:, :, ::-1] / 65535.0)
    hr = hr.permute(2, 0, 1)[None].float()
    base = resize(quantize(resize(hr, (9, 10), kernel='bicubic')), (36, 40), kernel='bicubic').clamp(0, 1)
    hr_img, sr_img = tensor2img([hr]), (sr16.astype(np.float64) / 257).round().astype(np.uint8)
    expected = calculate_psnr(sr_img, hr_img, crop_border=0) - calculate_psnr(tensor2img([base]), hr_img, crop_border=0)
    assert gains[0] == pytest.approx(expected, abs=1e-9)
    assert not hasattr(hcd_refine, 'psnr')


def test_hcd_refine_corrupt_file_and_missing_checkpoint_are_named(tmp_path, capsys):
    from tests.scripts.tool_runs import refused, run_script

    hcd_refine = load_script('hcd_refine')
    folder = _folder(tmp_path, 'a.png')
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n cut short')
    argv = ['-opt', str(_opt(tmp_path)), '-i', str(folder), '-o', str(tmp_path / 'lr'), '--device', 'cpu']
    message = refused(hcd_refine, argv, capsys)
    assert 'broken.png: not a readable image' in message and 'pass --skip-bad' in message
    assert not (tmp_path / 'lr').exists()
    assert len(hcd_refine.main(argv + ['--skip-bad'])) == 1
    assert '1 left out as unreadable or unusable (--skip-bad)' in capsys.readouterr().out
    (tmp_path / 'empty').mkdir()
    message = refused(hcd_refine, argv[:3] + [str(tmp_path / 'empty')] + argv[4:], capsys)
    assert message.startswith(f'hcd_refine.py: error: -i/--input: input folder {tmp_path}/empty has no images')
    assert message.count('\n') == 1

    opt = _opt(tmp_path, network_g={'type': 'InvRescaleNet', 'scale': 4, 'block_num': [1, 1]},
               rescaler={'type': 'IRNRescaler'}, path={'pretrain_network_g': str(tmp_path / 'nowhere.pth')})
    run = run_script('hcd_refine', '-opt', opt, '-i', folder, '-o', tmp_path / 'lr2', '--device', 'cpu')
    assert run.returncode == 2 and 'Traceback' not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f'hcd_refine.py: error: -opt {opt}: path.pretrain_network_g {tmp_path}/nowhere.pth does not exist; set it '
        'to the checkpoint of network_g')


def test_hcd_refine_wrong_checkpoint_and_unwritable_output_are_named_before_compute(tmp_path, capsys, monkeypatch):
    from basicsr.archs import build_network

    from basicsr_lmar.cli import folders
    from basicsr_lmar.models.hcd_model import HCDModel
    from tests.scripts.tool_runs import forbid, refused

    hcd_refine = load_script('hcd_refine')
    folder = _folder(tmp_path, 'a.png')
    forbid(monkeypatch, HCDModel, 'test')
    small = build_network({'type': 'InvRescaleNet', 'scale': 4, 'block_num': [1, 1]})
    torch.save({'params': small.state_dict()}, tmp_path / 'irn_small.pth')
    opt = _opt(tmp_path, network_g={'type': 'InvRescaleNet', 'scale': 4, 'block_num': [2, 1]},
               rescaler={'type': 'IRNRescaler'}, path={'pretrain_network_g': str(tmp_path / 'irn_small.pth')})
    argv = ['-opt', str(opt), '-i', str(folder), '-o', str(tmp_path / 'lr'), '--device', 'cpu']
    message = refused(hcd_refine, argv, capsys)
    assert message.startswith('hcd_refine.py: error: ') and f'{tmp_path}/irn_small.pth does not fit InvRescaleNet:' \
        in message and 'missing in checkpoint (' in message

    def denied(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(folders.tempfile, 'mkstemp', denied)
    argv[1] = str(_opt(tmp_path))
    assert refused(hcd_refine, argv, capsys) == (
        f'hcd_refine.py: error: -o/--output: cannot write to {tmp_path}/lr: permission denied\n')
    assert not (tmp_path / 'lr').exists()


@pytest.mark.parametrize('batch_size', [1, 2])
def test_hcd_refine_bar_ends_on_the_summary_figures(tmp_path, capsys, batch_size):
    """The bar's last mean gain is the summary's (iterating the bar closed it before the last batch's figures)."""
    import re

    hcd_refine = load_script('hcd_refine')
    folder = _folder(tmp_path, 'a.png', 'b.png', 'c.png')
    gains = hcd_refine.main(['-opt', str(_opt(tmp_path)), '-i', str(folder), '-o', str(tmp_path / 'lr'),
                             '--device', 'cpu', '--batch-size', str(batch_size)])
    out, err = capsys.readouterr()
    summary = re.search(r'mean RGB PSNR gain over the base rescaler: (\S+) dB', out).group(1)
    shown = re.findall(r'(\d+)/3 \[[^]]*image=(\S+), mean_gain_db=(\S+)\]', err)
    assert shown[-1] == ('3', 'c.png', summary) == ('3', 'c.png', f'{np.mean(gains):+.3f}')


def test_hcd_refine_names_a_damaged_checkpoint(tmp_path, capsys):
    from basicsr.archs import build_network

    from tests.scripts.tool_runs import refused

    hcd_refine = load_script('hcd_refine')
    folder = _folder(tmp_path, 'a.png')
    network = {'type': 'InvRescaleNet', 'scale': 4, 'block_num': [1, 1]}
    torch.save({'params': build_network(dict(network)).state_dict()}, tmp_path / 'irn.pth')
    truncated = tmp_path / 't.pth'
    truncated.write_bytes((tmp_path / 'irn.pth').read_bytes()[:20000])
    opt = _opt(tmp_path, network_g=network, rescaler={'type': 'IRNRescaler'},
               path={'pretrain_network_g': str(truncated)})
    message = refused(hcd_refine, ['-opt', str(opt), '-i', str(folder), '-o', str(tmp_path / 'lr'), '--device', 'cpu'],
                      capsys)
    assert message == (f'hcd_refine.py: error: path.pretrain_network_g: {truncated} is damaged (20000 bytes): its zip '
                       'archive ends early or is corrupted, so torch cannot read it (an interrupted download, copy or '
                       'save cuts a file short); copy or download it again, or point path.pretrain_network_g at '
                       'another checkpoint.\n')
    assert not (tmp_path / 'lr').exists()
