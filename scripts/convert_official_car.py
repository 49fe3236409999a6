"""Converts the CAR authors' released weights (``sunwj/CAR``) to this project's networks
(the mapping lives in :mod:`basicsr_lmar.checkpoints.car`).

* ``kgn.pth``: their kernel-generation network ``DSN`` saved from ``nn.DataParallel`` (keys start with
  ``module.``) -> :class:`basicsr_lmar.archs.car_arch.CARResamplerNet` (``network_g``).
* ``usn.pth``: their upscaler, EDSR in EDSR-PyTorch naming (32 blocks, 256 features, res_scale 0.1,
  rgb_range 1), also under ``module.`` -> basicsr's ``EDSR`` (``network_sr``, ``img_range: 1``).

The fixed mean-shift convolutions (``sub_mean``/``add_mean``) are dropped: here they are constants.
Outputs are basicsr checkpoints (``{'params': state_dict}``) loaded with ``strict_load: true`` by
``options/test_car_edsr_x{2,4}.yml``::

    python scripts/convert_official_car.py --scale 4 --kgn models/4x/kgn.pth --usn models/4x/usn.pth \\
        --out-dir experiments/pretrained_models/CAR --name car_edsr_x4
"""
import argparse
import os
import os.path as osp

from basicsr_lmar.checkpoints.car import convert_official_car_resampler, convert_official_edsr, edsr_options
from basicsr_lmar.checkpoints.state_dicts import atomic_torch_save, read_checkpoint

def _save(params, path):
    atomic_torch_save({'params': params}, path)
    print(f'wrote {path} ({len(params)} tensors)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=int, required=True, choices=(2, 4))
    parser.add_argument('--kgn', help="authors' kgn.pth (kernel generation network)")
    parser.add_argument('--usn', help="authors' usn.pth (EDSR upscaler)")
    parser.add_argument('--out-dir', default='experiments/pretrained_models/CAR')
    parser.add_argument('--name', default=None, help='file stem (default car_edsr_x{scale})')
    args = parser.parse_args(argv)
    if not args.kgn and not args.usn:
        parser.error('give --kgn and/or --usn')
    from basicsr.archs.edsr_arch import EDSR

    from basicsr_lmar.archs.car_arch import CARResamplerNet

    os.makedirs(args.out_dir, exist_ok=True)
    stem = args.name or f'car_edsr_x{args.scale}'
    if args.kgn:
        params = convert_official_car_resampler(read_checkpoint(args.kgn, '--kgn'))
        CARResamplerNet(scale=args.scale).load_state_dict(params, strict=True)  # fails loudly on a mismatch
        _save(params, osp.join(args.out_dir, f'{stem}_net_g.pth'))
    if args.usn:
        params = convert_official_edsr(read_checkpoint(args.usn, '--usn'))
        options = edsr_options(params, args.scale)
        options.pop('type')
        EDSR(**options).load_state_dict(params, strict=True)
        _save(params, osp.join(args.out_dir, f'{stem}_net_sr.pth'))


if __name__ == '__main__':
    main()
