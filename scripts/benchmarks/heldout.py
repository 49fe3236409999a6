"""Evaluation images of the quality benchmarks: the project's splits, or any folder (``--heldout DIR``).

Every quality benchmark adds these arguments with :func:`add_heldout_arguments` and reads its images with
:func:`evaluation_images`:

- ``--split validation`` (camera, coins, brick; grayscale, replicated to RGB): where recipes, iterations
  and seeds are chosen;
- ``--split test`` (the default; chelsea, coffee): where figures are reported, never used for choosing;
- ``--heldout DIR``: every image of DIR instead (8/16-bit, gray or RGB, read by the project's image reader),
  so anyone can rerun a benchmark on their own images.

:func:`test_crops` gives the fixed crops of the test photos that the HCD timings run on.

Splits are defined in :mod:`basicsr_lmar.data.skimage_photos` (docs/data.md).
"""
import os.path as osp

from basicsr_lmar.data.image_files import list_images, read_image_file
from basicsr_lmar.data.skimage_photos import load_photo, photo_names

SPLITS = ('validation', 'test')
# top-left corners of the fixed crops of the test photos (chelsea 300x451, coffee 400x600)
TEST_CROPS = (('chelsea', (60, 120)), ('chelsea', (150, 250)), ('chelsea', (20, 300)), ('coffee', (100, 200)),
              ('coffee', (250, 350)), ('coffee', (30, 420)))


def add_heldout_arguments(parser, default_split='test'):
    group = parser.add_argument_group('evaluation images')
    group.add_argument('--split', choices=SPLITS, default=default_split,
                       help='validation: choose recipes on it; test: report figures on it (default: %(default)s)')
    group.add_argument('--heldout', metavar='DIR',
                       help='evaluate on every image of DIR instead of the split (any HR images)')
    return group


def evaluation_images(args):
    """``[(name, rgb float32 (H, W, 3) in [0, 1])]`` for ``--heldout DIR`` or ``--split``, and a label
    saying where they come from (for the printed tables)."""
    if getattr(args, 'heldout', None):
        paths = list_images(args.heldout, what='--heldout folder')
        images = [(osp.splitext(osp.basename(path))[0], read_image_file(path)[0]) for path in paths]
        return images, f'--heldout {args.heldout}'
    names = photo_names(args.split)
    return [(name, load_photo(name)) for name in names], f'{args.split} split ({", ".join(names)})'


def test_crops(size):
    """``[(name@y,x, float32 tensor (3, size, size))]``: the six fixed crops of the test photos (TEST_CROPS)."""
    import torch

    crops = []
    for name, (y, x) in TEST_CROPS:
        photo = torch.from_numpy(load_photo(name)).permute(2, 0, 1)
        crops.append((f'{name}@{y},{x}', photo[:, y:y + size, x:x + size].contiguous()))
    return crops
