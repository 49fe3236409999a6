"""Builds LMDBs (with basicsr's ``meta_info.txt``) for the datasets of this project.

Paired UHD sets (UHD-LOL4K, 4KIL), laid out as ``<root>/<split>/{input,gt}/*.png``::

    python scripts/create_lmdb.py paired datasets/UHD-LOL4K --splits train test
    # -> datasets/UHD-LOL4K/train_input.lmdb, train_gt.lmdb, test_input.lmdb, test_gt.lmdb

HR-only folders (DIV2K / Flickr2K, for CAR and IRN)::

    python scripts/create_lmdb.py folder datasets/DIV2K/DIV2K_train_HR
    # -> datasets/DIV2K/DIV2K_train_HR.lmdb

Images are stored PNG-encoded (``--compress-level`` 0-9: 0 is fastest to read and largest, 9 smallest;
basicsr's default 1). ``--workers N`` reads and encodes with N processes; note that basicsr then keeps
*every encoded image of a database in memory* before writing (a 3840x2160 PNG is ~10-25 MB at level
1), so use it only when the whole set fits in RAM. The key of an image is its file name without
extension; an input and its GT share it, which is how basicsr pairs them. Before anything is written,
every input must have a GT of the same name and vice versa (else the first unmatched names are listed).
Use the LMDBs with ``io_backend: {type: lmdb}`` and ``dataroot_lq/dataroot_gt`` set to the ``.lmdb``
folders.
"""
import argparse
import os
import os.path as osp
import sys

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class DatasetLayoutError(ValueError):
    """A dataset folder is missing, empty or its inputs and GTs do not pair up."""


def list_images(folder):
    """Sorted image file names of ``folder`` (relative paths, recursive)."""
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


def _check_unique_keys(names, folder):
    seen = {}
    for name in names:
        key = lmdb_key(name)
        if key in seen:
            raise DatasetLayoutError(f'{folder!r}: {seen[key]!r} and {name!r} would share the LMDB key {key!r}; '
                                     'rename one of them')
        seen[key] = name


def pair_images(input_folder, gt_folder, shown=5):
    """Returns the input and GT file names ordered by their common keys; raises if any is unmatched."""
    inputs, gts = list_images(input_folder), list_images(gt_folder)
    _check_unique_keys(inputs, input_folder)
    _check_unique_keys(gts, gt_folder)
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
    so a generous size costs no disk."""
    from PIL import Image

    raw_bytes = 0
    for name in names:
        with Image.open(osp.join(folder, name)) as img:
            width, height = img.size
            raw_bytes += width * height * len(img.getbands()) * (2 if img.mode.startswith('I;16') else 1)
    return int(raw_bytes * 1.1) + 64 * 2**20 + 4096 * len(names)


def write_lmdb(folder, names, lmdb_path, compress_level=1, workers=0):
    """Writes ``names`` (relative to ``folder``) into ``lmdb_path`` with basicsr's ``make_lmdb_from_imgs``."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    if osp.exists(lmdb_path):
        raise FileExistsError(f'{lmdb_path!r} already exists; delete it or choose another output')
    make_lmdb_from_imgs(folder, lmdb_path, names, [lmdb_key(n) for n in names], compress_level=compress_level,
                        multiprocessing_read=workers > 1, n_thread=max(workers, 1),
                        map_size=map_size_for(folder, names))


def create_paired(root, splits=('train', 'test'), input_dir='input', gt_dir='gt', out_root=None, compress_level=1,
                  workers=0):
    """LMDBs ``<out_root>/<split>_input.lmdb`` and ``<split>_gt.lmdb`` for each split; returns their paths.

    Every split is checked for pairing before any database is written.
    """
    out_root = out_root or root
    pairs = {split: pair_images(osp.join(root, split, input_dir), osp.join(root, split, gt_dir)) for split in splits}
    written = []
    for split, (inputs, gts) in pairs.items():
        for sub, names, tag in ((input_dir, inputs, 'input'), (gt_dir, gts, 'gt')):
            lmdb_path = osp.join(out_root, f'{split}_{tag}.lmdb')
            write_lmdb(osp.join(root, split, sub), names, lmdb_path, compress_level, workers)
            written.append(lmdb_path)
    return written


def create_folder(folder, lmdb_path=None, compress_level=1, workers=0):
    """One LMDB of every image of ``folder`` (HR-only sets); returns its path."""
    lmdb_path = lmdb_path or folder.rstrip('/\\') + '.lmdb'
    names = list_images(folder)
    _check_unique_keys(names, folder)
    write_lmdb(folder, names, lmdb_path, compress_level, workers)
    return lmdb_path


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
        sub.add_argument('--workers', type=int, default=0,
                         help='processes reading/encoding images (holds the whole set in memory; default 0)')
    args = parser.parse_args(argv)
    try:
        if args.command == 'paired':
            written = create_paired(args.root, args.splits, args.input_dir, args.gt_dir, args.out_root,
                                    args.compress_level, args.workers)
        else:
            written = [create_folder(args.folder, args.output, args.compress_level, args.workers)]
    except (DatasetLayoutError, FileExistsError) as error:
        sys.exit(f'create_lmdb: {error}')
    print('written: ' + ', '.join(written))
    return written


if __name__ == '__main__':
    main()
