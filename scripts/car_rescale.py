"""Downscale a folder of HR images to 8-bit LR PNGs with a trained CAR, and/or upscale LR PNGs back.

The networks come from a CAR options file (``network_g``, ``network_sr`` or ``upscaler: bicubic``,
``scale``, and the ``path.pretrain_network_*`` weights, e.g. ``options/test_car_edsr_x4.yml``);
``--net-g`` / ``--net-sr`` override the weight paths.

    # HR -> LR PNGs, and back to SR PNGs, with PSNR/SSIM (Y, crop border = scale) against the HR
    python scripts/car_rescale.py -opt options/test_car_edsr_x4.yml --hr datasets/Set5/GTmod12 \\
        --lr-out results/car_x4/lr --sr-out results/car_x4/sr
    # LR PNGs -> SR PNGs only (PSNR when --hr is also given)
    python scripts/car_rescale.py -opt options/test_car_edsr_x4.yml --lr results/car_x4/lr --sr-out results/car_x4/sr

HR images are cropped at the bottom/right to a multiple of 8 (the resampler's requirement; the
authors' test images are cropped the same way). Files are written under a temporary name and renamed,
so an interrupted run never leaves a truncated PNG.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch
import yaml
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import basicsr_lmar  # noqa: E402,F401  (registers the plugin)
from basicsr.archs import build_network  # noqa: E402
from basicsr.metrics import calculate_psnr, calculate_ssim  # noqa: E402
from basicsr.utils import tensor2img  # noqa: E402

from basicsr_lmar.archs.car_arch import SIZE_MULTIPLE, BicubicUpscaler  # noqa: E402
from basicsr_lmar.data.image_files import ImageFileError, list_images, read_image_file, write_image_file  # noqa: E402
from basicsr_lmar.ops.geometry import crop_to_multiple  # noqa: E402

def read_rgb(path):
    """(1, 3, H, W) float RGB in [0, 1]; gray, RGBA and 16-bit inputs are converted (see image_files)."""
    rgb, _ = read_image_file(path)
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]


def write_png(image, path):
    """Writes a (1, 3, H, W) tensor in [0, 1] as an 8-bit PNG, atomically (temporary name, then rename)."""
    write_image_file(path, image[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy(), bit_depth=8)


def load_networks(opt, net_g_path, net_sr_path, device):
    scale = opt['scale']
    net_g = build_network(dict(opt['network_g'])).to(device).eval()
    paths = opt.get('path') or {}
    weights_g = net_g_path or paths.get('pretrain_network_g')
    if weights_g is None:
        sys.exit('car_rescale: no resampler weights: pass --net-g or set path.pretrain_network_g')
    net_g.load_state_dict(torch.load(weights_g, map_location='cpu')['params'], strict=True)
    if opt.get('network_sr'):
        net_sr = build_network(dict(opt['network_sr'])).to(device).eval()
        weights_sr = net_sr_path or paths.get('pretrain_network_sr')
        if weights_sr is None:
            sys.exit('car_rescale: no SR weights: pass --net-sr or set path.pretrain_network_sr')
        net_sr.load_state_dict(torch.load(weights_sr, map_location='cpu')['params'], strict=True)
    else:
        net_sr = BicubicUpscaler(scale).to(device)
    return net_g, net_sr, scale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='CAR options file (networks, scale, weights)')
    parser.add_argument('--hr', help='folder of HR images (downscale them, or reference for PSNR)')
    parser.add_argument('--lr', help='folder of LR PNGs to upscale (instead of downscaling --hr)')
    parser.add_argument('--lr-out', help='write the 8-bit LR PNGs here')
    parser.add_argument('--sr-out', help='write the upscaled PNGs here')
    parser.add_argument('--net-g', help='resampler weights (overrides path.pretrain_network_g)')
    parser.add_argument('--net-sr', help='SR weights (overrides path.pretrain_network_sr)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    if not args.hr and not args.lr:
        parser.error('give --hr (to downscale) or --lr (to upscale)')
    if args.lr and not args.sr_out:
        parser.error('--lr needs --sr-out')
    if args.hr and not args.lr and not (args.lr_out or args.sr_out):
        parser.error('give --lr-out and/or --sr-out')
    with open(args.opt) as handle:
        opt = yaml.safe_load(handle)
    device = torch.device(args.device)
    net_g, net_sr, scale = load_networks(opt, args.net_g, args.net_sr, device)
    try:
        names = [osp.basename(p) for p in list_images(args.lr if args.lr else args.hr)]
    except ImageFileError as exc:
        sys.exit(f'car_rescale: {exc}')
    scores = []
    with torch.no_grad():
        for name in tqdm(names, unit='image'):
            stem = osp.splitext(name)[0]
            hr = None
            if args.hr:
                hr_name = name if not args.lr else next((n for n in os.listdir(args.hr)
                                                         if osp.splitext(n)[0] == stem), None)
                if hr_name is not None:
                    hr = read_rgb(osp.join(args.hr, hr_name)).to(device)
                    hr = crop_to_multiple(hr, SIZE_MULTIPLE, scale, what=f'car_rescale: {hr_name}')
            if args.lr:
                lr = read_rgb(osp.join(args.lr, name)).to(device)
            else:
                lr = net_g.downscale(hr, rounding='round')
                if args.lr_out:
                    write_png(lr, osp.join(args.lr_out, f'{stem}.png'))
            if args.sr_out:
                sr = net_sr(lr).clamp(0, 1)
                write_png(sr, osp.join(args.sr_out, f'{stem}.png'))
                sr_img = tensor2img([sr])
                if hr is not None:
                    hr_img = tensor2img([hr])
                    if hr_img.shape != sr_img.shape:
                        tqdm.write(f'{name}: SR {sr_img.shape} and HR {hr_img.shape} differ; no PSNR')
                        continue
                    psnr = calculate_psnr(sr_img, hr_img, crop_border=scale, test_y_channel=True)
                    ssim = calculate_ssim(sr_img, hr_img, crop_border=scale, test_y_channel=True)
                    scores.append((psnr, ssim))
                    tqdm.write(f'{name}: PSNR {psnr:.2f} dB  SSIM {ssim:.4f} (Y, crop {scale})')
    if scores:
        print(f'mean over {len(scores)} images: PSNR {np.mean([s[0] for s in scores]):.2f} dB  '
              f'SSIM {np.mean([s[1] for s in scores]):.4f}')
    return scores


if __name__ == '__main__':
    main()
