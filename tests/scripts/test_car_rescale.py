import importlib.util

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network

import basicsr_lmar  # noqa: F401
from basicsr_lmar.data.skimage_photos import load_photo
from basicsr_lmar.errors import UserError
from tests.conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location('car_rescale', REPO_ROOT / 'scripts' / 'car_rescale.py')
car_rescale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(car_rescale)


@pytest.fixture
def setup(tmp_path):
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_car_tiny.yml').read_text())
    torch.manual_seed(0)
    for label in ('g', 'sr'):
        net = build_network(dict(opt[f'network_{label}']))
        torch.save({'params': net.state_dict()}, tmp_path / f'net_{label}.pth')
    opt['path'] = {'pretrain_network_g': str(tmp_path / 'net_g.pth'),
                   'pretrain_network_sr': str(tmp_path / 'net_sr.pth')}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    hr = tmp_path / 'hr'
    hr.mkdir()
    cv2.imwrite(str(hr / 'astronaut.png'), (load_photo('astronaut')[:36, :52, ::-1] * 255).round().astype(np.uint8))
    cv2.imwrite(str(hr / 'coffee.jpg'), (load_photo('coffee')[100:140, 200:240, ::-1] * 255).astype(np.uint8))
    return tmp_path


def test_downscale_upscale_and_psnr(setup):
    scores = car_rescale.main(['-opt', str(setup / 'opt.yml'), '--hr', str(setup / 'hr'), '--lr-out',
                               str(setup / 'lr'), '--sr-out', str(setup / 'sr'), '--device', 'cpu'])
    assert len(scores) == 2 and all(0 < p < 100 for p, _ in scores)
    lr = cv2.imread(str(setup / 'lr' / 'astronaut.png'))
    assert lr.shape == (32 // 4, 48 // 4, 3)  # 36x52 cropped to multiples of 8
    assert cv2.imread(str(setup / 'sr' / 'coffee.png')).shape == (40, 40, 3)
    assert not list((setup / 'lr').glob('*.tmp*'))
    first = cv2.imread(str(setup / 'sr' / 'astronaut.png'))
    # upscaling the saved 8-bit LR reproduces the SR of the round trip exactly
    again = car_rescale.main(['-opt', str(setup / 'opt.yml'), '--lr', str(setup / 'lr'), '--hr', str(setup / 'hr'),
                              '--sr-out', str(setup / 'sr2'), '--device', 'cpu'])
    np.testing.assert_array_equal(cv2.imread(str(setup / 'sr2' / 'astronaut.png')), first)
    np.testing.assert_allclose(sorted(again), sorted(scores))


def test_missing_folder_is_named(setup):
    with pytest.raises(UserError, match='nowhere'):
        car_rescale.main(['-opt', str(setup / 'opt.yml'), '--hr', str(setup / 'nowhere'), '--lr-out',
                          str(setup / 'lr'), '--device', 'cpu'])


def test_gray_and_16bit_inputs_are_converted_and_a_corrupt_file_is_named(setup):
    photo = load_photo('astronaut')[:36, :52]  # the fixture's astronaut.png, at 16 bits
    cv2.imwrite(str(setup / 'hr' / 'gray.png'), (photo.mean(axis=2) * 255).round().astype(np.uint8))
    cv2.imwrite(str(setup / 'hr' / 'deep.png'), (photo[:, :, ::-1] * 65535).round().astype(np.uint16))
    car_rescale.main(['-opt', str(setup / 'opt.yml'), '--hr', str(setup / 'hr'), '--lr-out', str(setup / 'lr'),
                      '--device', 'cpu'])
    gray_lr = cv2.imread(str(setup / 'lr' / 'gray.png'), cv2.IMREAD_UNCHANGED)
    assert gray_lr.shape == (8, 12, 3) and gray_lr.dtype == np.uint8  # replicated to RGB, 8-bit LR
    deep_lr = cv2.imread(str(setup / 'lr' / 'deep.png'), cv2.IMREAD_UNCHANGED)
    assert deep_lr.shape == (8, 12, 3) and deep_lr.dtype == np.uint8
    # the 16-bit input was read at full depth: its LR matches the LR of the same photo read from 8 bits
    # to within the 8-bit rounding of the input
    assert np.abs(deep_lr.astype(int) - cv2.imread(str(setup / 'lr' / 'astronaut.png')).astype(int)).max() <= 3
    (setup / 'hr' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n cut short')
    with pytest.raises(Exception, match='broken.png: not a readable image'):
        car_rescale.main(['-opt', str(setup / 'opt.yml'), '--hr', str(setup / 'hr'), '--lr-out', str(setup / 'lr'),
                          '--device', 'cpu'])


def _base(setup, *extra):
    return ['-opt', str(setup / 'opt.yml'), '-i', str(setup / 'hr'), '--device', 'cpu', *map(str, extra)]


def test_hr_not_a_multiple_of_8_is_cropped_padded_or_refused_and_says_so(setup, capsys, monkeypatch):
    from basicsr_lmar.archs.car_arch import CARResamplerNet
    from tests.scripts.tool_runs import forbid, refused

    car_rescale.main(_base(setup, '-o', setup / 'lr', '--sr-out', setup / 'sr'))
    err = capsys.readouterr().err
    assert 'car_rescale: 1 image(s) cropped at the bottom/right to multiples of 8 for CARResamplerNet x4 ' \
           '(--size-policy crop):' in err
    assert 'astronaut.png: 36x52 cropped to 32x48' in err  # listed before the progress bar starts

    scores = car_rescale.main(_base(setup, '-o', setup / 'lr_pad', '--sr-out', setup / 'sr_pad',
                                    '--size-policy', 'pad'))
    assert 'astronaut.png: 36x52 padded to 40x56, outputs cropped back' in capsys.readouterr().err
    assert cv2.imread(str(setup / 'sr_pad' / 'astronaut.png')).shape == (36, 52, 3)  # the HR's size
    assert cv2.imread(str(setup / 'lr_pad' / 'astronaut.png')).shape == (10, 14, 3)  # LR of the padded 40x56
    assert len(scores) == 2
    # upscaling the stored LR of a padded HR crops the SR back to the HR given with -i
    car_rescale.main(['-opt', str(setup / 'opt.yml'), '--lr', str(setup / 'lr_pad'), '-i', str(setup / 'hr'),
                      '--sr-out', str(setup / 'sr_pad2'), '--device', 'cpu'])
    np.testing.assert_array_equal(cv2.imread(str(setup / 'sr_pad2' / 'astronaut.png')),
                                  cv2.imread(str(setup / 'sr_pad' / 'astronaut.png')))

    forbid(monkeypatch, CARResamplerNet, 'forward')
    message = refused(car_rescale, _base(setup, '-o', setup / 'lr_refuse', '--size-policy', 'refuse'), capsys)
    assert message == (f'car_rescale.py: error: 1 of 2 images cannot be processed in {setup / "hr"} (-i/--input):\n'
                       '  astronaut.png: 36x52 (HxW) is not a multiple of 8, which CARResamplerNet x4 needs; crop it '
                       '(to 32x48) or pad it, or pass --size-policy crop or pad\n'
                       'Fix or remove them, or pass --skip-bad to leave them out.\n')
    assert not (setup / 'lr_refuse').exists()


def test_tiny_image_is_refused_before_compute_under_every_policy(setup, capsys, monkeypatch):
    from basicsr_lmar.archs.car_arch import CARResamplerNet
    from tests.scripts.tool_runs import forbid, refused

    cv2.imwrite(str(setup / 'hr' / 'tiny.png'), np.zeros((5, 5, 3), np.uint8))
    forbid(monkeypatch, CARResamplerNet, 'forward')
    for policy in ('crop', 'pad', 'refuse'):
        message = refused(car_rescale, _base(setup, '-o', setup / 'lr', '--size-policy', policy), capsys)
        assert 'tiny.png: 5x5 (HxW) is smaller than the minimum 8x8 of CARResamplerNet x4' in message
        assert not (setup / 'lr').exists()


def test_corrupt_file_is_named_or_skipped(setup, capsys):
    from tests.scripts.tool_runs import refused

    (setup / 'hr' / 'broken.png').write_bytes(b'not a png')
    message = refused(car_rescale, _base(setup, '-o', setup / 'lr'), capsys)
    assert 'broken.png: not a readable image' in message and 'pass --skip-bad' in message
    assert not (setup / 'lr').exists()
    car_rescale.main(_base(setup, '-o', setup / 'lr', '--skip-bad'))
    out, err = capsys.readouterr()
    assert sorted(p.name for p in (setup / 'lr').iterdir()) == ['astronaut.png', 'coffee.png']
    assert 'leaving out 1 image(s) (--skip-bad)' in err and 'broken.png' in err
    assert '2 image(s) computed' in out and '1 left out as unreadable or unusable (--skip-bad)' in out


def test_16_bit_input_keeps_16_bits_in_the_sr(setup, capsys):
    photo = load_photo('astronaut')[:32, :48]
    cv2.imwrite(str(setup / 'hr' / 'deep.png'), (photo[:, :, ::-1] * 65535).round().astype(np.uint16))
    car_rescale.main(_base(setup, '-o', setup / 'lr', '--sr-out', setup / 'sr'))
    assert cv2.imread(str(setup / 'sr' / 'deep.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert cv2.imread(str(setup / 'sr' / 'coffee.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert cv2.imread(str(setup / 'lr' / 'deep.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert 'deep.png is 16-bit; its lr output is 8-bit, as the method stores it' in capsys.readouterr().err
    car_rescale.main(_base(setup, '-o', setup / 'lr8', '--sr-out', setup / 'sr8', '--bit-depth', '8'))
    assert cv2.imread(str(setup / 'sr8' / 'deep.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint8


def test_x4_checkpoint_in_an_x2_run_gives_the_readable_report(setup):
    from tests.scripts.tool_runs import run_script

    opt = yaml.safe_load((setup / 'opt.yml').read_text())
    opt['scale'] = opt['network_g']['scale'] = opt['network_sr']['upscale'] = 2
    (setup / 'opt_x2.yml').write_text(yaml.safe_dump(opt))
    run = run_script('car_rescale', '-opt', setup / 'opt_x2.yml', '-i', setup / 'hr', '-o', setup / 'lr',
                     '--device', 'cpu')
    assert run.returncode == 2 and 'Traceback' not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()
    assert any(line.startswith('car_rescale.py: error: resampler (--net-g / path.pretrain_network_g): ') and
               'does not fit CARResamplerNet:' in line for line in last)
    assert '  shape of kernel_head.2.weight: network (49, 16, 3, 3), checkpoint (169, 16, 3, 3)' in last
    assert len(last) < 20 and not (setup / 'lr').exists()


def test_output_folder_is_probed_before_compute(setup, capsys, monkeypatch):
    from basicsr_lmar.archs.car_arch import CARResamplerNet
    from basicsr_lmar.cli import folders
    from tests.scripts.tool_runs import forbid, refused

    forbid(monkeypatch, CARResamplerNet, 'forward')
    (setup / 'afile').write_text('')
    message = refused(car_rescale, _base(setup, '-o', setup / 'afile' / 'out'), capsys)
    assert message == (f'car_rescale.py: error: -o/--lr-out {setup}/afile/out: cannot create it, {setup}/afile is a '
                       'file, not a folder\n')
    message = refused(car_rescale, _base(setup, '--sr-out', setup / 'afile'), capsys)
    assert f'--sr-out {setup}/afile is a file, not a folder' in message

    def denied(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(folders.tempfile, 'mkstemp', denied)
    message = refused(car_rescale, _base(setup, '-o', setup / 'lr'), capsys)
    assert message == f'car_rescale.py: error: -o/--lr-out: cannot write to {setup}/lr: permission denied\n'
    assert not (setup / 'lr').exists()


def test_rerun_and_empty_input_say_what_happened(setup, capsys, monkeypatch):
    from basicsr_lmar.archs.car_arch import CARResamplerNet
    from tests.scripts.tool_runs import forbid, refused

    car_rescale.main(_base(setup, '-o', setup / 'lr'))
    capsys.readouterr()
    forbid(monkeypatch, CARResamplerNet, 'forward')
    assert car_rescale.main(_base(setup, '-o', setup / 'lr')) == []
    out, err = capsys.readouterr()
    assert f'skipping 2 image(s) whose outputs exist in {setup}/lr (--overwrite recomputes them)' in err
    assert out.startswith('car_rescale: 0 image(s) computed') and '2 skipped, outputs already there' in out
    (setup / 'empty').mkdir()
    message = refused(car_rescale, ['-opt', str(setup / 'opt.yml'), '-i', str(setup / 'empty'), '-o',
                                    str(setup / 'lr2'), '--device', 'cpu'], capsys)
    assert message.startswith(f'car_rescale.py: error: -i/--input: input folder {setup}/empty has no images (it is '
                              'empty; looked for .png') and message.count('\n') == 1


def test_a_damaged_checkpoint_is_named_with_its_size(setup, capsys):
    """``head -c 20000 net_g.pth > t.pth`` given to --net-g: torch's ``OSError: [Errno 22]`` named the file nowhere."""
    from tests.scripts.tool_runs import refused

    truncated = setup / 't.pth'
    truncated.write_bytes((setup / 'net_g.pth').read_bytes()[:20000])
    message = refused(car_rescale, ['-opt', str(setup / 'opt.yml'), '-i', str(setup / 'hr'), '-o', str(setup / 'lr'),
                                    '--net-g', str(truncated), '--device', 'cpu'], capsys)
    assert message == (f'car_rescale.py: error: resampler (--net-g / path.pretrain_network_g): {truncated} is damaged '
                       '(20000 bytes): its zip archive ends early or is corrupted, so torch cannot read it (an '
                       'interrupted download, copy or save cuts a file short); copy or download it again, or point '
                       'resampler (--net-g / path.pretrain_network_g) at another checkpoint.\n')
    assert not (setup / 'lr').exists()
