"""Paired UHD images (low-light input / normal-light GT) for pretraining the enhancers.

BasicSR's :class:`~basicsr.data.paired_image_dataset.PairedImageDataset` reads the pairs (folders, a
meta-info file or LMDB) and can only random-crop for training. The LMAR authors pretrain their CNNs on
whole frames *resized* to 1024x1024 (``torchvision.transforms.Resize`` on PIL images: antialiased
bilinear, aspect ratio not kept), and train LMAR itself on random 1024x1024 crops.
:class:`UHDPairedImageDataset` keeps basicsr's reading and adds that choice:

- ``train_transform: resize`` (default): both images resized to ``train_size`` with ``resize_kernel``
  (``bilinear``/``bicubic``: PIL's antialiased filters on float32 channels, i.e. the authors' transform
  without their uint8 rounding; ``area``: OpenCV's ``INTER_AREA``, faster);
- ``train_transform: crop``: the same random ``train_size`` crop of both images (basicsr's
  ``paired_random_crop``);
- ``train_transform: none``: whole images (they must then share one size within a batch).

Validation/test (``phase`` not ``train``) always returns the full-resolution pair. Flips/rotations
(``use_hflip``, ``use_rot``) are off by default, as in the paper.

Expected tree (UHD-LOL4K; 4KIL is laid out the same way), file names shared by input and GT::

    datasets/UHD-LOL4K/train/input/*.png    datasets/UHD-LOL4K/train/gt/*.png
    datasets/UHD-LOL4K/test/input/*.png     datasets/UHD-LOL4K/test/gt/*.png

or the LMDBs written by ``scripts/create_lmdb.py`` (``train_input.lmdb`` / ``train_gt.lmdb``) with
``io_backend: {type: lmdb}``.
"""
import os.path as osp

import cv2
import numpy as np
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from PIL import Image

from basicsr_lmar.data.dataset_options import dataset_schema, section_of
from basicsr_lmar.data.image_io import (META_INFO, DataError, describe_images, folder_paths, image_sizes, lmdb_keys,
                                        make_file_client, meta_info_names, read_image)
from basicsr_lmar.data.size_rules import SIZE_POLICY_OPTION
from basicsr_lmar.options import Option, OptionError

TRAIN_TRANSFORMS = ('resize', 'crop', 'none')
RESIZE_KERNELS = ('bilinear', 'bicubic', 'area')
_PIL_FILTERS = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}

OPTION_SCHEMA = dataset_schema(
    'UHDPairedImageDataset', {
        'dataroot_lq': Option(type=str, doc='folder or .lmdb of the low-light inputs'),
        'dataroot_gt': Option(type=str, doc='folder or .lmdb of the ground truths'),
        'io_backend': Option(type=dict, doc='{type: disk} or {type: lmdb}'),
        'meta_info_file': Option(None, type=str, doc='list of file names to use (disk backend)'),
        'filename_tmpl': Option('{}', type=str, doc='input file name template, e.g. "{}"'),
        'train_transform': Option('resize', choices=TRAIN_TRANSFORMS, doc='how training pairs reach train_size'),
        'train_size': Option([1024, 1024], type=(int, list, tuple), min=1, doc='training size, int or [h, w]'),
        'resize_kernel': Option('bilinear', choices=RESIZE_KERNELS, doc='kernel of train_transform=resize'),
        'gt_size': Option(None, type=int, min=1, doc='basicsr name of train_size for crops (square)'),
        'use_hflip': Option(False, doc='random horizontal flips'),
        'use_rot': Option(False, doc='random 90-degree rotations and vertical flips'),
        'size_policy': SIZE_POLICY_OPTION,
    })


def resize_image(img, size, kernel='bilinear'):
    """Resizes an HWC float32 image to ``size`` = (h, w): PIL's antialiased ``bilinear``/``bicubic``
    per channel, or OpenCV ``area``."""
    h, w = size
    if kernel == 'area':
        out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        return out[..., None] if out.ndim == 2 else out
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c]), mode='F').resize((w, h), _PIL_FILTERS[kernel]))
        for c in range(img.shape[2])
    ]
    return np.stack(channels, axis=-1)


@DATASET_REGISTRY.register()
class UHDPairedImageDataset(PairedImageDataset):
    """Paired low-light/normal-light UHD images; training pairs resized or cropped to ``train_size``.

    Options (besides basicsr's ``name``, ``phase``, loader keys): see :data:`OPTION_SCHEMA` and the
    module doc. ``scale`` must be 1 (enhancement keeps the size).
    """

    option_schema = OPTION_SCHEMA

    def __init__(self, opt):
        section = section_of(opt)
        OPTION_SCHEMA.validate(opt, section)
        self.section = section
        if opt.get('scale', 1) != 1:
            raise OptionError(f'[{section}] (UHDPairedImageDataset) enhancement pairs share their size: '
                              f"scale must be 1, got {opt['scale']}")
        opt = dict(opt)
        opt.setdefault('scale', 1)
        size = opt.get('gt_size') or opt.get('train_size', [1024, 1024])
        self.train_size = (size, size) if isinstance(size, int) else tuple(size)
        if len(self.train_size) != 2:
            raise OptionError(f'[{section}] (UHDPairedImageDataset) train_size must be an int or [h, w]; got {size!r}')
        self.train_transform = opt.get('train_transform', 'resize')
        self.resize_kernel = opt.get('resize_kernel', 'bilinear')
        opt['io_backend'] = dict(opt['io_backend'])
        lmdb = opt['io_backend'].get('type') == 'lmdb'
        if lmdb:
            keys = self._paired_lmdb_keys(opt)
        else:
            for key in ('dataroot_lq', 'dataroot_gt'):
                folder_paths(opt[key], f'{section}.{key}')
            if opt.get('meta_info_file'):
                meta_info_names(opt['meta_info_file'], f'{section}.meta_info_file')
        super().__init__(opt)
        if lmdb:  # basicsr's reader of meta_info.txt cuts a key at its first dot; the checked keys instead
            self.paths = [{'lq_path': key, 'gt_path': key} for key in keys]
        self._check_sizes(opt)

    def _paired_lmdb_keys(self, opt):
        """The keys of the checked input and GT LMDBs (:func:`lmdb_index`), which must be the same."""
        gt = lmdb_keys(opt['dataroot_gt'], f'{self.section}.dataroot_gt')
        lq = lmdb_keys(opt['dataroot_lq'], f'{self.section}.dataroot_lq')
        if set(gt) != set(lq):
            only_lq, only_gt = sorted(set(lq) - set(gt)), sorted(set(gt) - set(lq))
            raise DataError(f'{self.section}: the LMDBs do not pair up: {len(only_lq)} input key(s) without GT '
                            f'{only_lq[:5]}, {len(only_gt)} GT key(s) without input {only_gt[:5]}; build both with '
                            'scripts/create_lmdb.py paired from folders of the same file names.')
        return gt

    def _check_sizes(self, opt):
        """Every pair's size from the headers (or ``meta_info.txt``): pairs of one size, crops that fit."""
        backend = opt['io_backend'].get('type')
        gt = image_sizes([p['gt_path'] for p in self.paths], backend, f'{self.section}.dataroot_gt', opt['dataroot_gt'])
        lq = image_sizes([p['lq_path'] for p in self.paths], backend, f'{self.section}.dataroot_lq', opt['dataroot_lq'])
        self.image_sizes = gt
        if backend == 'lmdb':
            sources = (osp.join(opt['dataroot_gt'], META_INFO), osp.join(opt['dataroot_lq'], META_INFO))
        else:
            sources = ('its header', 'its header')
        self._expected = {'gt': ({p: (size, sources[0]) for p, size in gt}),
                          'lq': ({p: (size, sources[1]) for p, size in lq})}
        unpaired = [(g, l) for g, l in zip(gt, lq) if g[1] != l[1]]
        if unpaired:
            (gt_path, gt_size), (lq_path, lq_size) = unpaired[0]
            raise OptionError(f'[{self.section}] {len(unpaired)} pair(s) of different sizes, e.g. input {lq_path} '
                              f'{lq_size[0]}x{lq_size[1]} and GT {gt_path} {gt_size[0]}x{gt_size[1]} (HxW); '
                              'pairs must share a size.')
        if opt['phase'] == 'train' and self.train_transform == 'crop':
            small = [(path, size) for path, size in gt if size[0] < self.train_size[0] or size[1] < self.train_size[1]]
            if small:
                raise OptionError(f'[{self.section}] train_size {list(self.train_size)} (train_transform: crop) is '
                                  f'larger than {len(small)} image(s): {describe_images(small)} (HxW); lower '
                                  'train_size or use train_transform: resize.')

    def __getitem__(self, index):
        if self.file_client is None:  # opened lazily: one per dataloader worker; LMDBs shared per process
            backend = dict(self.io_backend_opt)
            self.file_client = make_file_client(backend.pop('type'), **backend)
        paths = self.paths[index]
        img_gt = read_image(self.file_client, paths['gt_path'], 'gt', f'{self.section}.dataroot_gt',
                            expected=self._expected['gt'][paths['gt_path']])
        img_lq = read_image(self.file_client, paths['lq_path'], 'lq', f'{self.section}.dataroot_lq',
                            expected=self._expected['lq'][paths['lq_path']])

        if self.opt['phase'] == 'train':
            if self.train_transform == 'resize':
                img_gt = resize_image(img_gt, self.train_size, self.resize_kernel)
                img_lq = resize_image(img_lq, self.train_size, self.resize_kernel)
            elif self.train_transform == 'crop':
                img_gt, img_lq = _paired_random_crop(img_gt, img_lq, self.train_size, paths['gt_path'])
            img_gt, img_lq = augment([img_gt, img_lq], self.opt.get('use_hflip', False), self.opt.get('use_rot', False))

        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': paths['lq_path'], 'gt_path': paths['gt_path']}


def _paired_random_crop(img_gt, img_lq, size, gt_path):
    h, w = img_gt.shape[:2]
    if size[0] > h or size[1] > w:
        raise ValueError(f'train_size {list(size)} is larger than the image {gt_path} ({h}x{w}); lower train_size')
    if size[0] == size[1]:
        return paired_random_crop(img_gt, img_lq, size[0], 1, gt_path)
    top = np.random.randint(0, h - size[0] + 1)
    left = np.random.randint(0, w - size[1] + 1)
    window = (slice(top, top + size[0]), slice(left, left + size[1]))
    return img_gt[window], img_lq[window]
