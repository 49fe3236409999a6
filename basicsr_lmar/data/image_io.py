"""Reading images through basicsr's ``FileClient`` with errors that name the file and the option.

basicsr's own helpers fail obscurely on bad input (a missing LMDB key reaches ``np.frombuffer(None)``,
a corrupt PNG becomes ``None`` and fails later in a transform, a missing ``meta_info.txt`` is a bare
``FileNotFoundError``). Datasets of the plugin go through these functions instead.
"""
import os.path as osp

import numpy as np

from basicsr.data.data_util import paths_from_folder
from basicsr.utils import imfrombytes


class DataError(RuntimeError):
    """A data file, LMDB or key named by the options is missing or unreadable."""


def lmdb_keys(lmdb_path, option_key):
    """Keys listed in ``<lmdb>/meta_info.txt`` (one ``key.png (h,w,c) compression`` line each)."""
    if not str(lmdb_path).endswith('.lmdb'):
        raise DataError(f'{option_key}: {lmdb_path!r} is not an LMDB folder (the name must end in .lmdb); '
                        'build one with scripts/create_lmdb.py or use io_backend: {type: disk}.')
    meta = osp.join(lmdb_path, 'meta_info.txt')
    if not osp.isfile(meta):
        raise DataError(f'{option_key}: {meta} is missing; every LMDB of this project carries a meta_info.txt '
                        '(scripts/create_lmdb.py writes it). Rebuild the LMDB or write the file.')
    with open(meta) as handle:
        # A key may contain dots itself: strip only the extension of the first field.
        return [osp.splitext(line.split(' ')[0])[0] for line in handle if line.strip()]


def folder_paths(folder, option_key):
    if not osp.isdir(folder):
        raise DataError(f'{option_key}: folder {folder!r} does not exist.')
    paths = sorted(paths_from_folder(folder))
    if not paths:
        raise DataError(f'{option_key}: folder {folder!r} contains no files.')
    return paths


def read_image(file_client, path, client_key, option_key, flag='color'):
    """Reads one image as float32 in [0, 1] (BGR, as basicsr), or raises a :class:`DataError`."""
    try:
        content = file_client.get(path, client_key)
    except FileNotFoundError:
        raise DataError(f'{option_key}: image file {path!r} does not exist.') from None
    if content is None:
        raise DataError(f'{option_key}: LMDB has no key {path!r} (listed in meta_info.txt but absent from the '
                        'database); rebuild the LMDB with scripts/create_lmdb.py.')
    image = imfrombytes(content, flag=flag, float32=False)
    if image is None:
        raise DataError(f'{option_key}: {path!r} is not a decodable image (corrupt or truncated file?).')
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32) / 255.0
