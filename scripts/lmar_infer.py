"""Enhance a folder of UHD images at a working size with a trained LMAR resampler and its frozen enhancer.

    python scripts/lmar_infer.py -opt options/test_lmar_uhdlol4k.yml -i photos/ -o enhanced/ \
        --size 1080 1920 --resizer lanczos3

Pipeline per image: x_c = LMAR(x; h, w) -> enhancer -> U(.; H, W) (``--no-lmar``: the plain resizer
instead of LMAR, for comparison). The networks come from the ``network_g`` / ``network_enhancer``
sections and ``path.pretrain_network_g`` / ``path.pretrain_network_enhancer`` of an LMAR option file
(``--lmar`` / ``--enhancer`` override the checkpoints). The working size is ``--size H W`` (for inputs
of ``--reference-size``, 2160x3840 by default, scaled per axis for other inputs) or ``--scale r``
(h, w = H/r, W/r). CKE runs tiled within ``--tile-mb`` MiB.

Inputs: 8/16-bit PNG/TIFF, JPEG, BMP, WebP (gray is replicated to RGB, alpha dropped with a warning);
an unreadable file stops the run with its name, or is reported and skipped with ``--skip-bad``.
Outputs are written through a temporary name and renamed when complete, as PNG with the input's bit
depth (``--bit-depth 8|16`` to force).
"""
import argparse
import os
import os.path as osp
import sys
from copy import deepcopy

import torch
import yaml

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), osp.pardir)))

import basicsr_lmar  # noqa: E402,F401  (registers the archs)
from basicsr.archs import build_network  # noqa: E402
from basicsr.utils.options import ordered_yaml  # noqa: E402
from basicsr.utils.registry import ARCH_REGISTRY  # noqa: E402

from basicsr_lmar.models.lmar_model import PAPER_REFERENCE_SIZE  # noqa: E402
from basicsr_lmar.ops.geometry import scaled_target_sizes  # noqa: E402
from basicsr_lmar.ops.resize import KERNELS  # noqa: E402
from basicsr_lmar.data.image_files import (ImageFileError, list_images, read_image_file,  # noqa: E402
                                            write_image_file)
from basicsr_lmar.options import validate_registered  # noqa: E402


def _load_params(net, path, what):
    if not path:
        raise SystemExit(f'{what}: no checkpoint given (set it in the option file or on the command line)')
    if not osp.isfile(path):
        raise SystemExit(f'{what}: checkpoint {path} does not exist')
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    state = checkpoint
    if isinstance(checkpoint, dict):
        # BasicSR's convention: a run with train.ema_decay saves the averaged weights as 'params_ema', and
        # those are the ones to evaluate.
        state = checkpoint.get('params_ema', checkpoint.get('params', checkpoint))
    net.load_state_dict({k[7:] if k.startswith('module.') else k: v for k, v in state.items()}, strict=True)
    return net


def build_networks(opt_path, lmar_path=None, enhancer_path=None, tile_mb=None, device='cpu'):
    """Returns ``(resampler, enhancer)`` in eval mode from an LMAR option file."""
    with open(opt_path) as handle:
        opt = yaml.load(handle, Loader=ordered_yaml()[0])
    for section in ('network_g', 'network_enhancer'):
        if section not in opt:
            raise SystemExit(f'{opt_path}: no {section} section; use an LMAR option file (options/*lmar_*.yml)')
    resampler_opt = deepcopy(dict(opt['network_g']))
    if tile_mb is not None:
        resampler_opt['tile_memory_mb'] = tile_mb
    validate_registered(resampler_opt, 'network_g', ARCH_REGISTRY)
    enhancer_opt = deepcopy(dict(opt['network_enhancer']))
    enhancer_opt.pop('feature_layer', None)
    validate_registered(enhancer_opt, 'network_enhancer', ARCH_REGISTRY)
    paths = opt.get('path') or {}
    resampler = _load_params(build_network(resampler_opt), lmar_path or paths.get('pretrain_network_g'),
                             'LMAR resampler (--lmar / path.pretrain_network_g)')
    enhancer = _load_params(build_network(enhancer_opt), enhancer_path or paths.get('pretrain_network_enhancer'),
                            'enhancer (--enhancer / path.pretrain_network_enhancer)')
    return resampler.to(device).eval(), enhancer.to(device).eval()


def working_size(image_size, size=None, scale=None, reference_size=PAPER_REFERENCE_SIZE):
    if scale is not None:
        if scale < 1:
            raise SystemExit(f'--scale {scale}: must be >= 1 (LMAR downscales to a working size)')
        return max(1, round(image_size[0] / scale)), max(1, round(image_size[1] / scale))
    return scaled_target_sizes(image_size, [list(size)], reference_size)[0]


def run(args):
    """Processes ``args.input``; returns ``(written_paths, failed_paths)``."""
    from tqdm import tqdm

    device = torch.device(args.device)
    resampler, enhancer = build_networks(args.opt, args.lmar, args.enhancer, args.tile_mb, device)
    paths = list_images(args.input)
    os.makedirs(args.output, exist_ok=True)
    written, failed = [], []
    for path in tqdm(paths, desc='LMAR', unit='img'):
        try:
            rgb, bit_depth = read_image_file(path)
        except ImageFileError as error:
            if not args.skip_bad:
                raise SystemExit(f'{error}\n(use --skip-bad to skip unreadable files)') from None
            tqdm.write(f'skipped: {error}')
            failed.append(path)
            continue
        x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).to(device)
        size = working_size(tuple(x.shape[-2:]), args.size, args.scale, args.reference_size)
        out = resampler.enhance(x, enhancer, size, args.resizer, not args.no_lmar)
        depth = args.bit_depth or bit_depth
        target = osp.join(args.output, f'{osp.splitext(osp.basename(path))[0]}{args.suffix}.png')
        write_image_file(target, out[0].permute(1, 2, 0).cpu().numpy(), depth)
        written.append(target)
    return written, failed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', '--opt', required=True, help='LMAR option file (network_g, network_enhancer, path)')
    parser.add_argument('-i', '--input', required=True, help='folder of UHD images')
    parser.add_argument('-o', '--output', required=True, help='output folder')
    parser.add_argument('--lmar', help='LMAR resampler checkpoint (overrides path.pretrain_network_g)')
    parser.add_argument('--enhancer', help='enhancer checkpoint (overrides path.pretrain_network_enhancer)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), default=[1080, 1920],
                       help='working size for a --reference-size input (default 1080 1920)')
    group.add_argument('--scale', type=float, help='working size = input size / scale instead')
    parser.add_argument('--reference-size', type=int, nargs=2, default=list(PAPER_REFERENCE_SIZE), metavar=('H', 'W'))
    parser.add_argument('--resizer', default='lanczos3', choices=KERNELS, help='resizer D/U (default lanczos3)')
    parser.add_argument('--no-lmar', action='store_true', help='plain resizer instead of LMAR (baseline)')
    parser.add_argument('--tile-mb', type=float, help='CKE tile budget in MiB (default: the option file)')
    parser.add_argument('--bit-depth', type=int, choices=(8, 16), help='output bit depth (default: as the input)')
    parser.add_argument('--suffix', default='', help='appended to output file names')
    parser.add_argument('--skip-bad', action='store_true', help='report and skip unreadable images')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    written, failed = run(args)
    print(f'wrote {len(written)} image(s) to {args.output}' + (f'; skipped {len(failed)} unreadable' if failed else ''))


if __name__ == '__main__':
    main()
