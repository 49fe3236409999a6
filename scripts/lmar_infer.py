"""Enhance a folder of UHD images at a working size with a trained LMAR resampler and its frozen enhancer.

    python scripts/lmar_infer.py -opt options/test_lmar_uhdlol4k.yml -i photos/ -o enhanced/ \\
        --size 1080 1920 --resizer lanczos3

Pipeline per image: ``LMARResampler.enhance`` = U(enhancer(LMAR(x; h, w))) (``--no-lmar``: the plain
resizer instead of LMAR, for comparison). The networks come from the ``network_g`` /
``network_enhancer`` sections and ``path.pretrain_network_g`` / ``path.pretrain_network_enhancer`` of
an LMAR option file (``--lmar`` / ``--enhancer`` override the checkpoints; a run's EMA weights are
preferred). The working size is ``--size H W`` (for inputs of ``--reference-size``, 2160x3840 by
default, scaled per axis for other inputs) or ``--scale r`` (h, w = H/r, W/r); a working size below
8x8 is refused before anything is computed, with the flag value that would work. CKE runs tiled
within ``--tile-mb`` MiB.

Folder handling is the one of every folder tool (``basicsr_lmar.cli.folders``; README "Folder tools"):
inputs are 8/16-bit PNG/TIFF, JPEG, BMP, WebP (gray is replicated to RGB, alpha dropped with a
warning); every input is checked before the first image is computed and the output folder is created
and probed for writing; unreadable or too-small images stop the run, all named, or are left out with
``--skip-bad``; images whose output exists are skipped (``--overwrite``). Outputs are PNGs written
under a temporary name and renamed when complete, with the input's bit depth (``--bit-depth 8|16`` to
force). Input mistakes end with one message and exit code 2 (``--debug`` for the traceback).
"""
import argparse
import math
import os.path as osp
import sys
from copy import deepcopy

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), osp.pardir)))

import basicsr_lmar  # noqa: E402,F401  (registers the archs)
from basicsr.archs import build_network  # noqa: E402
from basicsr.utils.registry import ARCH_REGISTRY  # noqa: E402

from basicsr_lmar.cli.errors import run_main  # noqa: E402
from basicsr_lmar.cli.folders import FolderRun, add_folder_arguments  # noqa: E402
from basicsr_lmar.cli.inputs import default_device, load_weights, resolve_device  # noqa: E402
from basicsr_lmar.data.size_rules import MIN_WORKING_SIDE, WorkingSizeRule  # noqa: E402
from basicsr_lmar.errors import UserError  # noqa: E402
from basicsr_lmar.models.lmar_model import PAPER_REFERENCE_SIZE  # noqa: E402
from basicsr_lmar.ops.geometry import scaled_target_sizes  # noqa: E402
from basicsr_lmar.ops.resize import KERNELS  # noqa: E402
from basicsr_lmar.options import read_option_file, validate_registered  # noqa: E402


def build_networks(opt_path, lmar_path=None, enhancer_path=None, tile_mb=None, device='cpu'):
    """Returns ``(resampler, enhancer)`` in eval mode from an LMAR option file."""
    opt = read_option_file(opt_path)
    for section in ('network_g', 'network_enhancer'):
        if section not in opt:
            raise UserError(f'-opt {opt_path}: no {section} section; use an LMAR option file (options/*lmar_*.yml)')
    resampler_opt = deepcopy(dict(opt['network_g']))
    if tile_mb is not None:
        resampler_opt['tile_memory_mb'] = tile_mb
    validate_registered(resampler_opt, 'network_g', ARCH_REGISTRY)
    enhancer_opt = deepcopy(dict(opt['network_enhancer']))
    enhancer_opt.pop('feature_layer', None)
    validate_registered(enhancer_opt, 'network_enhancer', ARCH_REGISTRY)
    paths = opt.get('path') or {}
    # BasicSR's convention: a run with train.ema_decay saves the averaged weights as 'params_ema', and those
    # are the ones to evaluate ('params' otherwise).
    resampler = load_weights(build_network(resampler_opt), lmar_path or paths.get('pretrain_network_g'),
                             'LMAR resampler (--lmar / path.pretrain_network_g)', param_key='params_ema')
    enhancer = load_weights(build_network(enhancer_opt), enhancer_path or paths.get('pretrain_network_enhancer'),
                            'enhancer (--enhancer / path.pretrain_network_enhancer)', param_key='params_ema')
    return resampler.to(device).eval(), enhancer.to(device).eval()


def working_size(image_size, size=None, scale=None, reference_size=PAPER_REFERENCE_SIZE):
    if scale is not None:
        return max(1, round(image_size[0] / scale)), max(1, round(image_size[1] / scale))
    return scaled_target_sizes(image_size, [list(size)], reference_size)[0]


def check_size_flags(args):
    """``--scale`` / ``--size`` / ``--reference-size`` that no image could use, named before any work."""
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale >= 1):
        raise UserError(f'--scale {args.scale:g}: must be >= 1 (LMAR downscales to a working size)')
    if min(args.reference_size) < 1:
        raise UserError(f'--reference-size {args.reference_size[0]} {args.reference_size[1]}: must be positive')
    if args.scale is None:
        size, reference = args.size, args.reference_size
        if min(size) < 1 or size[0] > reference[0] or size[1] > reference[1]:
            raise UserError(f'--size {size[0]} {size[1]}: must be positive and at most --reference-size '
                            f'{reference[0]} {reference[1]} (LMAR only downscales)')


def size_rule(args):
    """An image's working size (``--size`` or ``--scale``) must be at least 8 per side; the message says which
    flag value would work for that image."""

    def fix(size):
        threshold = MIN_WORKING_SIDE - 0.5  # round(x) >= 8 exactly when x >= 7.5 (round half to even)
        if args.scale is not None:
            return f'--scale {math.floor(min(size) / threshold * 100) / 100:g} or less'
        need = [max(given, min(ref, math.ceil(threshold * ref / side)))
                for given, ref, side in zip(args.size, args.reference_size, size)]
        return f'--size {need[0]} {need[1]} or more'

    return WorkingSizeRule(lambda size: [working_size(size, args.size, args.scale, args.reference_size)], '', fix)


def run(args):
    """Processes ``args.input``; returns ``(written_paths, left_out_paths)``."""
    check_size_flags(args)
    device = resolve_device(args.device)
    resampler, enhancer = build_networks(args.opt, args.lmar, args.enhancer, args.tile_mb, device)
    folder = FolderRun('lmar_infer', args.input, skip_bad=args.skip_bad, overwrite=args.overwrite,
                       bit_depth=args.bit_depth)
    with folder:
        suffix = args.suffix.replace('{', '{{').replace('}', '}}')
        jobs = folder.plan({'enhanced': (args.output, '{stem}' + suffix + '.png')}, size_rule(args))
        folder.prepare_outputs()
        for job in folder.progress(jobs, 'LMAR'):
            x = folder.read_tensor(job, device)
            if x is None:
                continue
            size = working_size(job.size, args.size, args.scale, args.reference_size)
            folder.write(job, 'enhanced', resampler.enhance(x, enhancer, size, args.resizer, not args.no_lmar))
    print(folder.summary())
    return folder.written, [osp.join(args.input, name) for name, _ in folder.bad]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', '--opt', required=True, help='LMAR option file (network_g, network_enhancer, path)')
    add_folder_arguments(parser, 'folder of UHD images', 'folder for the enhanced PNGs')
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
    parser.add_argument('--suffix', default='', help='appended to output file names')
    parser.add_argument('--device', default=default_device(), help='cpu, cuda or cuda:N (default: cuda if available)')
    return parser.parse_args(argv)


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    run_main(main)
