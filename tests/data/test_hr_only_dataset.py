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


def _lmdb(tmp_path, count=2):
    """An LMDB of ``count`` images made by basicsr's own lmdb_util (ASCII keys img0, img1 ...)."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    _write_images(tmp_path / 'hr', count=count)
    lmdb_path = tmp_path / 'hr.lmdb'
    make_lmdb_from_imgs(str(tmp_path / 'hr'), str(lmdb_path), [f'img{i}.png' for i in range(count)],
                        [f'img{i}' for i in range(count)])
    return lmdb_path


def test_meta_info_that_disagrees_with_the_database_is_refused_when_built(tmp_path):
    lmdb_path = _lmdb(tmp_path)
    meta = lmdb_path / 'meta_info.txt'
    lines = meta.read_text()
    meta.write_text(lines + 'ghost.png (40,52,3) 1\n')
    with pytest.raises(DataError) as error:
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, phase='val')
    assert str(error.value) == (f"datasets.val (hr).dataroot_gt: {lmdb_path} and its meta_info.txt disagree: 1 key(s) "
                                "listed in meta_info.txt are not in the database: 'ghost'. Rebuild the LMDB with "
                                "scripts/create_lmdb.py.")
    meta.write_text(lines.splitlines()[0] + '\n')
    with pytest.raises(DataError, match=r"disagree: 1 image\(s\) in the database are not listed in meta_info.txt: "
                                        r"'img1'\. Rebuild"):
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, phase='val')
    meta.write_text(lines + lines.splitlines()[0] + '\n')
    with pytest.raises(DataError, match=r"meta_info.txt lists the key 'img0' twice \(lines 1 and 3\)"):
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, phase='val')


def test_empty_meta_info_is_refused_when_built(tmp_path):
    """A 0-byte meta_info.txt (what an interrupted build leaves) would give an empty dataset, which basicsr's
    loader set-up divides by."""
    lmdb_path = _lmdb(tmp_path)
    (lmdb_path / 'meta_info.txt').write_text('')
    with pytest.raises(DataError) as error:
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, gt_size=16)
    assert str(error.value) == (f'datasets.train (hr).dataroot_gt: {lmdb_path}/meta_info.txt is empty: the LMDB lists '
                                'no image (the build that wrote it did not finish). Delete the LMDB and build it '
                                'again with scripts/create_lmdb.py.')


def test_sizes_listed_in_meta_info_are_checked_against_the_stored_images(tmp_path):
    """A size of meta_info.txt is the stored image's (read from its header when the dataset is built), whether
    it is listed smaller or larger than the image."""
    lmdb_path = _lmdb(tmp_path)
    meta = lmdb_path / 'meta_info.txt'
    lines = meta.read_text()
    for listed in ('8,52', '128,128'):
        meta.write_text(lines.replace('img1.png (40,52,3)', f'img1.png ({listed},3)'))
        height, width = listed.split(',')
        with pytest.raises(DataError) as error:
            build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, gt_size=16)
        assert str(error.value) == (
            f"datasets.train (hr).dataroot_gt: {meta} line 2 lists 'img1' as {height}x{width} (HxW) but the image "
            'stored under that key is 40x52; correct the line or rebuild the LMDB with scripts/create_lmdb.py.')


def test_decoded_size_is_checked_against_the_size_the_checks_used(tmp_path):
    """The reader names an image whose decoded size is not the one the dataset's checks were made on: from
    meta_info.txt (LMDB) or from the header (a file replaced after the dataset was built)."""
    from basicsr_lmar.data.image_io import read_image

    lmdb_path = _lmdb(tmp_path)
    content = (tmp_path / 'hr' / 'img0.png').read_bytes()
    client = type('Client', (), {'get': lambda self, path, key: content})()
    with pytest.raises(DataError) as error:
        read_image(client, 'img0', 'gt', 'datasets.train (hr).dataroot_gt',
                   expected=((128, 128), str(lmdb_path / 'meta_info.txt')))
    assert str(error.value) == (f"datasets.train (hr).dataroot_gt: 'img0' decodes to 40x52 (HxW) but {lmdb_path}/"
                                'meta_info.txt says 128x128; the size checks were made on it: rebuild the LMDB with '
                                'scripts/create_lmdb.py.')
    dataset = build(dataroot_gt=str(tmp_path / 'hr'), gt_size=32)
    path = dataset.paths[1]
    cv2.imwrite(path, np.zeros((24, 52, 3), np.uint8))  # replaced by a smaller image after the checks
    with pytest.raises(DataError) as error:
        dataset[1]
    assert str(error.value) == (f"datasets.train (hr).dataroot_gt: '{path}' decodes to 24x52 (HxW) but its header "
                                'says 40x52; the size checks were made on it: re-save the file.')


def test_a_file_where_a_folder_is_expected_is_called_a_file(tmp_path):
    from basicsr_lmar.data.skimage_photos import load_photo

    photo = tmp_path / 'baby.png'
    cv2.imwrite(str(photo), (load_photo('chelsea')[:64, :64, ::-1] * 255).round().astype(np.uint8))
    with pytest.raises(DataError) as error:
        build(dataroot_gt=str(photo), phase='val')
    assert str(error.value) == (f"datasets.val (hr).dataroot_gt: '{photo}' is a file, not a folder of images; set "
                                f"dataroot_gt to the folder that holds it ('{tmp_path}').")
    with pytest.raises(DataError, match=r"is a file, not an LMDB folder; set dataroot_gt to the folder that holds it "
                                        r"\('.*'\) and io_backend to \{type: disk\}\.$"):
        build(dataroot_gt=str(photo), io_backend={'type': 'lmdb'}, phase='val')
    with pytest.raises(DataError, match=r"meta_info_file: '.*absent.txt' is missing; give the text file"):
        build(dataroot_gt=str(tmp_path), meta_info_file=str(tmp_path / 'absent.txt'), phase='val')
    (tmp_path / 'list.txt').write_text('\n')
    with pytest.raises(DataError, match=r'meta_info_file: .*list.txt lists no image'):
        build(dataroot_gt=str(tmp_path), meta_info_file=str(tmp_path / 'list.txt'), phase='val')


def test_corrupt_file_is_named_when_built(tmp_path):
    _write_images(tmp_path / 'hr', count=2)
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
    from the files' headers (disk) or meta_info.txt (LMDB, which the message says)."""
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
    make_lmdb_from_imgs(str(tmp_path / 'hr'), str(lmdb_path), ['img0.png', 'img1.png', 'small.png'],
                        ['img0', 'img1', 'small'])
    with pytest.raises(OptionError) as error:
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, gt_size=16)
    assert str(error.value) == (f'[datasets.train (hr)] 1 image(s) smaller than gt_size 16 (the training crop): small '
                                f'(12x30) (HxW, sizes from {lmdb_path}/meta_info.txt); lower gt_size or remove them.')
    assert build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, phase='val').image_sizes == [
        ('img0', (40, 52)), ('img1', (40, 52)), ('small', (12, 30))]
    meta = lmdb_path / 'meta_info.txt'
    meta.write_text(meta.read_text().replace('img0.png (40,52,3) 1', 'img0.png 1'))
    with pytest.raises(DataError, match=r'meta_info.txt line 1 gives no size "\(h,w,c\)"'):
        build(dataroot_gt=str(lmdb_path), io_backend={'type': 'lmdb'}, gt_size=16)
