"""Builds LMDBs (with basicsr's ``meta_info.txt``) for the datasets of this project.

Paired UHD sets (UHD-LOL4K, 4KIL), laid out as ``<root>/<split>/{input,gt}/*.png``::

    python scripts/create_lmdb.py paired datasets/UHD-LOL4K --splits train test
    # -> datasets/UHD-LOL4K/train_input.lmdb, train_gt.lmdb, test_input.lmdb, test_gt.lmdb

HR-only folders (DIV2K / Flickr2K, for CAR and IRN)::

    python scripts/create_lmdb.py folder datasets/DIV2K/DIV2K_train_HR
    # -> datasets/DIV2K/DIV2K_train_HR.lmdb

The key of an image is its path in the folder without extension; an input and its GT share it, which
is how basicsr pairs them. Images are stored PNG-encoded (``--compress-level`` 0-9: 0 is fastest to
read and largest, 9 smallest; basicsr's default 1), as they are displayed: an EXIF orientation is
applied, as by every reader of the plugin (docs/data.md). ``--workers N`` reads and encodes with N
processes. Use the LMDBs with ``io_backend: {type: lmdb}`` and ``dataroot_lq/dataroot_gt`` set to the
``.lmdb`` folders.

Before anything is written, every input is checked and every problem named: each input must have a GT
of the same name and vice versa; each file must be a readable image; two files must not share a key;
a file name must be text (any Unicode name works; a name whose bytes are not UTF-8, or that holds a line
break or another control character, cannot be a line of ``meta_info.txt`` and is refused); an output must
not exist yet. Keys are stored as UTF-8: ASCII names give the keys basicsr's own tools write; other
names are read by the plugin's datasets (basicsr's own LMDB reader encodes keys as ASCII, so its
datasets cannot read them; the tool says so when it writes such keys).

Each LMDB is built in a hidden folder beside it (``.<name>.partial<pid>.lmdb``) and renamed to its name
only when all of them are complete: an error or Ctrl-C removes what was written, so a ``.lmdb`` folder
is always whole (a killed build's hidden folder is removed by the next build of the same LMDB). A user
mistake ends with one line and exit code 2.
"""
import argparse
import functools
import os
import os.path as osp
import re
import shutil
import sys
import unicodedata

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from basicsr.utils.lmdb_util import LmdbMaker  # noqa: E402

from basicsr_lmar.cli.errors import add_debug_argument, run_main  # noqa: E402
from basicsr_lmar.data.image_files import IMAGE_EXTENSIONS, encode_png  # noqa: E402
from basicsr_lmar.errors import UserError  # noqa: E402

#: LMDB's default limit on a key's length, in bytes
MAX_KEY_BYTES = 511
LISTED = 5  # names shown in one message


class DatasetLayoutError(UserError, ValueError):
    """A dataset folder is missing, empty, holds unusable files or its inputs and GTs do not pair up."""


def _listed(items):
    items = list(items)
    return ', '.join(items[:LISTED]) + (f' and {len(items) - LISTED} more' if len(items) > LISTED else '')


def list_images(folder):
    """Sorted image file names of ``folder`` (relative paths, recursive)."""
    if osp.isfile(folder):
        raise DatasetLayoutError(f'{folder!r} is a file, not a folder of images')
    if not osp.isdir(folder):
        raise DatasetLayoutError(f'folder {folder!r} does not exist')
    names = []
    for root, _, files in os.walk(folder):
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                names.append(osp.relpath(osp.join(root, name), folder))
    if not names:
        raise DatasetLayoutError(f'folder {folder!r} holds no image ({", ".join(IMAGE_EXTENSIONS)})')
    return sorted(names)


def lmdb_key(name):
    """basicsr's key of an image: its path without extension."""
    return osp.splitext(name)[0]


def _name_problem(name):
    """Why ``name`` cannot be a key and a line of ``meta_info.txt``, or None."""
    try:
        encoded = lmdb_key(name).encode('utf-8')
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python as lone surrogates
        return f'its bytes {os.fsencode(name)!r} are not UTF-8 text'
    control = [char for char in name if unicodedata.category(char) == 'Cc']
    if control:
        return f'it holds the control character {control[0]!r} (a line of meta_info.txt cannot)'
    if len(encoded) > MAX_KEY_BYTES:
        return f'its key is {len(encoded)} bytes of UTF-8, above LMDB\'s {MAX_KEY_BYTES}'
    return None


def check_names(names, folder):
    """Every name can be a key, and no two names share one; all problems named at once."""
    problems = [f'{name!r}: {problem}' for name in names for problem in [_name_problem(name)] if problem]
    seen = {}
    for name in names:
        key = lmdb_key(name)
        if key in seen:
            problems.append(f'{seen[key]!r} and {name!r} would share the key {key!r}')
        seen[key] = name
    if problems:
        raise DatasetLayoutError(f'{folder!r}: {len(problems)} file name(s) cannot be LMDB keys: '
                                 f'{_listed(problems)}; rename them.')


def pair_images(input_folder, gt_folder, shown=LISTED):
    """Returns the input and GT file names ordered by their common keys; raises if any is unmatched."""
    inputs, gts = list_images(input_folder), list_images(gt_folder)
    check_names(inputs, input_folder)
    check_names(gts, gt_folder)
    input_keys = {lmdb_key(n): n for n in inputs}
    gt_keys = {lmdb_key(n): n for n in gts}
    lonely_inputs = [input_keys[k] for k in sorted(input_keys.keys() - gt_keys.keys())]
    lonely_gts = [gt_keys[k] for k in sorted(gt_keys.keys() - input_keys.keys())]
    if lonely_inputs or lonely_gts:
        problems = []
        if lonely_inputs:
            problems.append(f'{len(lonely_inputs)} input(s) in {input_folder!r} have no GT of the same name in '
                            f'{gt_folder!r}, first: {", ".join(lonely_inputs[:shown])}')
        if lonely_gts:
            problems.append(f'{len(lonely_gts)} GT(s) in {gt_folder!r} have no input of the same name in '
                            f'{input_folder!r}, first: {", ".join(lonely_gts[:shown])}')
        raise DatasetLayoutError('; '.join(problems) + '. Every input needs its GT partner (same file name).')
    keys = sorted(input_keys)
    return [input_keys[k] for k in keys], [gt_keys[k] for k in keys]


def map_size_for(folder, names):
    """LMDB map size that fits the images whatever their PNG compression: the sum of their raw pixel
    bytes (read from the file headers only) plus headroom. basicsr's own estimate (first image x count
    x 10) overflows when images differ in size or compress unevenly. The map is virtual address space,
    so a generous size costs no disk. An image whose header cannot be read is named (all of them)."""
    from PIL import Image

    raw_bytes, unreadable = 0, []
    for name in names:
        try:
            with Image.open(osp.join(folder, name)) as img:
                width, height = img.size
                raw_bytes += width * height * len(img.getbands()) * (2 if img.mode.startswith('I;16') else 1)
        except Exception:
            unreadable.append(repr(name))
    if unreadable:
        raise DatasetLayoutError(f'{folder!r}: {len(unreadable)} file(s) are not readable images: '
                                 f'{_listed(unreadable)}; remove or replace them.')
    return int(raw_bytes * 1.1) + 64 * 2**20 + 4096 * len(names)


class Utf8LmdbMaker(LmdbMaker):
    """basicsr's ``LmdbMaker`` (environment, batched commits, ``meta_info.txt`` lines) with the keys and
    ``meta_info.txt`` in UTF-8: its ``put`` encodes keys as ASCII, which any other name fails."""

    def __init__(self, lmdb_path, **kwargs):
        super().__init__(lmdb_path, **kwargs)
        self.txt_file.close()  # opened in the locale's encoding
        self.txt_file = open(osp.join(lmdb_path, 'meta_info.txt'), 'w', encoding='utf-8')

    def put(self, img_byte, key, img_shape):
        self.counter += 1
        self.txn.put(key.encode('utf-8'), img_byte)
        h, w, c = img_shape
        self.txt_file.write(f'{key}.png ({h},{w},{c}) {self.compress_level}\n')
        if self.counter % self.batch == 0:
            self.txn.commit()
            self.txn = self.env.begin(write=True)

    def abort(self):
        self.txn.abort()
        self.env.close()
        self.txt_file.close()


def write_lmdb(folder, names, lmdb_path, compress_level=1, workers=0, map_size=None, desc=None):
    """Writes the images ``names`` (relative to ``folder``) into the new LMDB ``lmdb_path``; an error or
    Ctrl-C leaves the environment closed (the caller removes the folder)."""
    from tqdm import tqdm

    map_size = map_size or map_size_for(folder, names)
    maker = Utf8LmdbMaker(lmdb_path, map_size=map_size, compress_level=compress_level)
    paths = [osp.join(folder, name) for name in names]
    encode = functools.partial(encode_png, compress_level=compress_level)
    pool = None
    try:
        if workers > 1:
            from multiprocessing import Pool
            pool = Pool(workers)
            encoded = pool.imap(encode, paths, chunksize=4)  # in order, written as they arrive
        else:
            encoded = map(encode, paths)
        for name, (content, shape) in tqdm(zip(names, encoded), total=len(names), desc=desc or osp.basename(lmdb_path),
                                           unit='image'):
            maker.put(content, lmdb_key(name), shape)
    except BaseException:
        maker.abort()
        raise
    finally:
        if pool is not None:
            pool.terminate()
    maker.close()


def _partial_path(target, pid=None):
    folder, name = osp.split(osp.abspath(target))
    return osp.join(folder, f'.{name}.partial{os.getpid() if pid is None else pid}.lmdb')


def _remove_stale_partials(target):
    """Removes the hidden folders that killed builds of ``target`` left (their process is gone)."""
    folder, name = osp.split(osp.abspath(target))
    pattern = re.compile(rf'^\.{re.escape(name)}\.partial(\d+)\.lmdb$')
    for entry in os.listdir(folder) if osp.isdir(folder) else ():
        match = pattern.match(entry)
        if match and not _process_exists(int(match.group(1))):
            shutil.rmtree(osp.join(folder, entry), ignore_errors=True)


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_targets(targets, flag):
    """Every output must end in ``.lmdb``, not exist yet and have a folder (or a place for one) above it."""
    for target in targets:
        if not target.rstrip('/').endswith('.lmdb'):
            raise UserError(f'{flag} {target}: the name of an LMDB folder must end in .lmdb (the datasets look for '
                            'it); add the suffix.')
        if osp.exists(target):
            raise UserError(f'{target} already exists; delete it or choose another output ({flag}).')
        ancestor = osp.dirname(osp.abspath(target))
        while not osp.exists(ancestor):
            ancestor = osp.dirname(ancestor)
        if not osp.isdir(ancestor):
            raise UserError(f'{flag} {target}: cannot create it, {ancestor} is a file, not a folder.')


def build_lmdbs(plan, flag, compress_level=1, workers=0, report=print):
    """Builds every ``(folder, names, target)`` of ``plan`` into hidden folders, then renames them all;
    on any error or Ctrl-C nothing of this run is left. Returns the targets."""
    targets = [target for _, _, target in plan]
    check_targets(targets, flag)
    map_sizes = [map_size_for(folder, names) for folder, names, _ in plan]  # every header, before writing
    partials, created = [], []
    try:
        for (folder, names, target), map_size in zip(plan, map_sizes):
            parent = osp.dirname(osp.abspath(target))
            missing = []
            while not osp.isdir(parent):
                missing.append(parent)
                parent = osp.dirname(parent)
            for path in reversed(missing):
                os.mkdir(path)
                created.append(path)
            _remove_stale_partials(target)
            partials.append(_partial_path(target))
            write_lmdb(folder, names, partials[-1], compress_level, workers, map_size, osp.basename(target))
        for partial, target in zip(partials, targets):
            os.rename(partial, target)
    except BaseException:
        for partial in partials:
            shutil.rmtree(partial, ignore_errors=True)
        for path in reversed(created):
            try:
                os.rmdir(path)
            except OSError:
                pass
        raise
    wide = sorted({lmdb_key(n) for _, names, _ in plan for n in names if not lmdb_key(n).isascii()})
    if wide:
        report(f'note: {len(wide)} key(s) are not ASCII (e.g. {wide[0]!r}); they are stored as UTF-8, which the '
               "plugin's datasets read (basicsr's own LMDB reader encodes keys as ASCII and cannot read them).")
    return targets


def create_paired(root, splits=('train', 'test'), input_dir='input', gt_dir='gt', out_root=None, compress_level=1,
                  workers=0):
    """LMDBs ``<out_root>/<split>_input.lmdb`` and ``<split>_gt.lmdb`` for each split; returns their paths.

    Every split is checked (pairing, names, headers, outputs) before any database is written."""
    out_root = out_root or root
    plan = []
    for split in splits:
        inputs, gts = pair_images(osp.join(root, split, input_dir), osp.join(root, split, gt_dir))
        for sub, names, tag in ((input_dir, inputs, 'input'), (gt_dir, gts, 'gt')):
            plan.append((osp.join(root, split, sub), names, osp.join(out_root, f'{split}_{tag}.lmdb')))
    return build_lmdbs(plan, '--out-root', compress_level, workers)


def create_folder(folder, lmdb_path=None, compress_level=1, workers=0):
    """One LMDB of every image of ``folder`` (HR-only sets); returns its path."""
    lmdb_path = lmdb_path or folder.rstrip('/\\') + '.lmdb'
    names = list_images(folder)
    check_names(names, folder)
    return build_lmdbs([(folder, names, lmdb_path)], '--output', compress_level, workers)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    paired = commands.add_parser('paired', help='paired UHD set: <root>/<split>/{input,gt}')
    paired.add_argument('root')
    paired.add_argument('--splits', nargs='+', default=['train', 'test'])
    paired.add_argument('--input-dir', default='input')
    paired.add_argument('--gt-dir', default='gt')
    paired.add_argument('--out-root', default=None, help='where the .lmdb folders go (default: root)')
    folder = commands.add_parser('folder', help='one folder of images (DIV2K/Flickr2K HR)')
    folder.add_argument('folder')
    folder.add_argument('--output', default=None, help='the .lmdb to write (default: <folder>.lmdb)')
    for sub in (paired, folder):
        sub.add_argument('--compress-level', type=int, default=1, choices=range(10), metavar='0-9',
                         help='PNG compression level (default 1)')
        sub.add_argument('--workers', type=int, default=0, help='processes reading/encoding images (default 0)')
        add_debug_argument(sub)
    args = parser.parse_args(argv)
    if args.command == 'paired':
        written = create_paired(args.root, args.splits, args.input_dir, args.gt_dir, args.out_root,
                                args.compress_level, args.workers)
    else:
        written = [create_folder(args.folder, args.output, args.compress_level, args.workers)]
    print('written: ' + ', '.join(written))
    return written


if __name__ == '__main__':
    run_main(main)
