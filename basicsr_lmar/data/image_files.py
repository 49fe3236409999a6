"""Image files in and out of the plugin: one decoder, one orientation, documented conversions, atomic writes.

**Orientation.** An image whose header carries an EXIF orientation tag (phones and cameras store the
sensor's pixels and say how to turn them) is read *as it is displayed*: the tag is applied, the way
image viewers, browsers, Pillow's ``ImageOps.exif_transpose``, OpenCV's ``imread`` with its default
flags and therefore basicsr's ``imfrombytes`` do. Every reader of the plugin does the same, through
this module: :func:`probe_image_size` (the size the preflight and the folder tools check),
:func:`read_image_file` (the folder tools, the metrics of the benchmarks), :func:`decode_image` (the
datasets, from a file or an LMDB value) and ``scripts/create_lmdb.py`` (which stores the turned pixels,
without the tag). The tag is read with Pillow from the header (for PNG, an ``eXIf`` chunk before the
image data); OpenCV is told to ignore it (``IMREAD_IGNORE_ORIENTATION``; ``IMREAD_UNCHANGED`` never
applies it) so that the one rule, :func:`apply_orientation`, turns every image.

Listing (:func:`list_images`) names a missing, empty or image-less folder in one line. Probing
(:func:`probe_image_size`) reads only a file's header (Pillow; OpenCV decodes what Pillow cannot
identify), so that a tool can check every image's size before it computes anything.

Reading (:func:`read_image_file`) returns float32 RGB in [0, 1], shape (H, W, 3), plus the source bit
depth:

- 8-bit and 16-bit PNG/TIFF, JPEG, BMP, WebP are read with OpenCV (16-bit is scaled by 1/65535) and
  turned by their EXIF orientation;
- grayscale images are replicated to three channels (the networks are RGB);
- images with an alpha channel keep their colour channels; if the alpha is not fully opaque a
  :class:`ImageFileWarning` says that transparency is dropped (there is no background to composite onto
  that would be right for every use);
- an unreadable, empty or undecodable file raises :class:`ImageFileError` naming it.

Writing (:func:`write_image_file`) goes through a temporary file in the same folder that is renamed
over the target only when complete, so an interrupted script never leaves a half-written output; 8 or
16 bits (:data:`OUTPUT_BIT_DEPTHS`), chosen by the caller (the tools keep the input's depth).
"""
import errno
import io
import os
import os.path as osp
import warnings

import cv2
import numpy as np

from basicsr_lmar.atomic_write import write_atomically
from basicsr_lmar.errors import UserError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
OUTPUT_BIT_DEPTHS = (8, 16)

#: the EXIF tag that says how the stored pixels are turned for display (1: as stored)
EXIF_ORIENTATION = 0x0112
#: orientations whose displayed image is the stored one transposed (height and width swap)
TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


class ImageFileError(UserError):
    """An input image (or its folder) cannot be read or converted, or an output cannot be written."""


class ImageFileWarning(UserWarning):
    """A documented, lossy conversion of an input image (transparency dropped)."""


def list_images(folder, what='input folder'):
    """Sorted paths of the images (by extension, :data:`IMAGE_EXTENSIONS`) directly in ``folder``; a
    missing, empty or image-less folder raises :class:`ImageFileError` naming ``what`` and the folder."""
    if not osp.exists(folder):
        raise ImageFileError(f'{what} {folder} does not exist')
    if not osp.isdir(folder):
        raise ImageFileError(f'{what} {folder} is a file, not a folder of images')
    entries = os.listdir(folder)
    names = sorted(n for n in entries if n.lower().endswith(IMAGE_EXTENSIONS) and osp.isfile(osp.join(folder, n)))
    if not names:
        held = f'it holds {len(entries)} other entries' if entries else 'it is empty'
        raise ImageFileError(f'{what} {folder} has no images ({held}; looked for {", ".join(IMAGE_EXTENSIONS)})')
    return [osp.join(folder, n) for n in names]


def exif_orientation(image):
    """The EXIF orientation (1 to 8) of an opened Pillow image, from its header only; 1 without a tag.

    Pillow's ``getexif`` of a PNG decodes the whole image when the header has no ``eXIf`` chunk, so a
    PNG's tag is read from the chunk Pillow met before the image data.
    """
    from PIL import Image

    if image.format == 'PNG':
        raw = image.info.get('exif')
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
    else:
        exif = image.getexif()
    value = exif.get(EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(array, orientation):
    """``array`` (H, W[, C]) as displayed for an EXIF ``orientation``: the one rule of every reader."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, -1)  # a quarter turn clockwise
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, 1)
    return array


def _open_header(source):
    """``((h, w) as displayed, orientation)`` from the header of a path or a bytes-like, with Pillow."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Pillow's decompression-bomb warning: the header is all we read
        with Image.open(source) as image:
            width, height = image.size
            orientation = exif_orientation(image)
    if orientation in TRANSPOSING_ORIENTATIONS:
        height, width = width, height
    return (height, width), orientation


def probe_image_bytes(content):
    """``(height, width)`` as displayed of an encoded image in memory (an LMDB value), header only;
    raises Pillow's error when Pillow cannot identify it."""
    return _open_header(io.BytesIO(content))[0]


def _orientation_of_bytes(content):
    try:
        return _open_header(io.BytesIO(content))[1]
    except Exception:  # not a format Pillow reads: no tag it could apply either
        return 1


def decode_image(content, flags=cv2.IMREAD_UNCHANGED):
    """The pixels of an encoded image (bytes) as displayed: OpenCV decodes with ``flags`` (orientation
    ignored) and :func:`apply_orientation` turns them by the header's tag. None when OpenCV cannot
    decode it."""
    buffer = np.frombuffer(content, np.uint8)
    if buffer.size == 0:
        return None
    if flags != cv2.IMREAD_UNCHANGED:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(buffer, flags)
    if image is None or image.size == 0:
        return None
    orientation = _orientation_of_bytes(content)
    return np.ascontiguousarray(apply_orientation(image, orientation)) if orientation != 1 else image


def probe_image_size(path):
    """``(height, width)`` of an image file as displayed (EXIF orientation applied), from its header,
    without decoding the pixels.

    Pillow reads the header; a file Pillow cannot identify is decoded with OpenCV (the reader of
    :func:`read_image_file`), so a file is reported unreadable only when that reader fails too.
    """
    if not osp.isfile(path):
        raise ImageFileError(f'{path}: no such file')
    try:
        return _open_header(path)[0]
    except Exception:  # any failure of the header fast path falls back to the real reader
        rgb, _ = read_image_file(path)
        return rgb.shape[:2]


def read_image_array(path):
    """The pixels of an image file as displayed, as stored otherwise (dtype, channels: OpenCV's
    ``IMREAD_UNCHANGED``); an unreadable file is an :class:`ImageFileError` naming it."""
    if not osp.isfile(path):
        raise ImageFileError(f'{path}: no such file')
    try:
        with open(path, 'rb') as handle:
            content = handle.read()
    except OSError as error:
        raise ImageFileError(f'{path}: cannot be read ({(error.strerror or str(error)).lower()})') from None
    image = decode_image(content)
    if image is None:
        raise ImageFileError(f'{path}: not a readable image (corrupt, truncated or unsupported format)')
    return image


def encode_png(path, compress_level=1):
    """``(PNG bytes, (h, w, c))`` of an image file as displayed, its depth and channels kept (what
    ``scripts/create_lmdb.py`` stores; a module-level function, so that worker processes can run it)."""
    image = read_image_array(path)
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    ok, encoded = cv2.imencode('.png', image, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise ImageFileError(f'{path}: OpenCV cannot encode it as PNG')
    return encoded.tobytes(), (height, width, channels)


def read_image_file(path):
    """Returns ``(rgb_float32, bit_depth)``; see the module docstring for conversions."""
    image = read_image_array(path)
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
            warnings.warn(f'{path}: transparency is dropped (the alpha channel is ignored)', ImageFileWarning,
                          stacklevel=2)
        image = image[:, :, :3]
    elif image.shape[2] == 2:  # grayscale + alpha
        image = np.repeat(image[:, :, :1], 3, axis=2)
    elif image.shape[2] != 3:
        raise ImageFileError(f'{path}: {image.shape[2]} channels are not supported (use gray, RGB or RGBA)')
    rgb = image[:, :, ::-1].astype(np.float32) / scale
    return np.ascontiguousarray(rgb), bit_depth


def write_image_file(path, rgb, bit_depth=8):
    """Writes float RGB in [0, 1] (H, W, 3) atomically as 8- or 16-bit (PNG/TIFF for 16-bit)."""
    if bit_depth not in OUTPUT_BIT_DEPTHS:
        raise ValueError(f'bit_depth must be 8 or 16, got {bit_depth}')
    if bit_depth == 16 and not path.lower().endswith(('.png', '.tif', '.tiff')):
        raise ValueError(f'{path}: 16-bit output needs a .png or .tif name')
    maximum = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    bgr = (np.clip(np.asarray(rgb, dtype=np.float64)[:, :, ::-1], 0.0, 1.0) * maximum).round().astype(dtype)
    folder, name = osp.split(osp.abspath(path))
    stem, ext = osp.splitext(name)
    if not cv2.haveImageWriter(path):
        raise ImageFileError(f'{path}: OpenCV cannot write {ext or "files without an extension"}; use .png')
    os.makedirs(folder, exist_ok=True)

    def write(temporary):
        if not cv2.imwrite(temporary, np.ascontiguousarray(bgr)):
            raise ImageFileError(f'cannot write {path}: {_write_failure(folder)}')

    # OpenCV picks the format by the extension: the temporary name ends with the target's
    write_atomically(path, write, osp.join(folder, f'.{stem}.partial{os.getpid()}{ext}'))


def _write_failure(folder):
    """Why OpenCV (which reports only a boolean) could not write into ``folder``."""
    if not os.access(folder, os.W_OK):
        return os.strerror(errno.EACCES).lower()
    try:
        stats = os.statvfs(folder)
        if stats.f_bavail * stats.f_frsize < 1 << 20:
            return os.strerror(errno.ENOSPC).lower()
    except OSError:
        pass
    return 'OpenCV could not write the file (check the disk and the folder\'s permissions)'
