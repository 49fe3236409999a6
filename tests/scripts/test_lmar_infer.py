import importlib.util
import pathlib

import cv2
import numpy as np
import pytest
import torch
from skimage import data

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.lmar_arch import LMARResampler
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet
from basicsr_lmar.errors import UserError

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / 'scripts' / 'lmar_infer.py'


def _module():
    spec = importlib.util.spec_from_file_location('lmar_infer', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    resampler = LMARResampler(mlp_backend='torch', mlp_width=16, mlp_hidden_layers=1)
    enhancer = UHDUNet(model_channel=2)
    torch.save({'params': resampler.state_dict()}, tmp_path / 'lmar.pth')
    torch.save({'params': enhancer.state_dict()}, tmp_path / 'enhancer.pth')
    (tmp_path / 'opt.yml').write_text(
        'network_g: {type: LMARResampler, mlp_backend: torch, mlp_width: 16, mlp_hidden_layers: 1}\n'
        'network_enhancer: {type: UHDUNet, model_channel: 2}\n'
        f'path: {{pretrain_network_g: {tmp_path / "lmar.pth"}, '
        f'pretrain_network_enhancer: {tmp_path / "enhancer.pth"}}}\n')
    inputs = tmp_path / 'in'
    inputs.mkdir()
    photo = data.astronaut()[:96, :128, ::-1]  # BGR for OpenCV
    cv2.imwrite(str(inputs / 'a8.png'), photo)
    cv2.imwrite(str(inputs / 'b16.png'), photo.astype(np.uint16) * 257)
    cv2.imwrite(str(inputs / 'c.jpg'), photo)
    return tmp_path, resampler, enhancer


def test_folder_of_8_16_bit_png_and_jpeg(setup):
    tmp_path, resampler, enhancer = setup
    module = _module()
    args = module.parse_args(['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'in'), '-o',
                              str(tmp_path / 'out'), '--scale', '2', '--resizer', 'bicubic', '--device', 'cpu'])
    written, failed = module.run(args)
    assert [pathlib.Path(p).name for p in written] == ['a8.png', 'b16.png', 'c.png'] and not failed
    out8 = cv2.imread(written[0], cv2.IMREAD_UNCHANGED)
    out16 = cv2.imread(written[1], cv2.IMREAD_UNCHANGED)
    assert out8.shape == (96, 128, 3) and out8.dtype == np.uint8
    assert out16.shape == (96, 128, 3) and out16.dtype == np.uint16
    # same pipeline as the script, computed here: LMAR at 48x64 -> enhancer -> bicubic back
    x = torch.from_numpy(cv2.imread(str(tmp_path / 'in' / 'a8.png'))[:, :, ::-1].astype(np.float32) / 255)
    x = x.permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        expected = resampler.resize(enhancer(resampler(x, (48, 64), kernel='bicubic')), (96, 128), 'bicubic')
    expected = (expected.clamp(0, 1)[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
    assert np.abs(out8.astype(np.float32) - expected).max() <= 1
    assert not list((tmp_path / 'out').glob('.*partial*'))  # temporary names were renamed


def test_unreadable_file_is_named_or_skipped(setup):
    tmp_path, _, _ = setup
    (tmp_path / 'in' / 'broken.png').write_bytes(b'not a png')
    module = _module()
    base = ['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'),
            '--scale', '3', '--device', 'cpu']
    with pytest.raises(UserError, match='broken.png'):
        module.run(module.parse_args(base))
    written, failed = module.run(module.parse_args(base + ['--skip-bad']))
    assert len(written) == 3 and [pathlib.Path(p).name for p in failed] == ['broken.png']


def test_missing_checkpoint_is_named(setup):
    tmp_path, _, _ = setup
    module = _module()
    args = module.parse_args(['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'o'),
                              '--lmar', str(tmp_path / 'nope.pth'), '--device', 'cpu'])
    with pytest.raises(UserError, match='nope.pth'):
        module.run(args)


def test_ema_weights_are_preferred(setup):
    """A checkpoint of a run with train.ema_decay holds 'params' and 'params_ema'; the EMA ones are used."""
    tmp_path, resampler, _ = setup
    averaged = LMARResampler(mlp_backend='torch', mlp_width=16, mlp_hidden_layers=1)
    with torch.no_grad():
        averaged.modulation.bias.fill_(0.25)
    torch.save({'params': resampler.state_dict(), 'params_ema': averaged.state_dict()}, tmp_path / 'lmar.pth')
    loaded, _ = _module().build_networks(str(tmp_path / 'opt.yml'))
    torch.testing.assert_close(loaded.modulation.bias, torch.full((3, ), 0.25))


def _args(tmp_path, *extra):
    return ['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'),
            '--resizer', 'bicubic', '--device', 'cpu', *map(str, extra)]


def test_degenerate_working_size_is_refused_with_the_value_that_works(setup, capsys, monkeypatch):
    from tests.scripts.tool_runs import forbid, refused

    tmp_path, _, _ = setup
    module = _module()
    with monkeypatch.context() as patch:
        forbid(patch, LMARResampler, 'enhance')
        message = refused(module, _args(tmp_path, '--scale', '1000'), capsys)
        assert message.startswith(f'lmar_infer.py: error: 3 of 3 images cannot be processed in {tmp_path / "in"}')
        assert '  a8.png: 96x128 (HxW) would be enhanced at 1x1, below the smallest working size 8x8; use --scale ' \
               '12.8 or less\n' in message
        message = refused(module, _args(tmp_path, '--size', '8', '8'), capsys)
        assert 'would be enhanced at 1x1, below the smallest working size 8x8; use --size 169 225 or more' in message
        assert 'must be >= 1' in refused(module, _args(tmp_path, '--scale', '0.5'), capsys)
        assert 'at most --reference-size 2160 3840' in refused(module, _args(tmp_path, '--size', '3000', '10'), capsys)
        assert not (tmp_path / 'out').exists()
    # the values named in the messages work
    written, _ = module.run(module.parse_args(_args(tmp_path, '--scale', '12.8')))
    assert cv2.imread(written[0]).shape == (96, 128, 3)
    written, _ = module.run(module.parse_args(_args(tmp_path, '--size', '169', '225', '--overwrite')))
    assert len(written) == 3


def test_tiny_image_and_empty_folder_are_named(setup, capsys, monkeypatch):
    from tests.scripts.tool_runs import forbid, refused

    tmp_path, _, _ = setup
    module = _module()
    forbid(monkeypatch, LMARResampler, 'enhance')
    cv2.imwrite(str(tmp_path / 'in' / 'tiny.png'), np.zeros((5, 5, 3), np.uint8))
    message = refused(module, _args(tmp_path, '--scale', '2'), capsys)
    assert message.startswith(f'lmar_infer.py: error: 1 of 4 images cannot be processed in {tmp_path / "in"}')
    assert 'tiny.png: 5x5 (HxW) is smaller than the smallest working size 8x8; LMAR only downscales' in message
    (tmp_path / 'empty').mkdir()
    message = refused(module, ['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'empty'), '-o',
                               str(tmp_path / 'out'), '--device', 'cpu'], capsys)
    assert message.startswith(f'lmar_infer.py: error: -i/--input: input folder {tmp_path}/empty has no images')
    assert message.count('\n') == 1 and not (tmp_path / 'out').exists()


def test_output_folder_problems_are_named_before_compute(setup, capsys, monkeypatch):
    from basicsr_lmar.cli import folders
    from tests.scripts.tool_runs import forbid, refused

    tmp_path, _, _ = setup
    module = _module()
    forbid(monkeypatch, LMARResampler, 'enhance')
    (tmp_path / 'afile').write_text('')
    base = ['-opt', str(tmp_path / 'opt.yml'), '-i', str(tmp_path / 'in'), '--device', 'cpu']
    assert refused(module, base + ['-o', str(tmp_path / 'afile' / 'out')], capsys) == (
        f'lmar_infer.py: error: -o/--output {tmp_path}/afile/out: cannot create it, {tmp_path}/afile is a file, not a '
        'folder\n')
    assert 'is the input folder' in refused(module, base + ['-o', str(tmp_path / 'in')], capsys)

    def denied(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(folders.tempfile, 'mkstemp', denied)
    assert refused(module, base + ['-o', str(tmp_path / 'out')], capsys) == (
        f'lmar_infer.py: error: -o/--output: cannot write to {tmp_path}/out: permission denied\n')
    assert not (tmp_path / 'out').exists()


def test_rerun_skips_finished_images_and_says_so(setup, capsys, monkeypatch):
    tmp_path, _, _ = setup
    module = _module()
    module.run(module.parse_args(_args(tmp_path, '--scale', '4')))
    capsys.readouterr()
    calls = []
    original = LMARResampler.enhance
    monkeypatch.setattr(LMARResampler, 'enhance', lambda *a, **k: calls.append(1) or original(*a, **k))
    (tmp_path / 'out' / 'c.png').unlink()
    written, _ = module.run(module.parse_args(_args(tmp_path, '--scale', '4')))
    out, err = capsys.readouterr()
    assert [pathlib.Path(p).name for p in written] == ['c.png'] and len(calls) == 1
    assert f'skipping 2 image(s) whose outputs exist in {tmp_path}/out (--overwrite recomputes them)' in err
    assert out == f'lmar_infer: 1 image(s) computed, written to {tmp_path}/out; 2 skipped, outputs already there ' \
                  '(--overwrite recomputes them)\n'


def test_wrong_checkpoint_gives_the_readable_report_and_exit_code_2(setup):
    from tests.scripts.tool_runs import run_script

    tmp_path, _, _ = setup
    args = _args(tmp_path, '--scale', '2', '--lmar', tmp_path / 'enhancer.pth')  # the enhancer's weights
    run = run_script('lmar_infer', *args)
    assert run.returncode == 2 and 'Traceback' not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[0] == (f'lmar_infer.py: error: LMAR resampler (--lmar / path.pretrain_network_g): '
                        f'{tmp_path}/enhancer.pth does not fit LMARResampler:')
    assert lines[1].startswith('  missing in checkpoint (') and 'imnet.params' in lines[1]
    assert lines[2].startswith('  not in network (')
    assert len(lines) <= 5 and not (tmp_path / 'out').exists()
    run = run_script('lmar_infer', *args, env={'BASICSR_LMAR_DEBUG': '1'})
    assert run.returncode == 1 and 'Traceback' in run.stderr and 'CheckpointMismatchError' in run.stderr
