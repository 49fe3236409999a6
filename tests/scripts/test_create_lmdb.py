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


def test_unmatched_files_are_named_before_anything_is_written(uhd_tree):
    (uhd_tree / 'train' / 'gt' / '0002.png').rename(uhd_tree / 'train' / 'gt' / '0002_gt.png')
    with pytest.raises(create_lmdb.DatasetLayoutError) as error:
        create_lmdb.create_paired(str(uhd_tree))
    message = str(error.value)
    assert "1 input(s)" in message and '0002.png' in message and '0002_gt.png' in message
    assert not list(uhd_tree.glob('*.lmdb'))
    with pytest.raises(SystemExit, match='create_lmdb: .*0002_gt.png'):
        create_lmdb.main(['paired', str(uhd_tree)])


def test_existing_lmdb_is_not_overwritten(uhd_tree):
    create_lmdb.create_paired(str(uhd_tree), splits=['test'])
    with pytest.raises(FileExistsError, match='test_input.lmdb'):
        create_lmdb.create_paired(str(uhd_tree), splits=['test'])


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
