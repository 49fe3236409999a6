"""The embedded default data: colour photographs bundled with scikit-image (no download needed).

Split (fixed, documented in docs/data.md):

- ``TRAIN_PHOTOS``: astronaut (512×512), rocket (427×640), motorcycle_left (500×741),
  immunohistochemistry (512×512), retina (1411×1411).
- ``VALIDATION_PHOTOS``: camera (512×512), coins (303×384), brick (512×512): grayscale photos, replicated
  to RGB. The reproductions (``scripts/reproduce.py``, ``options/repro/``) choose their settings on these.
- ``HELDOUT_PHOTOS`` (the *test* split): chelsea (300×451), coffee (400×600). The reproductions report their
  figures on these; nothing is chosen on them.

``motorcycle_right`` is left out on purpose: it is the other view of the same stereo pair as
``motorcycle_left`` and would leak the training scene into evaluation.
"""
import functools

import numpy as np

TRAIN_PHOTOS = ('astronaut', 'rocket', 'motorcycle_left', 'immunohistochemistry', 'retina')
VALIDATION_PHOTOS = ('camera', 'coins', 'brick')
HELDOUT_PHOTOS = ('chelsea', 'coffee')
GRAYSCALE_PHOTOS = frozenset(VALIDATION_PHOTOS)
ALL_PHOTOS = TRAIN_PHOTOS + HELDOUT_PHOTOS
SPLITS = {
    'train': TRAIN_PHOTOS,
    'validation': VALIDATION_PHOTOS,
    'heldout': HELDOUT_PHOTOS,
    'test': HELDOUT_PHOTOS,
    'all': ALL_PHOTOS
}


@functools.lru_cache(maxsize=None)
def _load_uint8(name):
    from skimage import data as skdata

    if name == 'motorcycle_left':
        return skdata.stereo_motorcycle()[0]
    if name not in ALL_PHOTOS + VALIDATION_PHOTOS:
        raise KeyError(f'unknown scikit-image photo {name!r}; available: {", ".join(ALL_PHOTOS + VALIDATION_PHOTOS)}')
    return getattr(skdata, name)()


def load_photo(name):
    """Returns photo ``name`` as float32 RGB in [0, 1], shape (H, W, 3), a fresh copy (the grayscale
    validation photos replicated to three channels)."""
    image = _load_uint8(name)
    if name in GRAYSCALE_PHOTOS and image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'scikit-image photo {name!r} is not an RGB image (shape {image.shape})')
    return image.astype(np.float32) / 255.0


def photo_names(split):
    if split not in SPLITS:
        raise KeyError(f'unknown split {split!r}; choose one of {", ".join(SPLITS)}')
    return SPLITS[split]
