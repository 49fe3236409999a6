import os
import re
import warnings

import cv2
import numpy as np
import pytest
import torch

from basicsr_lmar.cli import folders
from basicsr_lmar.cli.folders import FolderRun, prepare_output_folder
from basicsr_lmar.data.size_rules import SizeRule
from basicsr_lmar.data.image_files import ImageFileError
from basicsr_lmar.errors import UserError


def _image(path, height=12, width=16, dtype=np.uint8, channels=3):
    rng = np.random.default_rng(0)
    maximum = np.iinfo(dtype).max
    shape = (height, width, channels) if channels > 1 else (height, width)
    cv2.imwrite(str(path), rng.integers(0, maximum + 1, shape, dtype=dtype))


def _run(folder, **kwargs):
    logged = []
    return FolderRun('tool', str(folder), log=logged.append, **kwargs), logged


def test_missing_empty_or_image_less_input_is_one_line(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'notes').mkdir()
    (tmp_path / 'notes' / 'readme.txt').write_text('no images here')
    (tmp_path / 'afile').write_text('')
    for name, expected in [('absent', 'absent does not exist'), ('empty', 'has no images (it is empty'),
                           ('notes', 'has no images (it holds 1 other entries'),
                           ('afile', 'afile is a file, not a folder')]:
        run, _ = _run(tmp_path / name)
        with pytest.raises(UserError, match=r'-i/--input: input folder .*' + re.escape(expected)) as info:
            run.plan({'out': (str(tmp_path / 'out'), '{stem}.png')})
        assert '\n' not in str(info.value)
    assert not (tmp_path / 'out').exists()


def test_bad_images_are_all_named_before_anything_is_computed(tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    _image(inputs / 'good.png')
    _image(inputs / 'tiny.png', 3, 5)
    (inputs / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n cut short')
    rule = SizeRule(4, 'TestNet x4', flag='--size-policy')
    run, _ = _run(inputs)
    with pytest.raises(UserError) as info:
        run.plan({'out': (str(tmp_path / 'out'), '{stem}.png')}, size_rule=rule)
    message = str(info.value)
    assert message.startswith(f'2 of 3 images cannot be processed in {inputs} (-i/--input):')
    assert 'broken.png: not a readable image' in message
    assert 'tiny.png: 3x5 (HxW) is smaller than the minimum 4x4 of TestNet x4' in message
    assert message.endswith('pass --skip-bad to leave them out.')
    assert not (tmp_path / 'out').exists()

    run, logged = _run(inputs, skip_bad=True)
    jobs = run.plan({'out': (str(tmp_path / 'out'), '{stem}.png')}, size_rule=rule)
    assert [job.name for job in jobs] == ['good.png'] and jobs[0].size == (12, 16)
    assert 'leaving out 2 image(s) (--skip-bad)' in logged[0] and 'tiny.png' in logged[0]
    assert run.summary().endswith('2 left out as unreadable or unusable (--skip-bad)')


def test_a_rerun_skips_finished_images_and_says_how_many_and_why(tmp_path):
    inputs, out = tmp_path / 'in', tmp_path / 'out'
    inputs.mkdir()
    out.mkdir()
    for name in 'abc':
        _image(inputs / f'{name}.png')
    _image(out / 'a.png')
    _image(out / 'a_SR.png')
    _image(out / 'b.png')  # b's second output is missing: b is computed again
    outputs = {'lr': (str(out), '{stem}.png'), 'sr': (str(out), '{stem}_SR.png')}
    run, logged = _run(inputs)
    assert [job.name for job in run.plan(outputs)] == ['b.png', 'c.png']
    assert logged == [f'tool: skipping 1 image(s) whose outputs exist in {out} (--overwrite recomputes them)']
    assert run.summary() == 'tool: 0 image(s) computed; 1 skipped, outputs already there (--overwrite recomputes them)'
    run, _ = _run(inputs, overwrite=True)
    assert len(run.plan(outputs)) == 3


def test_outputs_that_collide_or_overwrite_an_input_are_refused(tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    _image(inputs / 'a.png')
    _image(inputs / 'a.jpg')
    run, _ = _run(inputs)
    with pytest.raises(UserError, match=r'a.jpg and a.png would both be written to .*a.png; rename one'):
        run.plan({'out': (str(tmp_path / 'out'), '{stem}.png')})
    with pytest.raises(UserError, match=r'-o/--output .* is the input folder \(-i/--input\)'):
        run.plan({'out': (str(inputs), '{stem}.png')})
    os.remove(inputs / 'a.jpg')
    _image(inputs / 'a_SR.png')
    with pytest.raises(UserError, match='a.png and a_SR.png would both be written to'):
        run.plan({'lr': (str(tmp_path / 'out'), '{stem}.png'), 'sr': (str(tmp_path / 'out'), '{stem}_SR.png')})


def test_output_folder_is_created_and_probed(tmp_path, monkeypatch):
    created = prepare_output_folder(str(tmp_path / 'a' / 'b'))
    assert created == [str(tmp_path / 'a'), str(tmp_path / 'a' / 'b')] and os.listdir(tmp_path / 'a' / 'b') == []
    assert prepare_output_folder(str(tmp_path / 'a' / 'b')) == []  # exists: nothing created, still probed
    monkeypatch.chdir(tmp_path)
    assert prepare_output_folder('relative') == ['relative'] and (tmp_path / 'relative').is_dir()

    (tmp_path / 'afile').write_text('')
    with pytest.raises(UserError, match=rf'-o/--output {tmp_path}/afile/out: cannot create it, {tmp_path}/afile '
                                        'is a file, not a folder'):
        prepare_output_folder(str(tmp_path / 'afile' / 'out'))
    with pytest.raises(UserError, match=r'--sr-out .*afile is a file, not a folder; choose a folder'):
        prepare_output_folder(str(tmp_path / 'afile'), '--sr-out')

    def denied(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(folders.tempfile, 'mkstemp', denied)
    with pytest.raises(UserError, match=rf'^-o/--output: cannot write to {tmp_path}/new: permission denied$'):
        prepare_output_folder(str(tmp_path / 'new'))
    assert not (tmp_path / 'new').exists()  # the folder it created is removed again
    monkeypatch.setattr(folders.os, 'mkdir', denied)
    with pytest.raises(UserError, match=rf'^-o/--output {tmp_path}/locked/out: cannot write to {tmp_path}: '
                                        'permission denied$'):
        prepare_output_folder(str(tmp_path / 'locked' / 'out'))


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders; the monkeypatched test covers it')
def test_read_only_output_folder_is_named(tmp_path):
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(UserError, match=f'cannot write to {locked}: permission denied'):
            prepare_output_folder(str(locked))
    finally:
        locked.chmod(0o755)


def test_an_error_while_running_removes_the_empty_folders_the_run_created(tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    _image(inputs / 'a.png')
    _image(inputs / 'b.png')
    run, _ = _run(inputs)
    with pytest.raises(RuntimeError, match='network failed'), run:
        run.plan({'out': (str(tmp_path / 'out' / 'x4'), '{stem}.png')})
        run.prepare_outputs()
        raise RuntimeError('network failed')
    assert not (tmp_path / 'out').exists()
    run, _ = _run(inputs)
    with pytest.raises(RuntimeError, match='network failed'), run:
        jobs = run.plan({'out': (str(tmp_path / 'out'), '{stem}.png')})
        run.prepare_outputs()
        run.write(jobs[0], 'out', run.read(jobs[0]))
        raise RuntimeError('network failed')
    assert os.listdir(tmp_path / 'out') == ['a.png']  # the finished output stays, nothing partial


def test_read_names_a_file_that_fails_to_decode_and_logs_conversions(tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    _image(inputs / 'a.png', 64, 64)
    data = (inputs / 'a.png').read_bytes()
    (inputs / 'b.png').write_bytes(data[:len(data) // 2])  # a valid header: passes the size check
    rgba = np.full((8, 8, 4), 200, np.uint8)
    rgba[0, 0, 3] = 0
    cv2.imwrite(str(inputs / 'c.png'), rgba)
    run, logged = _run(inputs)
    jobs = run.plan({'out': (str(tmp_path / 'out'), '{stem}.png')})
    assert [job.size for job in jobs] == [(64, 64), (64, 64), (8, 8)]
    with pytest.raises(ImageFileError, match=r'b.png: not a readable image .*; pass --skip-bad'):
        run.read(jobs[1])
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # logged, not raised as a Python warning
        assert run.read(jobs[2]).shape == (8, 8, 3)
    assert logged == [f'tool: warning: {inputs}/c.png: transparency is dropped (the alpha channel is ignored)']
    run, logged = _run(inputs, skip_bad=True)
    jobs = run.plan({'out': (str(tmp_path / 'out'), '{stem}.png')})
    assert run.read(jobs[1]) is None and 'leaving out b.png (--skip-bad)' in logged[0]
    assert run.bad[0][0] == 'b.png'


def test_writer_keeps_the_input_bit_depth_unless_told(tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    _image(inputs / 'deep.png', dtype=np.uint16)
    outputs = {'lr': (str(tmp_path / 'lr'), '{stem}.png'), 'sr': (str(tmp_path / 'sr'), '{stem}.png')}
    run, logged = _run(inputs)
    job, = run.plan(outputs)
    run.prepare_outputs()
    x = run.read_tensor(job)
    assert x.shape == (1, 3, 12, 16) and x.is_contiguous() and job.bit_depth == 16
    run.write(job, 'sr', x)
    run.write(job, 'lr', x, fixed_bit_depth=8)
    assert cv2.imread(str(tmp_path / 'sr' / 'deep.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert cv2.imread(str(tmp_path / 'lr' / 'deep.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert logged == ['tool: deep.png is 16-bit; its lr output is 8-bit, as the method stores it (other outputs keep '
                      "the input's depth)"]
    assert run.summary() == f'tool: 1 image(s) computed, written to {tmp_path}/lr and {tmp_path}/sr'
    run, _ = _run(inputs, bit_depth=8, overwrite=True)
    job, = run.plan(outputs)
    run.write(job, 'sr', run.read(job))
    assert cv2.imread(str(tmp_path / 'sr' / 'deep.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint8


def test_size_rule_policies():
    refuse = SizeRule(8, 'CARResamplerNet x4', policy='refuse', flag='--size-policy')
    assert refuse.problem((32, 48)) is None
    assert refuse.problem((36, 52)) == ('36x52 (HxW) is not a multiple of 8, which CARResamplerNet x4 needs; crop it '
                                        '(to 32x48) or pad it, or pass --size-policy crop or pad')
    crop = SizeRule(8, 'CARResamplerNet x4', policy='crop', flag='--size-policy')
    pad = SizeRule(8, 'CARResamplerNet x4', policy='pad', flag='--size-policy')
    for rule in (refuse, crop, pad):  # too small under every policy
        assert rule.problem((5, 5)) == '5x5 (HxW) is smaller than the minimum 8x8 of CARResamplerNet x4'
    assert crop.problem((36, 52)) is None and crop.notice((36, 52)) == '36x52 cropped to 32x48'
    assert pad.notice((36, 52)) == '36x52 padded to 40x56, outputs cropped back' and pad.notice((32, 48)) is None
    x = torch.rand(1, 3, 36, 52)
    assert crop.fit(x).shape[-2:] == (32, 48) and crop.restore(crop.fit(x), (36, 52)).shape[-2:] == (32, 48)
    padded = pad.fit(x)
    assert padded.shape[-2:] == (40, 56)
    torch.testing.assert_close(padded[..., :36, :52], x)
    torch.testing.assert_close(padded[..., 36:, :52], x[..., 31:35, :].flip(-2))  # reflected, not zeros
    torch.testing.assert_close(pad.restore(padded, (36, 52)), x)
    with pytest.raises(ValueError, match='size policy'):
        SizeRule(8, 'x', policy='stretch')
