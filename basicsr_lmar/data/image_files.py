"""Image files in and out of the inference scripts, with documented conversions and atomic writes.

Reading (:func:`read_image_file`) returns float32 RGB in [0, 1], shape (H, W, 3), plus the source bit
depth:

- 8-bit and 16-bit PNG/TIFF, JPEG, BMP, WebP are read with OpenCV (16-bit is scaled by 1/65535);
- grayscale images are replicated to three channels (the networks are RGB);
- images with an alpha channel keep their colour channels; if the alpha is not fully opaque a
  warning says that transparency is dropped (there is no background to composite onto that would be
  right for every use);
- an unreadable, empty or undecodable file raises :class:`ImageFileError` naming it.

Writing (:func:`write_image_file`) goes through a temporary file in the same folder that is renamed
over the target only when complete, so an interrupted script never leaves a half-written output.
"""
import os
import os.path as osp
import warnings

import cv2
import numpy as np

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class ImageFileError(RuntimeError):
    """An input image cannot be read or converted."""


def list_images(folder):
    if not osp.isdir(folder):
        raise ImageFileError(f'input folder {folder!r} does not exist')
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise ImageFileError(f'input folder {folder!r} has no images ({", ".join(IMAGE_EXTENSIONS)})')
    return [osp.join(folder, n) for n in names]


def read_image_file(path):
    """Returns ``(rgb_float32, bit_depth)``; see the module docstring for conversions."""
    if not osp.isfile(path):
        raise ImageFileError(f'{path}: no such file')
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageFileError(f'{path}: not a readable image (corrupt, truncated or unsupported format)')
    if image.dtype == np.uint8:
        bit_depth, scale = 8, 255.0
    elif image.dtype == np.uint16:
        bit_depth, scale = 16, 65535.0
    else:
        raise ImageFileError(f'{path}: unsupported sample type {image.dtype} (use 8- or 16-bit images)')
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        if image[:, :, 3].min() < (255 if bit_depth == 8 else 65535):
            warnings.warn(f'{path}: transparency is dropped (the alpha channel is ignored)', stacklevel=2)
        image = image[:, :, :3]
    elif image.shape[2] == 2:  # grayscale + alpha
        image = np.repeat(image[:, :, :1], 3, axis=2)
    elif image.shape[2] != 3:
        raise ImageFileError(f'{path}: {image.shape[2]} channels are not supported (use gray, RGB or RGBA)')
    rgb = image[:, :, ::-1].astype(np.float32) / scale
    return np.ascontiguousarray(rgb), bit_depth


def write_image_file(path, rgb, bit_depth=8):
    """Writes float RGB in [0, 1] (H, W, 3) atomically as 8- or 16-bit (PNG/TIFF for 16-bit)."""
    if bit_depth not in (8, 16):
        raise ValueError(f'bit_depth must be 8 or 16, got {bit_depth}')
    if bit_depth == 16 and not path.lower().endswith(('.png', '.tif', '.tiff')):
        raise ValueError(f'{path}: 16-bit output needs a .png or .tif name')
    maximum = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    bgr = (np.clip(np.asarray(rgb, dtype=np.float64)[:, :, ::-1], 0.0, 1.0) * maximum).round().astype(dtype)
    folder, name = osp.split(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = osp.splitext(name)
    tmp_path = osp.join(folder, f'.{stem}.partial{os.getpid()}{ext}')
    try:
        if not cv2.imwrite(tmp_path, np.ascontiguousarray(bgr)):
            raise ImageFileError(f'{path}: OpenCV could not write this format')
        os.replace(tmp_path, path)
    finally:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
