import os
import pathlib
import re

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.data import build_dataset
from skimage import data

import basicsr_lmar  # noqa: F401
from basicsr_lmar.data.skimage_photos import load_photo
from tests.scripts.tool_runs import load_script, run_stock_training

REPO = pathlib.Path(__file__).resolve().parents[2]


create_lmdb = load_script('create_lmdb')


def make_split(root, names, size=(24, 32)):
    photo = data.coffee()
    for sub in ('input', 'gt'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        gt = np.ascontiguousarray(photo[10 * i:10 * i + size[0], 15 * i:15 * i + size[1], ::-1])
        cv2.imwrite(str(root / 'gt' / f'{name}.png'), gt)
        cv2.imwrite(str(root / 'input' / f'{name}.png'), (gt * 0.3).astype(np.uint8))


@pytest.fixture
def uhd_tree(tmp_path):
    root = tmp_path / 'UHD'
    make_split(root / 'train', ['0001', '0002', '0003'])
    make_split(root / 'test', ['0100'])
    return root


def dataset_options(lq, gt, backend, phase='val'):
    return {'name': 'tiny', 'type': 'UHDPairedImageDataset', 'phase': phase, 'scale': 1, 'dataroot_lq': str(lq),
            'dataroot_gt': str(gt), 'io_backend': {'type': backend}}


def test_paired_lmdb_round_trip_through_the_dataset(uhd_tree):
    written = create_lmdb.main(['paired', str(uhd_tree), '--compress-level', '3'])
    assert [pathlib.Path(p).name for p in written] == ['train_input.lmdb', 'train_gt.lmdb', 'test_input.lmdb',
                                                       'test_gt.lmdb']
    meta = (uhd_tree / 'train_gt.lmdb' / 'meta_info.txt').read_text().split('\n')
    assert meta[:3] == ['0001.png (24,32,3) 3', '0002.png (24,32,3) 3', '0003.png (24,32,3) 3']
    from_lmdb = build_dataset(dataset_options(uhd_tree / 'train_input.lmdb', uhd_tree / 'train_gt.lmdb', 'lmdb'))
    from_disk = build_dataset(dataset_options(uhd_tree / 'train' / 'input', uhd_tree / 'train' / 'gt', 'disk'))
    assert len(from_lmdb) == len(from_disk) == 3
    disk_items = {pathlib.Path(item['lq_path']).stem: item for item in from_disk}
    for lmdb_item in from_lmdb:
        disk_item = disk_items.pop(lmdb_item['lq_path'])  # LMDB "paths" are the keys
        torch.testing.assert_close(lmdb_item['lq'], disk_item['lq'], rtol=0, atol=0)  # PNG is lossless
        torch.testing.assert_close(lmdb_item['gt'], disk_item['gt'], rtol=0, atol=0)
    assert not disk_items


def test_folder_mode_for_hr_only_sets(tmp_path):
    make_split(tmp_path / 'DIV2K', ['0801', '0802'])
    output = create_lmdb.main(['folder', str(tmp_path / 'DIV2K' / 'gt'), '--output', str(tmp_path / 'hr.lmdb')])[0]
    lines = (pathlib.Path(output) / 'meta_info.txt').read_text().split()
    assert lines[0::3] == ['0801.png', '0802.png']
    # worker processes encode the same images in the same order
    parallel = create_lmdb.main(['folder', str(tmp_path / 'DIV2K' / 'gt'), '--output', str(tmp_path / 'hr2.lmdb'),
                                 '--workers', '2'])[0]
    meta = [(pathlib.Path(path) / 'meta_info.txt').read_text() for path in (output, parallel)]
    assert meta[0] == meta[1]
    import lmdb
    values = []
    for path in (output, parallel):
        with lmdb.open(path, readonly=True, lock=False) as env, env.begin() as txn:
            values.append(dict(txn.cursor()))
    assert values[0] == values[1] and sorted(values[0]) == [b'0801', b'0802']


def test_unmatched_files_are_named_before_anything_is_written(uhd_tree, capsys):
    from tests.scripts.tool_runs import refused

    (uhd_tree / 'train' / 'gt' / '0002.png').rename(uhd_tree / 'train' / 'gt' / '0002_gt.png')
    with pytest.raises(create_lmdb.DatasetLayoutError) as error:
        create_lmdb.create_paired(str(uhd_tree))
    message = str(error.value)
    assert "1 input(s)" in message and '0002.png' in message and '0002_gt.png' in message
    assert not list(uhd_tree.glob('*.lmdb'))
    assert refused(create_lmdb, ['paired', str(uhd_tree)], capsys).startswith('create_lmdb.py: error: 1 input(s) in')


def test_existing_lmdb_is_not_overwritten(uhd_tree, capsys):
    from tests.scripts.tool_runs import refused

    create_lmdb.create_paired(str(uhd_tree), splits=['test'])
    assert refused(create_lmdb, ['paired', str(uhd_tree), '--splits', 'test'], capsys) == (
        f'create_lmdb.py: error: {uhd_tree}/test_input.lmdb already exists; delete it or choose another output '
        '(--out-root).\n')


def _photo_folder(folder, names):
    """Crops of real photos under the given file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        crop = load_photo(('astronaut', 'coffee', 'chelsea')[index % 3])[40 * index:40 * index + 40, :48, ::-1]
        cv2.imwrite(str(folder / name), (crop * 255).round().astype(np.uint8))
    return folder


def _left_behind(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith('.lmdb'))


def test_any_unicode_file_name_becomes_a_key_the_datasets_read(tmp_path, capsys):
    """basicsr's lmdb_util encodes keys as ASCII: these names ended in a UnicodeEncodeError and a half LMDB
    with a 0-byte meta_info.txt."""
    names = ['tête.png', 'ü crop 0.png', '日本 crop1.png']
    folder = _photo_folder(tmp_path / 'DIR', names)
    written = create_lmdb.main(['folder', str(folder)])
    assert written == [f'{folder}.lmdb']
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("note: 3 key(s) are not ASCII (e.g. 'tête'); they are stored as UTF-8, which the "
                                   "plugin's datasets read (basicsr's own LMDB reader encodes keys as ASCII and cannot "
                                   'read them).')
    meta = (tmp_path / 'DIR.lmdb' / 'meta_info.txt').read_text(encoding='utf-8')
    assert meta == 'tête.png (40,48,3) 1\nü crop 0.png (40,48,3) 1\n日本 crop1.png (40,48,3) 1\n'
    common = {'name': 'hr', 'type': 'HROnlyDataset', 'phase': 'val', 'scale': 4}
    lmdb = build_dataset(dict(common, dataroot_gt=written[0], io_backend={'type': 'lmdb'}))
    disk = build_dataset(dict(common, dataroot_gt=str(folder)))
    assert [item['gt_path'] for item in lmdb] == ['tête', 'ü crop 0', '日本 crop1']
    from_disk = {pathlib.Path(item['gt_path']).stem: item['gt'] for item in disk}
    for item in lmdb:
        torch.testing.assert_close(item['gt'], from_disk[item['gt_path']], rtol=0, atol=0)
    assert _left_behind(tmp_path) == ['DIR.lmdb']


def test_names_that_cannot_be_keys_are_refused_before_anything_is_written(tmp_path, capsys):
    from tests.scripts.tool_runs import refused

    folder = _photo_folder(tmp_path / 'DIR', ['ok.png', 'two\nlines.png'])
    (folder / 'ok.jpg').write_bytes((folder / 'ok.png').read_bytes())
    with open(os.path.join(os.fsencode(folder), b'latin1 \xe9t\xe9.png'), 'wb') as handle:  # not UTF-8 bytes
        handle.write((folder / 'ok.png').read_bytes())
    assert refused(create_lmdb, ['folder', str(folder)], capsys) == (
        f"create_lmdb.py: error: '{folder}': 3 file name(s) cannot be LMDB keys: 'latin1 \\udce9t\\udce9.png': its "
        "bytes b'latin1 \\xe9t\\xe9.png' are not UTF-8 text, 'two\\nlines.png': it holds the control character "
        "'\\n' (a line of meta_info.txt cannot), 'ok.jpg' and 'ok.png' would share the key 'ok'; rename them.\n")
    assert _left_behind(tmp_path) == []


def test_an_unreadable_image_is_named_before_anything_is_written(tmp_path, capsys):
    from tests.scripts.tool_runs import refused

    folder = _photo_folder(tmp_path / 'DIR', ['a.png', 'b.png'])
    (folder / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n cut short')
    assert refused(create_lmdb, ['folder', str(folder), '--output', str(tmp_path / 'out' / 'hr.lmdb')], capsys) == (
        f"create_lmdb.py: error: '{folder}': 1 file(s) are not readable images: 'b.png'; remove or replace them.\n")
    assert not (tmp_path / 'out').exists()
    assert refused(create_lmdb, ['folder', str(folder), '--output', str(tmp_path / 'hr')], capsys) == (
        f'create_lmdb.py: error: --output {tmp_path}/hr: the name of an LMDB folder must end in .lmdb (the datasets '
        'look for it); add the suffix.\n')
    assert refused(create_lmdb, ['folder', str(folder / 'a.png')], capsys) == (
        f"create_lmdb.py: error: '{folder}/a.png' is a file, not a folder of images\n")


@pytest.mark.parametrize('stop', [RuntimeError('disk full'), KeyboardInterrupt()])
def test_a_build_that_stops_leaves_no_lmdb(uhd_tree, monkeypatch, stop):
    """Paired: the train LMDBs are complete when the test split's first image fails; none of them is left."""
    encode = create_lmdb.encode_png
    calls = []

    def failing(path, compress_level):
        calls.append(path)
        if f'{os.sep}test{os.sep}' in path:
            raise stop
        return encode(path, compress_level)

    monkeypatch.setattr(create_lmdb, 'encode_png', failing)
    with pytest.raises(type(stop)):
        create_lmdb.create_paired(str(uhd_tree), out_root=str(uhd_tree / 'lmdb'))
    assert len(calls) == 7  # 3 train inputs, 3 train GTs, then the failure
    assert not (uhd_tree / 'lmdb').exists() and _left_behind(uhd_tree) == []


def test_a_killed_build_s_hidden_folder_is_removed_by_the_next_build(tmp_path):
    folder = _photo_folder(tmp_path / 'DIR', ['a.png'])
    stale = tmp_path / '.DIR.lmdb.partial999999999.lmdb'  # no such process
    stale.mkdir()
    (stale / 'data.mdb').write_bytes(b'half')
    create_lmdb.main(['folder', str(folder)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['DIR', 'DIR.lmdb']


def test_a_few_training_iterations_from_the_lmdb(uhd_tree, tmp_path, monkeypatch):
    """The shipped CNN-I option file, shrunk, trains and validates through basicsr's own pipeline."""
    create_lmdb.create_paired(str(uhd_tree))
    opt = yaml.safe_load((REPO / 'options' / 'train_cnn_i_uhdlol4k.yml').read_text())
    opt['name'] = 'tiny_cnn_i'
    opt['num_gpu'] = 0
    train, val = opt['datasets']['train'], opt['datasets']['val']
    train.update(dataroot_lq=str(uhd_tree / 'train_input.lmdb'), dataroot_gt=str(uhd_tree / 'train_gt.lmdb'),
                 io_backend={'type': 'lmdb'}, train_size=[16, 16], num_worker_per_gpu=0)
    val.update(dataroot_lq=str(uhd_tree / 'test_input.lmdb'), dataroot_gt=str(uhd_tree / 'test_gt.lmdb'),
               io_backend={'type': 'lmdb'})
    opt['network_g']['model_channel'] = 2
    opt['train'].update(total_iter=4, scheduler={'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.75})
    opt['val']['val_freq'] = 4
    opt['logger'].update(print_freq=1, save_checkpoint_freq=4, use_tb_logger=False)
    option_file = tmp_path / 'tiny.yml'
    option_file.write_text(yaml.safe_dump(opt))

    log = run_stock_training(option_file, tmp_path, monkeypatch)

    models = tmp_path / 'experiments' / 'tiny_cnn_i' / 'models'
    params = torch.load(models / 'net_g_latest.pth', map_location='cpu')['params']
    assert 'body.down_fusion2.transform.conv.weight' in params
    losses = [float(value) for value in re.findall(r'l_pix: (\S+)', log)]
    assert len(losses) >= 3 and losses[-1] < losses[0]
    assert 'End of training' in log
    assert re.search(r'# psnr: \d+\.\d+', log) and re.search(r'# ssim: \d\.\d+', log)
