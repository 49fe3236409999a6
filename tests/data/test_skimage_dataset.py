import numpy as np
import pytest
import torch

from basicsr.utils.registry import DATASET_REGISTRY
from basicsr_lmar.data.skimage_photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, load_photo
from basicsr_lmar.ops.resize import resize_reference
from basicsr_lmar.options import OptionError


def build(**opt):
    opt.setdefault('name', 'photos')
    return DATASET_REGISTRY.get('SkimagePhotoDataset')(opt)


def test_split_is_disjoint_and_photos_are_rgb():
    assert not set(TRAIN_PHOTOS) & set(HELDOUT_PHOTOS)
    for name in TRAIN_PHOTOS + HELDOUT_PHOTOS:
        photo = load_photo(name)
        assert photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.float32
        assert 0.0 <= photo.min() and photo.max() <= 1.0


def test_bicubic_pairs_match_the_resize_operator():
    ds = build(split='heldout', degradation='bicubic', scale=4)
    sample = ds[0]
    gt, lq = sample['gt'], sample['lq']
    assert gt.shape[1] % 4 == 0 and gt.shape[2] % 4 == 0
    expected = resize_reference(gt[None], (gt.shape[1] // 4, gt.shape[2] // 4), 'bicubic').clamp(0, 1)[0]
    torch.testing.assert_close(lq, expected, atol=1e-5, rtol=0)
    assert sample['lq_path'] == f'{HELDOUT_PHOTOS[0]}.png'


def test_lowlight_is_darker_and_deterministic_per_index():
    ds = build(split='train', degradation='lowlight', gt_size=48, num_samples=6, use_hflip=True, use_rot=True, seed=3)
    first = [ds[i] for i in range(len(ds))]
    again = [ds[i] for i in range(len(ds))]
    for a, b in zip(first, again):
        assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt'])
        assert a['gt'].shape == (3, 48, 48)
        assert a['lq'].mean() < a['gt'].mean()
    other_seed = build(split='train', degradation='lowlight', gt_size=48, num_samples=6, seed=4)
    assert not all(torch.equal(a['gt'], other_seed[i]['gt']) for i, a in enumerate(first))


def test_resize_to_makes_larger_images():
    ds = build(photos=['chelsea'], degradation='none', resize_to=[600, 902])
    assert ds[0]['gt'].shape == (3, 600, 902)
    assert torch.equal(ds[0]['gt'], ds[0]['lq'])


@pytest.mark.parametrize('opt, message', [
    ({'gt_size': 30, 'scale': 4}, 'gt_size 30 must be divisible by scale 4'),
    ({'gt_size': 2000}, 'larger than photo'),
    ({'photos': ['lena']}, "unknown scikit-image photo 'lena'"),
    ({'num_samples': 4}, 'num_samples needs gt_size'),
    ({'degradation': 'jpeg'}, "one of ['bicubic', 'lowlight', 'none']"),
])
def test_bad_options_are_named(opt, message):
    with pytest.raises(OptionError, match=None) as err:
        build(**opt)
    assert message in str(err.value)
