import cv2
import numpy as np
import pytest

from basicsr.utils.registry import DATASET_REGISTRY
from basicsr_lmar.data.image_io import DataError
from basicsr_lmar.options import OptionError


def _write_images(folder, count=3, size=(40, 52)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f'img{i}.png'), rng.integers(0, 255, size=size + (3, ), dtype=np.uint8))


def build(**opt):
    opt = {'name': 'hr', 'phase': 'train', **opt}
    return DATASET_REGISTRY.get('HROnlyDataset')(opt)


def test_disk_crops_and_validation_mod_crop(tmp_path):
    _write_images(tmp_path / 'hr')
    ds = build(dataroot_gt=str(tmp_path / 'hr'), gt_size=16, scale=4)
    assert len(ds) == 3 and ds[0]['gt'].shape == (3, 16, 16)
    val = build(dataroot_gt=str(tmp_path / 'hr'), scale=3, phase='val')
    assert val[0]['gt'].shape == (3, 39, 51)


def test_lmdb_round_trip_and_missing_meta_info(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    _write_images(tmp_path / 'hr')
    lmdb_path = tmp_path / 'hr.lmdb'
    make_lmdb_from_imgs(str(tmp_path / 'hr'), str(lmdb_path), [f'img{i}.png' for i in range(3)],
                        [f'img{i}' for i in range(3)])
    ds = build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, gt_size=16)
    disk = build(dataroot_gt=str(tmp_path / 'hr'), phase='val')
    lmdb_val = build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, phase='val')
    assert (lmdb_val[1]['gt'] - disk[1]['gt']).abs().max() == 0
    assert ds[2]['gt'].shape == (3, 16, 16)
    (lmdb_path / 'meta_info.txt').unlink()
    with pytest.raises(DataError, match=r'datasets.train \(hr\).dataroot_gt: .*meta_info.txt is missing'):
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'})


def test_missing_lmdb_key_and_corrupt_file_name_the_culprit(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    _write_images(tmp_path / 'hr', count=2)
    lmdb_path = tmp_path / 'hr.lmdb'
    make_lmdb_from_imgs(str(tmp_path / 'hr'), str(lmdb_path), ['img0.png', 'img1.png'], ['img0', 'img1'])
    with open(lmdb_path / 'meta_info.txt', 'a') as handle:
        handle.write('ghost.png (40,52,3) 1\n')
    ds = build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, phase='val')
    with pytest.raises(DataError, match="LMDB has no key 'ghost'"):
        ds[2]
    (tmp_path / 'hr' / 'img1.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    # named when the dataset is built (its header is read then), not when a batch reaches it
    with pytest.raises(DataError, match=r"datasets.val \(hr\).dataroot_gt: .*img1.png: not a readable image"):
        build(dataroot_gt=str(tmp_path / 'hr'), phase='val')


def test_option_errors(tmp_path):
    with pytest.raises(DataError, match='does not exist'):
        build(dataroot_gt=str(tmp_path / 'nope'))
    with pytest.raises(OptionError, match='io_backend.type must be disk or lmdb'):
        build(dataroot_gt=str(tmp_path), io_backend={'type': 'ceph'})
    with pytest.raises(OptionError, match="missing required option 'dataroot_gt'"):
        build()


def test_image_sizes_are_read_when_built_from_headers_or_meta_info(tmp_path):
    """An image smaller than the crop is named when the dataset is built (not when a batch reaches it): sizes
    from the files' headers (disk) or meta_info.txt (LMDB, the database is not read)."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    _write_images(tmp_path / 'hr', count=2)
    cv2.imwrite(str(tmp_path / 'hr' / 'small.png'), np.zeros((12, 30, 3), np.uint8))
    with pytest.raises(OptionError, match=r'\[datasets.train \(hr\)\] 1 image\(s\) smaller than gt_size 16 '
                       r'\(the training '
                       r'crop\): .*small\.png \(12x30\) \(HxW\); lower gt_size or remove them'):
        build(dataroot_gt=str(tmp_path / 'hr'), gt_size=16)
    ds = build(dataroot_gt=str(tmp_path / 'hr'), scale=2, phase='val')
    assert [size for _, size in ds.image_sizes] == [(40, 52), (40, 52), (12, 30)]
    lmdb_path = tmp_path / 'hr.lmdb'
    make_lmdb_from_imgs(str(tmp_path / 'hr'), str(lmdb_path), ['img0.png', 'img1.png'], ['img0', 'img1'])
    meta = (lmdb_path / 'meta_info.txt').read_text()
    assert build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, gt_size=16).image_sizes == [
        ('img0', (40, 52)), ('img1', (40, 52))]
    (lmdb_path / 'meta_info.txt').write_text(meta.replace('img1.png (40,52,3)', 'img1.png (8,52,3)'))
    with pytest.raises(OptionError, match=r"smaller than gt_size 16 \(the training crop\): img1 \(8x52\)"):
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, gt_size=16)
    (lmdb_path / 'meta_info.txt').write_text('img0.png 1\n')
    with pytest.raises(DataError, match=r'meta_info.txt line 1 gives no size "\(h,w,c\)"'):
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, gt_size=16)
