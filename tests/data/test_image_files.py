import os

import cv2
import numpy as np
import pytest

from basicsr_lmar.data.image_files import (ImageFileError, list_images, probe_image_size, read_image_file,
                                           write_image_file)


def test_gray_rgba_and_16bit_are_converted_as_documented(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'gray.png'), gray)
    rgb, depth = read_image_file(str(tmp_path / 'gray.png'))
    assert depth == 8 and rgb.shape == (5, 7, 3)
    np.testing.assert_allclose(rgb[:, :, 1], gray / 255.0, atol=1e-7)

    bgra = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    bgra[0, 0, 3] = 10
    cv2.imwrite(str(tmp_path / 'rgba.png'), bgra)
    with pytest.warns(UserWarning, match='transparency is dropped'):
        rgb, _ = read_image_file(str(tmp_path / 'rgba.png'))
    np.testing.assert_allclose(rgb, bgra[:, :, 2::-1] / 255.0, atol=1e-7)

    deep = rng.integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'deep.png'), deep)
    rgb, depth = read_image_file(str(tmp_path / 'deep.png'))
    assert depth == 16
    np.testing.assert_allclose(rgb, deep[:, :, ::-1] / 65535.0, atol=1e-7)


def test_round_trip_both_depths_and_atomic_write(tmp_path):
    rgb = np.random.default_rng(1).random((6, 5, 3)).astype(np.float32)
    for depth in (8, 16):
        path = str(tmp_path / f'out{depth}.png')
        write_image_file(path, rgb, depth)
        back, got_depth = read_image_file(path)
        assert got_depth == depth
        np.testing.assert_allclose(back, rgb, atol=0.5 / (255 if depth == 8 else 65535) + 1e-7)
    assert sorted(os.listdir(tmp_path)) == ['out16.png', 'out8.png']  # no temporary left behind


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / 'broken.png'
    bad.write_bytes(b'not an image')
    with pytest.raises(ImageFileError, match='broken.png: not a readable image'):
        read_image_file(str(bad))
    with pytest.raises(ImageFileError, match='no such file'):
        read_image_file(str(tmp_path / 'missing.png'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ImageFileError, match='has no images'):
        list_images(str(tmp_path / 'empty'))
    with pytest.raises(ImageFileError, match='does not exist'):
        list_images(str(tmp_path / 'absent'))


def test_probe_reads_the_header_and_falls_back_to_the_decoder(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / 'deep.tif'), np.zeros((5, 7, 3), np.uint16))
    cv2.imwrite(str(tmp_path / 'photo.jpg'), np.zeros((9, 4, 3), np.uint8))
    assert probe_image_size(str(tmp_path / 'deep.tif')) == (5, 7)
    assert probe_image_size(str(tmp_path / 'photo.jpg')) == (9, 4)
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n cut short')
    with pytest.raises(ImageFileError, match='broken.png: not a readable image'):
        probe_image_size(str(tmp_path / 'broken.png'))
    with pytest.raises(ImageFileError, match='no such file'):
        probe_image_size(str(tmp_path / 'missing.png'))

    import PIL.Image

    def unidentified(*args, **kwargs):
        raise PIL.UnidentifiedImageError('cannot identify image file')

    monkeypatch.setattr(PIL.Image, 'open', unidentified)  # what Pillow cannot read, OpenCV decodes
    assert probe_image_size(str(tmp_path / 'deep.tif')) == (5, 7)


def test_folder_and_writer_errors_name_the_path(tmp_path):
    (tmp_path / 'afile.png').write_bytes(b'')
    with pytest.raises(ImageFileError, match=r'^-i: HR folder .*afile.png is a file, not a folder of images$'):
        list_images(str(tmp_path / 'afile.png'), what='-i: HR folder')
    (tmp_path / 'sub.png').mkdir()  # a folder named like an image is not an image
    (tmp_path / 'only').mkdir()
    (tmp_path / 'only' / 'notes.txt').write_text('')
    with pytest.raises(ImageFileError, match=r'has no images \(it holds 1 other entries; looked for .png, .jpg'):
        list_images(str(tmp_path / 'only'))
    assert list_images(str(tmp_path)) == [str(tmp_path / 'afile.png')]
    with pytest.raises(ImageFileError, match=r'out.xyz: OpenCV cannot write .xyz; use .png'):
        write_image_file(str(tmp_path / 'out.xyz'), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match='16-bit output needs a .png or .tif name'):
        write_image_file(str(tmp_path / 'out.jpg'), np.zeros((2, 2, 3)), bit_depth=16)
