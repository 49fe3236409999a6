"""One EXIF orientation decision, applied by every reader: an image is read as it is displayed (docs/data.md).

A phone photo stored 48 rows x 64 columns with orientation 6 (turn a quarter clockwise) is displayed, and
read, 64x48 by the header probe, the folder tools, the datasets (folder and LMDB), the preflight's size
notices and the metrics' reader, as by OpenCV's imread defaults, Pillow's exif_transpose and basicsr."""
import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

import basicsr_lmar  # noqa: F401  (registers the datasets)
from basicsr_lmar.data.image_files import decode_image, probe_image_size, read_image_file
from basicsr_lmar.data.skimage_photos import load_photo
from tests.scripts.tool_runs import load_script


def oriented_png(path, orientation, size=(48, 64), photo='chelsea'):
    """A crop of a real photo stored ``size`` (HxW) with the EXIF orientation tag; returns its stored RGB."""
    stored = (load_photo(photo)[100:100 + size[0], 150:150 + size[1]] * 255).round().astype(np.uint8)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes())
    return stored


@pytest.mark.parametrize('orientation', range(1, 9))
def test_readers_apply_the_orientation_as_opencv_and_pillow_do(tmp_path, orientation):
    path = tmp_path / 'photo.png'
    oriented_png(path, orientation)
    displayed = cv2.imread(str(path))[:, :, ::-1]  # OpenCV's default flags apply the tag (basicsr's imfrombytes too)
    np.testing.assert_array_equal(np.asarray(ImageOps.exif_transpose(Image.open(path))), displayed)
    assert probe_image_size(str(path)) == displayed.shape[:2]
    rgb, depth = read_image_file(str(path))
    assert depth == 8
    np.testing.assert_array_equal((rgb * 255).round().astype(np.uint8), displayed)
    for flags in (cv2.IMREAD_COLOR, cv2.IMREAD_UNCHANGED):
        np.testing.assert_array_equal(decode_image(path.read_bytes(), flags)[:, :, ::-1], displayed)


def test_a_jpeg_with_orientation_6_is_read_turned(tmp_path):
    stored = (load_photo('coffee')[:40, :56] * 255).round().astype(np.uint8)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / 'phone.jpg', exif=exif.tobytes(), quality=95)
    assert probe_image_size(str(tmp_path / 'phone.jpg')) == (56, 40)
    rgb, _ = read_image_file(str(tmp_path / 'phone.jpg'))
    displayed = cv2.imread(str(tmp_path / 'phone.jpg'))[..., ::-1]
    np.testing.assert_array_equal((rgb * 255).round().astype(np.uint8), displayed)


def test_datasets_from_a_folder_and_from_its_lmdb_read_it_turned(tmp_path):
    from basicsr.data import build_dataset

    folder = tmp_path / 'hr'
    folder.mkdir()
    stored = oriented_png(folder / 'phone.png', 6)
    displayed = np.rot90(stored, -1)  # a quarter turn clockwise: 64x48
    disk = build_dataset({'name': 'hr', 'type': 'HROnlyDataset', 'phase': 'val', 'scale': 4,
                          'dataroot_gt': str(folder)})
    assert disk.image_sizes == [(str(folder / 'phone.png'), (64, 48))]
    gt = disk[0]['gt'].numpy().transpose(1, 2, 0)
    np.testing.assert_array_equal((gt * 255).round().astype(np.uint8), displayed)

    lmdb_path = load_script('create_lmdb').create_folder(str(folder), str(tmp_path / 'hr.lmdb'))
    assert (tmp_path / 'hr.lmdb' / 'meta_info.txt').read_text() == 'phone.png (64,48,3) 1\n'  # stored turned
    lmdb = build_dataset({'name': 'hr', 'type': 'HROnlyDataset', 'phase': 'val', 'scale': 4, 'dataroot_gt': lmdb_path,
                          'io_backend': {'type': 'lmdb'}})
    assert lmdb.image_sizes == [('phone', (64, 48))]
    np.testing.assert_array_equal(lmdb[0]['gt'].numpy(), disk[0]['gt'].numpy())

    (tmp_path / 'pairs' / 'input').mkdir(parents=True)
    (tmp_path / 'pairs' / 'gt').mkdir()
    oriented_png(tmp_path / 'pairs' / 'input' / 'phone.png', 6)
    oriented_png(tmp_path / 'pairs' / 'gt' / 'phone.png', 6)
    paired = build_dataset({'name': 'uhd', 'type': 'UHDPairedImageDataset', 'phase': 'val', 'scale': 1,
                            'io_backend': {'type': 'disk'}, 'dataroot_lq': str(tmp_path / 'pairs' / 'input'),
                            'dataroot_gt': str(tmp_path / 'pairs' / 'gt')})
    assert paired.image_sizes[0][1] == (64, 48) and paired[0]['gt'].shape == (3, 64, 48)


def test_the_preflight_names_the_crop_on_the_displayed_axes(tmp_path):
    """Stored 48x65 with orientation 6: displayed 65x48, cropped to 64x48 for IRN x2 (the stored axes would
    have said 48x65 -> 48x64)."""
    import yaml

    from basicsr_lmar import preflight
    from tests.conftest import REPO_ROOT

    folder = tmp_path / 'val'
    folder.mkdir()
    oriented_png(folder / 'phone.png', 6, size=(48, 65))
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / 'train_irn_tiny.yml').read_text())
    opt['datasets']['val'] = {'name': 'phone', 'type': 'HROnlyDataset', 'dataroot_gt': str(folder)}
    checked = preflight.check_options(opt, is_train=True)
    assert checked.notices == ['datasets.val (phone): 1 image(s) cropped at the bottom/right to multiples of 2 for '
                               'IRNModel x2 (multiples of the scale) (size_policy: crop; refuse stops instead): '
                               'phone.png 65x48 cropped to 64x48']


def test_a_folder_tool_writes_the_turned_image(tmp_path, capsys):
    import yaml

    hcd_refine = load_script('hcd_refine')
    folder = tmp_path / 'hr'
    folder.mkdir()
    oriented_png(folder / 'phone.png', 6)
    opt = {'name': 'refine', 'model_type': 'HCDModel', 'scale': 4,
           'rescaler': {'type': 'BicubicSRRescaler', 'scale': 4}, 'hcd': {'steps_hr': 1, 'steps_lr': 1}}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    hcd_refine.main(['-opt', str(tmp_path / 'opt.yml'), '-i', str(folder), '-o', str(tmp_path / 'lr'),
                     '--device', 'cpu', '--save-sr'])
    assert cv2.imread(str(tmp_path / 'lr' / 'phone_SR.png')).shape == (64, 48, 3)
    assert cv2.imread(str(tmp_path / 'lr' / 'phone.png')).shape == (16, 12, 3)
