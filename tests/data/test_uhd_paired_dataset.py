import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from PIL import Image
from skimage import data

import basicsr_lmar  # noqa: F401
from basicsr_lmar.data.uhd_paired_dataset import UHDPairedImageDataset, resize_image
from basicsr_lmar.options import OptionError


def make_pairs(root, names=('a', 'b'), size=(40, 56)):
    """A tiny UHD-like tree root/{input,gt}/<name>.png: GT = photo crops, input = darkened GT."""
    photo = data.astronaut()
    for sub in ('input', 'gt'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        gt = photo[20 * i:20 * i + size[0], 30 * i:30 * i + size[1], ::-1]  # BGR for cv2
        cv2.imwrite(str(root / 'gt' / f'{name}.png'), gt)
        cv2.imwrite(str(root / 'input' / f'{name}.png'), (gt * 0.25).astype(np.uint8))
    return root


def options(root, phase='train', **extra):
    opt = {'name': 'tiny', 'type': 'UHDPairedImageDataset', 'phase': phase, 'scale': 1,
           'dataroot_lq': str(root / 'input'), 'dataroot_gt': str(root / 'gt'), 'io_backend': {'type': 'disk'}}
    opt.update(extra)
    return opt


def test_resize_transform_gives_train_size_for_both_images(tmp_path):
    root = make_pairs(tmp_path)
    dataset = build_dataset(options(root, train_size=[16, 24]))
    item = dataset[0]
    assert item['lq'].shape == item['gt'].shape == (3, 16, 24)
    assert item['lq'].mean() < 0.5 * item['gt'].mean()


def test_bilinear_resize_matches_pil_on_uint8_images():
    # the authors' transform: torchvision Resize on a PIL uint8 image (antialiased bilinear)
    img = data.chelsea()[:60, :90]
    expected = np.asarray(Image.fromarray(img).resize((32, 20), Image.BILINEAR)).astype(np.float32)
    ours = resize_image(img.astype(np.float32), (20, 32), 'bilinear')
    assert ours.shape == (20, 32, 3)
    assert np.abs(ours - expected).max() <= 1.0  # the authors' result is rounded to uint8
    assert resize_image(img.astype(np.float32), (20, 32), 'area').shape == (20, 32, 3)


def test_crop_transform_crops_the_same_window(tmp_path):
    root = make_pairs(tmp_path, names=('a', ))
    np.random.seed(0)
    item = build_dataset(options(root, train_transform='crop', train_size=[8, 12]))[0]
    assert item['gt'].shape == (3, 8, 12)
    torch.testing.assert_close(item['lq'], (item['gt'] * 255 * 0.25).floor() / 255, atol=1.5 / 255, rtol=0)


def test_validation_returns_full_resolution(tmp_path):
    root = make_pairs(tmp_path)
    dataset = build_dataset(options(root, phase='val'))
    assert len(dataset) == 2 and dataset[1]['gt'].shape == (3, 40, 56)


def test_option_errors_name_the_key(tmp_path):
    root = make_pairs(tmp_path)
    with pytest.raises(OptionError, match="'train_transfrom'.*train_transform"):
        UHDPairedImageDataset(options(root, train_transfrom='crop'))
    with pytest.raises(OptionError, match="'resize_kernel'"):
        UHDPairedImageDataset(options(root, resize_kernel='lanczos'))
    with pytest.raises(OptionError, match='scale must be 1'):
        UHDPairedImageDataset(options(root, scale=2))


def test_crop_larger_than_image_is_reported_when_built(tmp_path):
    root = make_pairs(tmp_path, names=('a', ))
    with pytest.raises(OptionError, match=r'\[datasets.train \(tiny\)\] train_size \[64, 64\] '
                       r'\(train_transform: crop\) is '
                       r'larger than 1 image\(s\): .*a\.png \(40x56\) \(HxW\); lower train_size'):
        build_dataset(options(root, train_transform='crop', train_size=64))


def test_pairs_of_different_sizes_and_missing_folders_are_named_when_built(tmp_path):
    from basicsr_lmar.data.image_io import DataError
    root = make_pairs(tmp_path, names=('a', 'b'))
    cv2.imwrite(str(root / 'input' / 'b.png'), np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(OptionError, match=r'1 pair\(s\) of different sizes, e.g. input .*b\.png 40x50 and GT .*b\.png '
                       r'40x56 \(HxW\); pairs must share a size'):
        build_dataset(options(root, phase='val'))
    with pytest.raises(DataError, match=r"datasets.val \(tiny\).dataroot_gt: folder '.*nowhere' does not exist"):
        build_dataset(options(root, phase='val', dataroot_gt=str(tmp_path / 'nowhere')))
    image = root / 'gt' / 'a.png'
    with pytest.raises(DataError) as error:
        build_dataset(options(root, phase='val', dataroot_gt=str(image)))
    assert str(error.value) == (f"datasets.val (tiny).dataroot_gt: '{image}' is a file, not a folder of images; set "
                                f"dataroot_gt to the folder that holds it ('{root / 'gt'}').")


def test_lmdb_pairs_with_dots_and_spaces_in_their_keys_and_unpaired_lmdbs(tmp_path):
    """basicsr's reader of meta_info.txt cuts a key at its first dot; the dataset reads the checked keys."""
    from basicsr_lmar.data.image_io import DataError
    from tests.scripts.tool_runs import load_script

    create_lmdb = load_script('create_lmdb')
    root = make_pairs(tmp_path / 'UHD' / 'test', names=('0001.v2', 'frame 7'))
    create_lmdb.create_paired(str(tmp_path / 'UHD'), splits=['test'])
    lmdb = options(tmp_path / 'UHD', phase='val', io_backend={'type': 'lmdb'},
                   dataroot_lq=str(tmp_path / 'UHD' / 'test_input.lmdb'),
                   dataroot_gt=str(tmp_path / 'UHD' / 'test_gt.lmdb'))
    dataset = build_dataset(lmdb)
    disk = build_dataset(options(root, phase='val'))
    assert [item['gt_path'] for item in dataset] == ['0001.v2', 'frame 7']
    from_disk = {item['gt_path'].rsplit('/', 1)[-1][:-4]: item for item in disk}  # LMDB "paths" are the keys
    for item in dataset:
        torch.testing.assert_close(item['lq'], from_disk[item['gt_path']]['lq'], rtol=0, atol=0)
    make_pairs(tmp_path / 'other' / 'test', names=('0001.v2', 'frame 8'))
    create_lmdb.create_paired(str(tmp_path / 'other'), splits=['test'])
    with pytest.raises(DataError) as error:
        build_dataset(dict(lmdb, dataroot_lq=str(tmp_path / 'other' / 'test_input.lmdb')))
    assert str(error.value) == ("datasets.val (tiny): the LMDBs do not pair up: 1 input key(s) without GT ['frame 8'], "
                                "1 GT key(s) without input ['frame 7']; build both with scripts/create_lmdb.py paired "
                                'from folders of the same file names.')
