"""``HROnlyDataset``: high-resolution images only, for methods that make their own LR (CAR, IRN).

Reads a folder (``io_backend: {type: disk}``) or an LMDB built by ``scripts/create_lmdb.py``
(``io_backend: {type: lmdb}``, keys from ``meta_info.txt``). Training: random ``gt_size`` crop, flips
and 90° rotations. Validation/test (no ``gt_size``): the whole image, cropped to a multiple of
``scale`` so that LR = HR / scale exactly (BasicSR's ``mod_crop``).

Every image's size is read when the dataset is built (headers, or ``meta_info.txt`` checked against
the LMDB, :func:`~basicsr_lmar.data.image_io.lmdb_index`; no decoding; EXIF orientation applied): an
image smaller than ``gt_size`` (training) or than ``scale`` (whole images) is named then, not when a
batch first reaches it, and each decoded image is checked against that size. The model's own size
rule (:mod:`basicsr_lmar.data.size_rules`) is checked against :attr:`image_sizes` by the preflight;
``size_policy`` chooses crop (default) or refuse there.

Returns ``{'gt', 'gt_path', 'lq_path'}`` (``lq_path`` = ``gt_path``, which BasicSR's validators use
to name saved images).
"""
import os.path as osp
import random

from torch.utils import data

from basicsr.data.transforms import augment, mod_crop
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from basicsr_lmar.data.dataset_options import dataset_schema, section_of
from basicsr_lmar.data.image_io import (META_INFO, describe_images, folder_paths, image_sizes, lmdb_index,
                                        make_file_client, meta_info_names, read_image)
from basicsr_lmar.data.size_rules import SIZE_POLICY_OPTION
from basicsr_lmar.options import Option, OptionError

SCHEMA = dataset_schema('HROnlyDataset', {
    'dataroot_gt': Option(type=str, doc='folder of HR images, or an .lmdb folder'),
    'io_backend': Option({'type': 'disk'}, type=dict),
    'meta_info_file': Option(None, type=str, doc='optional list of file names to use (disk backend)'),
    'gt_size': Option(None, type=int, min=1, doc='random crop size for training; ~ for whole images'),
    'use_hflip': Option(True),
    'use_rot': Option(True),
    'scale': Option(1, type=int, min=1),
    'size_policy': SIZE_POLICY_OPTION,
})


@DATASET_REGISTRY.register()
class HROnlyDataset(data.Dataset):

    def __init__(self, opt):
        super().__init__()
        section = section_of(opt)
        self.opt = SCHEMA.validate(opt, section)
        self.section = section
        backend = dict(self.opt.io_backend)
        backend_type = backend.pop('type', None)
        if backend_type not in ('disk', 'lmdb'):
            raise OptionError(f'[{section}] io_backend.type must be disk or lmdb; got {backend_type!r}.')
        self.backend_type, self.backend_kwargs = backend_type, backend
        root = self.opt.dataroot_gt
        option_key = f'{section}.dataroot_gt'
        if backend_type == 'lmdb':
            index = lmdb_index(root, option_key)
            self.paths = [key for key, _ in index]
            self.image_sizes = index
            self.size_source = f'{osp.join(root, META_INFO)}'
            self.backend_kwargs.update(db_paths=[root], client_keys=['gt'])
        else:
            if self.opt.meta_info_file:
                folder_paths(root, option_key)
                names = meta_info_names(self.opt.meta_info_file, f'{section}.meta_info_file')
                self.paths = [osp.join(root, name) for name in names]
            else:
                self.paths = folder_paths(root, option_key)
            self.image_sizes = image_sizes(self.paths, backend_type, option_key, root)
            self.size_source = 'its header'
        gt_size, scale = self.opt.gt_size, self.opt.scale
        if gt_size is not None and gt_size % scale:
            raise OptionError(f'[{section}] gt_size {gt_size} must be divisible by scale {scale}.')
        smallest = gt_size if gt_size is not None else 1 if self.opt.size_policy == 'pad' else scale
        small = [(path, size) for path, size in self.image_sizes if min(size) < smallest]
        if small:
            what = f'gt_size {gt_size} (the training crop)' if gt_size is not None else f'the scale {scale}'
            fix = 'lower gt_size or remove them' if gt_size is not None else 'remove them from the folder'
            source = f', sizes from {self.size_source}' if backend_type == 'lmdb' else ''
            raise OptionError(f'[{section}] {len(small)} image(s) smaller than {what}: {describe_images(small)} '
                              f'(HxW{source}); {fix}.')
        self._sizes = dict(self.image_sizes)
        self.file_client = None  # opened lazily: one per dataloader worker

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        if self.file_client is None:
            self.file_client = make_file_client(self.backend_type, **self.backend_kwargs)
        path = self.paths[index]
        image = read_image(self.file_client, path, 'gt', f'{self.section}.dataroot_gt',
                           expected=(self._sizes[path], self.size_source))
        gt_size = self.opt.gt_size
        if gt_size is not None:
            height, width = image.shape[:2]
            top, left = random.randint(0, height - gt_size), random.randint(0, width - gt_size)
            image = image[top:top + gt_size, left:left + gt_size]
            image = augment(image, self.opt.use_hflip, self.opt.use_rot)
        elif self.opt.size_policy != 'pad':  # pad: the whole image, the model pads it and crops its result back
            image = mod_crop(image, self.opt.scale)
        gt = img2tensor(image, bgr2rgb=True, float32=True)
        return {'gt': gt, 'gt_path': path, 'lq_path': path}
