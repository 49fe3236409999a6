"""Reading images through basicsr's ``FileClient`` with errors that name the file and the option.

basicsr's own helpers fail obscurely on bad input (a missing LMDB key reaches ``np.frombuffer(None)``,
a corrupt PNG becomes ``None`` and fails later in a transform, a missing ``meta_info.txt`` is a bare
``FileNotFoundError``). Datasets of the plugin go through these functions instead.
"""
import os
import os.path as osp
import re

import numpy as np

from basicsr.data.data_util import paths_from_folder
from basicsr.utils import imfrombytes

from basicsr_lmar.errors import UserError


class DataError(UserError, RuntimeError):
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


_META_SIZE = re.compile(r'\((\d+),\s*(\d+)(?:,\s*\d+)?\)')


def lmdb_sizes(lmdb_path, option_key):
    """``{key: (h, w)}`` from ``<lmdb>/meta_info.txt`` (basicsr's ``key.png (h,w,c) compression`` lines),
    so that image sizes are known without reading the database."""
    lmdb_keys(lmdb_path, option_key)  # the same errors for a missing or misnamed LMDB
    sizes = {}
    with open(osp.join(lmdb_path, 'meta_info.txt')) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            match = _META_SIZE.search(line)
            if match is None:
                raise DataError(f'{option_key}: {lmdb_path}/meta_info.txt line {number} gives no size '
                                f'"(h,w,c)": {line.strip()!r}; rebuild the LMDB with scripts/create_lmdb.py.')
            sizes[osp.splitext(line.split(' ')[0])[0]] = (int(match.group(1)), int(match.group(2)))
    return sizes


def image_sizes(paths, backend_type, option_key, lmdb_path=None):
    """``[(path, (h, w))]`` of images, from their headers (disk; no pixel is decoded) or the LMDB's
    ``meta_info.txt``; a file that cannot be read is a :class:`DataError` naming it and ``option_key``."""
    from basicsr_lmar.data.image_files import ImageFileError, probe_image_size

    if backend_type == 'lmdb':
        sizes = lmdb_sizes(lmdb_path, option_key)
        return [(path, sizes[path]) for path in paths]
    result = []
    for path in paths:
        try:
            result.append((path, probe_image_size(path)))
        except ImageFileError as error:
            raise DataError(f'{option_key}: {error}') from None
    return result


def describe_images(items, limit=4):
    """``a.png (5x5), b.png (7x3) and 2 more`` for messages (sizes as HxW)."""
    shown = ', '.join(f'{path} ({size[0]}x{size[1]})' for path, size in items[:limit])
    return shown + (f' and {len(items) - limit} more' if len(items) > limit else '')


def folder_paths(folder, option_key):
    if not osp.isdir(folder):
        raise DataError(f'{option_key}: folder {folder!r} does not exist.')
    paths = sorted(paths_from_folder(folder))
    if not paths:
        raise DataError(f'{option_key}: folder {folder!r} contains no files.')
    return paths


_LMDB_ENVIRONMENTS = {}


class SharedLmdbClient:
    """Read-only LMDB access that opens each database once per process.

    py-lmdb refuses to open an environment twice in one process, which basicsr's ``FileClient`` does
    whenever two datasets (say train and val) read the same LMDB. Environments are keyed by process id
    too, because an environment must not be used across ``fork`` (dataloader workers open their own).
    """

    def __init__(self, db_paths, client_keys):
        import lmdb

        self._environments = {}
        for key, path in zip(client_keys, db_paths):
            cache_key = (os.getpid(), osp.realpath(path))
            if cache_key not in _LMDB_ENVIRONMENTS:
                _LMDB_ENVIRONMENTS[cache_key] = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
            self._environments[key] = _LMDB_ENVIRONMENTS[cache_key]

    def get(self, filepath, client_key='default'):
        with self._environments[client_key].begin(write=False) as txn:
            return txn.get(str(filepath).encode('ascii'))


def make_file_client(backend_type, **kwargs):
    """basicsr's ``FileClient`` for disk, :class:`SharedLmdbClient` for LMDB."""
    if backend_type == 'lmdb':
        return SharedLmdbClient(kwargs['db_paths'], kwargs['client_keys'])
    from basicsr.utils import FileClient
    return FileClient(backend_type, **kwargs)


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
