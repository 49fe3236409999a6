"""Reading images through basicsr's ``FileClient`` with errors that name the file and the option.

basicsr's own helpers fail obscurely on bad input (a missing LMDB key reaches ``np.frombuffer(None)``,
a corrupt PNG becomes ``None`` and fails later in a transform, a missing ``meta_info.txt`` is a bare
``FileNotFoundError``, an empty one a ``ZeroDivisionError`` in the loader set-up). Datasets of the
plugin go through these functions instead:

- a folder option that names a file, or nothing, is named as such (:func:`folder_paths`);
- an LMDB is checked when the dataset is built (:func:`lmdb_index`): its ``meta_info.txt`` must list
  images, each once, exactly the keys of the database, with the sizes of the images stored under them;
- images are decoded by :func:`basicsr_lmar.data.image_files.decode_image` (EXIF orientation applied,
  as by every reader of the plugin) and checked against the size the dataset's checks were made on.
"""
import os
import os.path as osp
import re

import cv2
import numpy as np

from basicsr.data.data_util import paths_from_folder

from basicsr_lmar.errors import UserError


class DataError(UserError, RuntimeError):
    """A data file, LMDB or key named by the options is missing or unreadable."""


META_INFO = 'meta_info.txt'

#: a ``meta_info.txt`` line: ``<name> (h,w[,c])[ <compression>]``; the name may hold spaces and dots
_META_LINE = re.compile(r'^(?P<name>.*?\S)\s+\((?P<h>\d+),\s*(?P<w>\d+)(?:,\s*\d+)?\)(?:\s+\d+)?\s*$')
LISTED = 5  # names shown in one message


def _listed(names):
    shown = ', '.join(repr(n) for n in names[:LISTED])
    return shown + (f' and {len(names) - LISTED} more' if len(names) > LISTED else '')


def _not_a_folder(path, option_key, lmdb=False):
    """The error for a ``path`` that should be a folder of images (or an LMDB folder): missing, or a file."""
    what = 'an LMDB folder' if lmdb else 'a folder of images'
    if osp.isfile(path):
        return DataError(f'{option_key}: {path!r} is a file, not {what}; set {option_key.rsplit(".", 1)[-1]} to '
                         f'the folder that holds it ({osp.dirname(osp.abspath(path))!r})' +
                         (' and io_backend to {type: disk}.' if lmdb else '.'))
    return DataError(f'{option_key}: {"LMDB folder" if lmdb else "folder"} {path!r} does not exist.')


def meta_info_name(line):
    """The file name (or LMDB key with its extension) of a ``meta_info.txt`` line, None for a blank line."""
    line = line.strip()
    if not line:
        return None
    match = _META_LINE.match(line)
    return match.group('name') if match else line


def lmdb_key_of(name):
    """basicsr's LMDB key of a listed name: the name without its extension (a key may hold dots)."""
    return osp.splitext(name)[0]


_LMDB_INDEXES = {}  # (LMDB, stat of its files) -> checked index, so that the preflight's check is not redone


def lmdb_index(lmdb_path, option_key):
    """``[(key, (h, w))]`` of an LMDB, from its ``meta_info.txt`` (basicsr's ``key.png (h,w,c) level``
    lines), checked against the database before any image is decoded: the file must list at least one
    image, each key once, exactly the keys the database holds, and for each the size of the image stored
    under it (read from the stored image's header). Anything else is a :class:`DataError` naming the
    LMDB, the line or key and the fix."""
    lmdb_path = str(lmdb_path)
    if not osp.isdir(lmdb_path):
        raise _not_a_folder(lmdb_path, option_key, lmdb=True)
    if not lmdb_path.rstrip('/').endswith('.lmdb'):
        raise DataError(f'{option_key}: {lmdb_path!r} is not an LMDB folder (the name must end in .lmdb); '
                        'build one with scripts/create_lmdb.py or use io_backend: {type: disk}.')
    meta = osp.join(lmdb_path, META_INFO)
    if not osp.isfile(meta):
        raise DataError(f'{option_key}: {meta} is missing; every LMDB of this project carries a meta_info.txt '
                        '(scripts/create_lmdb.py writes it). Rebuild the LMDB or write the file.')
    files = [path for path in (meta, osp.join(lmdb_path, 'data.mdb')) if osp.isfile(path)]
    cache_key = (osp.realpath(lmdb_path), tuple((os.stat(path).st_mtime_ns, os.stat(path).st_size) for path in files))
    if cache_key not in _LMDB_INDEXES:
        _LMDB_INDEXES[cache_key] = _check_lmdb(lmdb_path, meta, option_key)
    return list(_LMDB_INDEXES[cache_key])


def _check_lmdb(lmdb_path, meta, option_key):
    from basicsr_lmar.data.image_files import probe_image_bytes

    entries, lines = [], {}
    with open(meta, encoding='utf-8') as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            match = _META_LINE.match(line.strip())
            if match is None:
                raise DataError(f'{option_key}: {meta} line {number} gives no size "(h,w,c)": {line.strip()!r}; '
                                'rebuild the LMDB with scripts/create_lmdb.py.')
            key = lmdb_key_of(match.group('name'))
            if key in lines:
                raise DataError(f'{option_key}: {meta} lists the key {key!r} twice (lines {lines[key]} and {number}); '
                                'rebuild the LMDB with scripts/create_lmdb.py.')
            lines[key] = number
            entries.append((key, (int(match.group('h')), int(match.group('w')))))
    if not entries:
        raise DataError(f'{option_key}: {meta} is empty: the LMDB lists no image (the build that wrote it did not '
                        'finish). Delete the LMDB and build it again with scripts/create_lmdb.py.')
    environment = _environment(lmdb_path)
    with environment.begin(write=False, buffers=True) as txn:
        stored = {bytes(key).decode('utf-8', 'backslashreplace') for key in txn.cursor().iternext(values=False)}
        unlisted = sorted(stored - set(lines))
        absent = [key for key, _ in entries if key not in stored]
        if absent or unlisted:
            problems = []
            if absent:
                problems.append(f'{len(absent)} key(s) listed in meta_info.txt are not in the database: '
                                f'{_listed(absent)}')
            if unlisted:
                problems.append(f'{len(unlisted)} image(s) in the database are not listed in meta_info.txt: '
                                f'{_listed(unlisted)}')
            raise DataError(f'{option_key}: {lmdb_path} and its meta_info.txt disagree: ' + '; '.join(problems) +
                            '. Rebuild the LMDB with scripts/create_lmdb.py.')
        for key, listed in entries:
            value = txn.get(key.encode('utf-8'))
            try:
                try:
                    size = probe_image_bytes(bytes(value[:1 << 16]))  # the header is at the start
                except Exception:
                    size = probe_image_bytes(bytes(value))
            except Exception:
                raise DataError(f'{option_key}: the value of key {key!r} in {lmdb_path} is not an image; rebuild the '
                                'LMDB with scripts/create_lmdb.py.') from None
            if tuple(size) != listed:
                raise DataError(f'{option_key}: {meta} line {lines[key]} lists {key!r} as {listed[0]}x{listed[1]} '
                                f'(HxW) but the image stored under that key is {size[0]}x{size[1]}; correct the line '
                                'or rebuild the LMDB with scripts/create_lmdb.py.')
    return entries


def lmdb_keys(lmdb_path, option_key):
    """The keys of a checked LMDB (:func:`lmdb_index`), in the order of its ``meta_info.txt``."""
    return [key for key, _ in lmdb_index(lmdb_path, option_key)]


def meta_info_names(meta_info_file, option_key):
    """The file names listed in a ``meta_info_file`` (disk backend), one per line; a missing or empty
    file is a :class:`DataError` naming the option."""
    if not osp.isfile(meta_info_file):
        what = 'a folder, not a file' if osp.isdir(meta_info_file) else 'missing'
        raise DataError(f'{option_key}: {meta_info_file!r} is {what}; give the text file that lists the images, one '
                        'per line, or leave meta_info_file out to use every image of the folder.')
    with open(meta_info_file, encoding='utf-8') as handle:
        names = [name for name in map(meta_info_name, handle) if name]
    if not names:
        raise DataError(f'{option_key}: {meta_info_file} lists no image; add the file names, one per line, or leave '
                        'meta_info_file out to use every image of the folder.')
    return names


def image_sizes(paths, backend_type, option_key, lmdb_path=None):
    """``[(path, (h, w))]`` of images as displayed, from their headers (disk; no pixel is decoded) or the
    LMDB's checked ``meta_info.txt``; a file that cannot be read is a :class:`DataError` naming it and
    ``option_key``."""
    from basicsr_lmar.data.image_files import ImageFileError, probe_image_size

    if backend_type == 'lmdb':
        sizes = dict(lmdb_index(lmdb_path, option_key))
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
        raise _not_a_folder(folder, option_key)
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
        self._environments = {key: _environment(path) for key, path in zip(client_keys, db_paths)}

    def get(self, filepath, client_key='default'):
        with self._environments[client_key].begin(write=False) as txn:
            return txn.get(str(filepath).encode('utf-8'))  # scripts/create_lmdb.py's keys (ASCII ones unchanged)


def _environment(path):
    """This process's read-only environment of the LMDB at ``path`` (opened once)."""
    import lmdb

    cache_key = (os.getpid(), osp.realpath(path))
    if cache_key not in _LMDB_ENVIRONMENTS:
        _LMDB_ENVIRONMENTS[cache_key] = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
    return _LMDB_ENVIRONMENTS[cache_key]


def make_file_client(backend_type, **kwargs):
    """basicsr's ``FileClient`` for disk, :class:`SharedLmdbClient` for LMDB."""
    if backend_type == 'lmdb':
        return SharedLmdbClient(kwargs['db_paths'], kwargs['client_keys'])
    from basicsr.utils import FileClient
    return FileClient(backend_type, **kwargs)


_FLAGS = {'color': cv2.IMREAD_COLOR, 'grayscale': cv2.IMREAD_GRAYSCALE, 'unchanged': cv2.IMREAD_UNCHANGED}


def read_image(file_client, path, client_key, option_key, flag='color', expected=None):
    """Reads one image as float32 in [0, 1] (BGR, as basicsr; ``flag`` as basicsr's ``imfrombytes``),
    turned by its EXIF orientation (:func:`basicsr_lmar.data.image_files.decode_image`), or raises a
    :class:`DataError`. ``expected``: ``((h, w), where the size came from)``, checked against the
    decoded image (the size checks of the dataset were made on it)."""
    from basicsr_lmar.data.image_files import decode_image

    try:
        content = file_client.get(path, client_key)
    except FileNotFoundError:
        raise DataError(f'{option_key}: image file {path!r} does not exist.') from None
    if content is None:
        raise DataError(f'{option_key}: LMDB has no key {path!r} (listed in meta_info.txt but absent from the '
                        'database); rebuild the LMDB with scripts/create_lmdb.py.')
    image = decode_image(content, _FLAGS[flag])
    if image is None:
        raise DataError(f'{option_key}: {path!r} is not a decodable image (corrupt or truncated file?).')
    if expected is not None and tuple(image.shape[:2]) != tuple(expected[0]):
        (height, width), source = expected
        raise DataError(f'{option_key}: {path!r} decodes to {image.shape[0]}x{image.shape[1]} (HxW) but {source} '
                        f'says {height}x{width}; the size checks were made on it: '
                        + ('rebuild the LMDB with scripts/create_lmdb.py.' if source.endswith(META_INFO)
                           else 're-save the file.'))
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32) / 255.0
