"""``SkimagePhotoDataset``: the embedded default data for demos and tests.

Samples come from scikit-image's bundled colour photographs (see :mod:`basicsr_lmar.data.skimage_photos`
for the train/held-out split). Each sample is a ground-truth crop ``gt`` and a paired input ``lq``:

- ``degradation: bicubic``: ``lq`` is ``gt`` downscaled by ``scale`` with MATLAB-style antialiased
  bicubic (:func:`basicsr_lmar.ops.resize.resize`), the usual SR/rescaling setting;
- ``degradation: lowlight``: ``lq`` is a synthetic low-light version of ``gt`` at the same size:
  ``gain · gt^gamma`` plus Gaussian noise, with ``gamma`` and ``gain`` drawn per sample from the given
  ranges (darkening as in low-light enhancement benchmarks);
- ``degradation: none``: ``lq`` is ``gt`` (HR-only methods such as CAR, IRN and LMAR's resampler).

Deterministic: sample ``i`` depends only on ``(seed, i)``, whatever the worker or epoch, so a run is
reproducible and two processes can be compared sample by sample. ``num_samples`` sets the virtual
length of a training set (random crops); without ``gt_size`` each photo is one sample (validation).
"""
import numpy as np
import torch
from torch.utils import data

from basicsr.utils.registry import DATASET_REGISTRY
from basicsr_lmar.data.dataset_options import dataset_schema, section_of
from basicsr_lmar.data.size_rules import SIZE_POLICY_OPTION
from basicsr_lmar.data.skimage_photos import SPLITS, load_photo, photo_names
from basicsr_lmar.ops.resize import resize
from basicsr_lmar.options import Option, OptionError

SCHEMA = dataset_schema('SkimagePhotoDataset', {
    'split': Option('train', choices=tuple(SPLITS), doc='which photos: train | validation | heldout (= test) | all'),
    'photos': Option(None, type=(list, tuple), doc='explicit photo names; overrides split'),
    'degradation': Option('bicubic', choices=('bicubic', 'lowlight', 'none')),
    'scale': Option(1, type=int, min=1),
    'gt_size': Option(None, type=int, min=1, doc='random crop size; ~ for whole photos'),
    'resize_to': Option(None, type=(list, tuple), length=2, min=1,
                        doc='[h, w] to resize each photo to (bicubic) before cropping'),
    'num_samples': Option(None, type=int, min=1, doc='virtual length with random crops'),
    'use_hflip': Option(False),
    'use_rot': Option(False),
    'gamma': Option([1.5, 2.5], type=(list, tuple), length=2, min=1.0, doc='low-light gamma range'),
    'gain': Option([0.4, 0.7], type=(list, tuple), length=2, min=0.0, max=1.0, doc='low-light gain range'),
    'noise_sigma': Option(0.01, min=0.0, doc='low-light Gaussian noise std in [0, 1] units'),
    'seed': Option(0, type=int, min=0),
    'size_policy': SIZE_POLICY_OPTION,
})


def darken(image, gamma, gain, noise_sigma, rng):
    """Synthetic low light: ``gain · image^gamma + N(0, sigma²)``, clipped to [0, 1]."""
    dark = gain * np.power(image, gamma)
    if noise_sigma > 0:
        dark = dark + rng.normal(0.0, noise_sigma, size=dark.shape).astype(np.float32)
    return np.clip(dark, 0.0, 1.0).astype(np.float32)


def _to_tensor(image):
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


@DATASET_REGISTRY.register()
class SkimagePhotoDataset(data.Dataset):

    def __init__(self, opt):
        super().__init__()
        self.opt = SCHEMA.validate(opt, section_of(opt))
        section = section_of(opt)
        names = tuple(self.opt.photos) if self.opt.photos else photo_names(self.opt.split)
        try:
            photos = [load_photo(name) for name in names]
        except KeyError as exc:
            raise OptionError(f'[{section}] option \'photos\': {exc.args[0]}') from None
        if self.opt.resize_to:
            size = tuple(int(s) for s in self.opt.resize_to)
            photos = [resize(_to_tensor(p)[None], size, 'bicubic').clamp(0, 1)[0].numpy().transpose(1, 2, 0)
                      for p in photos]
        self.names, self.photos = names, photos
        self.image_sizes = [(f'{n}.png', tuple(p.shape[:2])) for n, p in zip(names, photos)]
        scale, gt_size = self.opt.scale, self.opt.gt_size
        if gt_size is not None:
            if self.opt.degradation == 'bicubic' and gt_size % scale:
                raise OptionError(f'[{section}] gt_size {gt_size} must be divisible by scale {scale}; '
                                  f'use {gt_size - gt_size % scale or scale}.')
            too_small = [(n, p.shape[:2]) for n, p in zip(names, photos) if min(p.shape[:2]) < gt_size]
            if too_small:
                raise OptionError(f'[{section}] gt_size {gt_size} is larger than photo {too_small[0][0]!r} '
                                  f'{too_small[0][1]}; lower gt_size or set resize_to.')
        elif self.opt.num_samples is not None:
            raise OptionError(f'[{section}] num_samples needs gt_size (random crops); without gt_size '
                              'each photo is one sample.')
        elif self.opt.degradation == 'bicubic':
            small = [(n, s) for n, s in self.image_sizes if min(s) < scale]
            if small:
                raise OptionError(f'[{section}] photo {small[0][0]} {small[0][1][0]}x{small[0][1][1]} (HxW) is '
                                  f'smaller than the scale {scale}; enlarge resize_to or leave it out.')

    def __len__(self):
        if self.opt.gt_size is not None:
            return self.opt.num_samples or len(self.photos)
        return len(self.photos)

    def __getitem__(self, index):
        opt = self.opt
        rng = np.random.default_rng((opt.seed, index))
        photo_index = index % len(self.photos) if opt.gt_size is None else int(rng.integers(len(self.photos)))
        image = self.photos[photo_index]
        scale = opt.scale if opt.degradation == 'bicubic' else 1
        if opt.gt_size is not None:
            size = opt.gt_size
            top = int(rng.integers(image.shape[0] - size + 1))
            left = int(rng.integers(image.shape[1] - size + 1))
            image = image[top:top + size, left:left + size]
        elif opt.size_policy != 'pad':  # whole photo, cropped to a multiple of the scale (pad: the model pads)
            image = image[:image.shape[0] - image.shape[0] % scale, :image.shape[1] - image.shape[1] % scale]
        if opt.use_hflip and rng.random() < 0.5:
            image = image[:, ::-1]
        if opt.use_rot:
            if rng.random() < 0.5:
                image = image[::-1]
            if rng.random() < 0.5:
                image = image.transpose(1, 0, 2)
        gt = _to_tensor(image)
        if opt.degradation == 'bicubic' and scale > 1:
            lq = resize(gt[None], (gt.shape[1] // scale, gt.shape[2] // scale), 'bicubic').clamp(0, 1)[0]
        elif opt.degradation == 'lowlight':
            gamma = rng.uniform(*opt.gamma)
            gain = rng.uniform(*opt.gain)
            lq = _to_tensor(darken(np.ascontiguousarray(image), gamma, gain, opt.noise_sigma, rng))
        else:
            lq = gt.clone()
        name = self.names[photo_index] if opt.gt_size is None else f'{self.names[photo_index]}_{index:06d}'
        return {'lq': lq, 'gt': gt, 'lq_path': f'{name}.png', 'gt_path': f'{name}.png'}
