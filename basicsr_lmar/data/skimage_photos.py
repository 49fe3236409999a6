"""The embedded default data: colour photographs bundled with scikit-image (no download needed).

Split (fixed, documented in docs/data.md):

- ``TRAIN_PHOTOS``: astronaut (512×512), rocket (427×640), motorcycle_left (500×741),
  immunohistochemistry (512×512), retina (1411×1411).
- ``HELDOUT_PHOTOS``: chelsea (300×451), coffee (400×600). Benchmarks report quality on these only.

``motorcycle_right`` is left out on purpose: it is the other view of the same stereo pair as
``motorcycle_left`` and would leak the training scene into evaluation.
"""
import functools

import numpy as np

TRAIN_PHOTOS = ('astronaut', 'rocket', 'motorcycle_left', 'immunohistochemistry', 'retina')
HELDOUT_PHOTOS = ('chelsea', 'coffee')
ALL_PHOTOS = TRAIN_PHOTOS + HELDOUT_PHOTOS
SPLITS = {'train': TRAIN_PHOTOS, 'heldout': HELDOUT_PHOTOS, 'all': ALL_PHOTOS}


@functools.lru_cache(maxsize=None)
def _load_uint8(name):
    from skimage import data as skdata

    if name == 'motorcycle_left':
        return skdata.stereo_motorcycle()[0]
    if name not in ALL_PHOTOS:
        raise KeyError(f'unknown scikit-image photo {name!r}; available: {", ".join(ALL_PHOTOS)}')
    return getattr(skdata, name)()


def load_photo(name):
    """Returns photo ``name`` as float32 RGB in [0, 1], shape (H, W, 3), a fresh copy."""
    image = _load_uint8(name)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'scikit-image photo {name!r} is not an RGB image (shape {image.shape})')
    return image.astype(np.float32) / 255.0


def photo_names(split):
    if split not in SPLITS:
        raise KeyError(f'unknown split {split!r}; choose one of {", ".join(SPLITS)}')
    return SPLITS[split]
