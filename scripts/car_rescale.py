"""Downscale a folder of HR images to 8-bit LR PNGs with a trained CAR, and/or upscale LR PNGs back.

The networks come from a CAR options file (``network_g``, ``network_sr`` or ``upscaler: bicubic``,
``scale``, and the ``path.pretrain_network_*`` weights, e.g. ``options/test_car_edsr_x4.yml``);
``--net-g`` / ``--net-sr`` override the weight paths.

    # HR -> LR PNGs, and back to SR PNGs, with PSNR/SSIM (Y, crop border = scale) against the HR
    python scripts/car_rescale.py -opt options/test_car_edsr_x4.yml -i datasets/Set5/GTmod12 \\
        -o results/car_x4/lr --sr-out results/car_x4/sr
    # LR PNGs -> SR PNGs only (PSNR when the HR folder is also given with -i)
    python scripts/car_rescale.py -opt options/test_car_edsr_x4.yml --lr results/car_x4/lr --sr-out results/car_x4/sr

``-i/--input`` (alias ``--hr``) is the HR folder, ``-o/--output`` (alias ``--lr-out``) the LR folder.
The LR is ``CARResamplerNet.downscale(hr, rounding='round')``: 8-bit by the method, so LR PNGs are
8-bit; SR PNGs keep the input's bit depth (``--bit-depth`` to force).

Sizes: the resampler needs heights and widths that are multiples of 8 (three pixel-unshuffles, and
the scale). ``--size-policy crop`` (default, as the authors' test images) crops other images at the
bottom/right, ``pad`` pads them there (reflection) and crops the SR back to the HR size (the LR is
then the LR of the padded image, ceil(H/8)*8/s high; in ``--lr`` mode the SR is cropped back to the
HR given with ``-i``), ``refuse`` stops; every crop or pad is listed before anything is computed, and
an image smaller than 8x8 is refused under every policy.

Folder handling is the one of every folder tool (``basicsr_lmar.cli.folders``; README "Folder
tools"): every input is checked and the output folders are created and probed before the first image
is computed; unreadable or too-small images stop the run, all named, or are left out with
``--skip-bad``; images whose outputs exist are skipped (``--overwrite``); files are written under a
temporary name and renamed. Input mistakes end with one message and exit code 2 (``--debug``).
"""
import argparse
import math
import os.path as osp
import sys

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import basicsr_lmar  # noqa: E402,F401  (registers the plugin)
from basicsr.archs import build_network  # noqa: E402
from basicsr.metrics import calculate_psnr, calculate_ssim  # noqa: E402
from basicsr.utils import img2tensor, tensor2img  # noqa: E402

from basicsr_lmar.archs.car_arch import SIZE_MULTIPLE, BicubicUpscaler  # noqa: E402
from basicsr_lmar.cli.errors import run_main  # noqa: E402
from basicsr_lmar.cli.folders import FolderRun, add_folder_arguments, add_size_policy_argument  # noqa: E402
from basicsr_lmar.cli.inputs import default_device, load_weights, resolve_device  # noqa: E402
from basicsr_lmar.data.image_files import list_images, read_image_file  # noqa: E402
from basicsr_lmar.data.size_rules import SizeRule, format_size  # noqa: E402
from basicsr_lmar.errors import UserError  # noqa: E402
from basicsr_lmar.models.model_options import check_scale  # noqa: E402
from basicsr_lmar.options import read_option_file  # noqa: E402


def load_networks(opt, net_g_path, net_sr_path, device):
    """``(net_g, net_sr, scale)`` from the option mapping, weights through the readable mismatch report."""
    if not isinstance(opt.get('network_g'), dict):
        raise UserError('-opt: no network_g section (the CARResamplerNet); use a CAR option file (options/*car_*.yml)')
    net_g = load_weights(build_network(dict(opt['network_g'])), net_g_path or (opt.get('path') or {}).get(
        'pretrain_network_g'), 'resampler (--net-g / path.pretrain_network_g)')
    scale = net_g.scale
    check_scale(opt, scale, 'network_g')
    if opt.get('network_sr'):
        net_sr = load_weights(build_network(dict(opt['network_sr'])), net_sr_path or (opt.get('path') or {}).get(
            'pretrain_network_sr'), 'SR network (--net-sr / path.pretrain_network_sr)')
    else:
        net_sr = BicubicUpscaler(scale)
    return net_g.to(device).eval(), net_sr.to(device).eval(), scale


def _common_region(sr, hr, multiple):
    """SR and HR cropped to their common top-left region when they differ by less than ``multiple`` per
    side (one was cropped or padded to the multiple), else None."""
    (sh, sw), (hh, hw) = sr.shape[-2:], hr.shape[-2:]
    if abs(sh - hh) >= multiple or abs(sw - hw) >= multiple:
        return None
    h, w = min(sh, hh), min(sw, hw)
    return sr[..., :h, :w], hr[..., :h, :w]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='CAR options file (networks, scale, weights)')
    add_folder_arguments(parser, 'folder of HR images (downscaled; with --lr, the reference for PSNR)',
                         'folder for the 8-bit LR PNGs', input_aliases=('--hr', ), output_aliases=('--lr-out', ),
                         required=False)
    parser.add_argument('--lr', metavar='DIR', help='folder of LR PNGs to upscale (instead of downscaling -i)')
    parser.add_argument('--sr-out', metavar='DIR', help='folder for the upscaled PNGs')
    add_size_policy_argument(parser, f'{SIZE_MULTIPLE} (and the scale)')
    parser.add_argument('--net-g', help='resampler weights (overrides path.pretrain_network_g)')
    parser.add_argument('--net-sr', help='SR weights (overrides path.pretrain_network_sr)')
    parser.add_argument('--device', default=default_device(), help='cpu, cuda or cuda:N (default: cuda if available)')
    args = parser.parse_args(argv)
    if not args.input and not args.lr:
        parser.error('give -i/--input (HR images to downscale) or --lr (LR images to upscale)')
    if args.lr and not args.sr_out:
        parser.error('--lr needs --sr-out')
    if args.lr and args.output:
        parser.error('-o/--lr-out is where a downscale writes its LR; with --lr (upscaling) give --sr-out only')
    if not args.lr and not (args.output or args.sr_out):
        parser.error('give -o/--output (the LR PNGs) and/or --sr-out (the upscaled PNGs)')
    return args


def main(argv=None):
    """Runs the tool; returns the (PSNR, SSIM) of every image compared with its HR."""
    args = parse_args(argv)
    opt = read_option_file(args.opt)
    device = resolve_device(args.device)
    net_g, net_sr, scale = load_networks(opt, args.net_g, args.net_sr, device)
    multiple = math.lcm(SIZE_MULTIPLE, scale)
    upscale_only = bool(args.lr)
    folder = FolderRun('car_rescale', args.lr if upscale_only else args.input,
                       input_flag='--lr' if upscale_only else '-i/--input', skip_bad=args.skip_bad,
                       overwrite=args.overwrite, bit_depth=args.bit_depth)
    references = {}
    if upscale_only and args.input:
        references = {osp.splitext(osp.basename(p))[0]: p for p in list_images(args.input, '-i/--input: HR folder')}
    rule = None if upscale_only else SizeRule(multiple, f'CARResamplerNet x{scale}', policy=args.size_policy,
                                              flag='--size-policy')
    scores = []
    with folder, torch.no_grad():
        jobs = folder.plan({'lr': (args.output, '{stem}.png', '-o/--lr-out'),
                            'sr': (args.sr_out, '{stem}.png', '--sr-out')}, size_rule=rule)
        folder.prepare_outputs()
        for job in folder.progress(jobs):
            image = folder.read_tensor(job, device)
            if image is None:
                continue
            if upscale_only:
                lr, hr = image, None
                if job.stem in references:  # the SR keeps the depth of the original HR
                    rgb, job.bit_depth = read_image_file(references[job.stem])
                    hr = img2tensor(rgb, bgr2rgb=False)[None].to(device)
            else:
                hr = rule.restore(rule.fit(image), job.size)  # the HR the SR is compared with
                lr = net_g.downscale(rule.fit(image), rounding='round')
                if args.output:
                    folder.write(job, 'lr', lr, fixed_bit_depth=8)  # CAR's LR is 8-bit by the method
            if not args.sr_out:
                continue
            sr = net_sr(lr).clamp(0, 1)
            if not upscale_only:
                sr = rule.restore(sr, job.size)
            elif hr is not None and _common_region(sr, hr, multiple) is not None:
                sr = _common_region(sr, hr, multiple)[0]  # the LR of a padded HR: crop the SR back to the HR
            folder.write(job, 'sr', sr)
            if hr is None:
                continue
            pair = _common_region(sr, hr, multiple)
            if pair is None:
                folder.log(f'{job.name}: SR {format_size(sr.shape[-2:])} and HR {format_size(hr.shape[-2:])} '
                           'differ by a multiple or more; no PSNR')
                continue
            sr_img, hr_img = tensor2img([pair[0]]), tensor2img([pair[1]])
            psnr = calculate_psnr(sr_img, hr_img, crop_border=scale, test_y_channel=True)
            ssim = calculate_ssim(sr_img, hr_img, crop_border=scale, test_y_channel=True)
            scores.append((psnr, ssim))
            tqdm.write(f'{job.name}: PSNR {psnr:.2f} dB  SSIM {ssim:.4f} (Y, crop {scale})')
    print(folder.summary())
    if scores:
        print(f'mean over {len(scores)} images: PSNR {np.mean([s[0] for s in scores]):.2f} dB  '
              f'SSIM {np.mean([s[1] for s in scores]):.4f}')
    return scores


if __name__ == '__main__':
    run_main(main)
