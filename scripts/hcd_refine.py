"""Refines a folder of HR images into collaborative LR PNGs (HCD) for a pretrained rescaler.

    python scripts/hcd_refine.py -opt options/test_hcd_irn_x4.yml -i datasets/Set5/GTmod12 -o results/hcd_lr_x4

The option file is an HCDModel test file: its ``network_*`` sections and ``path.pretrain_network_*``
give the rescaler, ``rescaler`` the adapter and ``hcd`` the algorithm settings (``--steps`` overrides
N_x = N_y). Each image is cropped to a multiple of the scale; its 8-bit LR is written as
``<name>.png`` (written under a temporary name, then renamed, so an interrupted run leaves no partial
file); images whose LR already exists are skipped unless ``--overwrite``. ``--batch-size B`` refines up
to B consecutive images of the same size together: the same LRs, higher throughput on many small images.
The progress bar shows the RGB PSNR gain of each image over the base rescaler (same z policy for both).
"""
import argparse
import os
import os.path as osp

import numpy as np
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils.options import ordered_yaml
from tqdm import tqdm

import basicsr_lmar  # noqa: F401  (registers archs, models, rescaler adapters)
from basicsr_lmar.ops.collaborative_downscaling import mse_per_image
from basicsr_lmar.ops.geometry import crop_to_multiple
from basicsr_lmar.ops.rounding import quantize
from basicsr_lmar.data.image_files import list_images, read_image_file, write_image_file


def load_model(option_file, steps=None, seed=None, device=None):
    with open(option_file) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    use_cuda = torch.cuda.is_available() if device is None else device == 'cuda'
    opt.update(is_train=False, dist=False, rank=0, world_size=1, num_gpu=1 if use_cuda else 0)
    opt.setdefault('path', {})
    opt.setdefault('name', osp.splitext(osp.basename(option_file))[0])
    opt['hcd'] = dict(opt.get('hcd') or {})
    opt['hcd']['steps_list'] = None
    if steps is not None:
        opt['hcd']['steps_hr'] = opt['hcd']['steps_lr'] = steps
    if seed is not None:
        opt['hcd']['seed'] = seed
    return build_model(opt)


def psnr(mse):
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


def write_png(image, path):
    """Writes an RGB tensor (3, H, W) of multiples of 1/255 as an 8-bit PNG, atomically."""
    write_image_file(path, image.permute(1, 2, 0).cpu().numpy(), bit_depth=8)


def refine_folder(model, input_folder, output_folder, overwrite=False, save_sr=False, batch_size=1):
    """Refines every image of ``input_folder`` whose LR is not in ``output_folder`` yet; returns the gains.

    Consecutive images of the same size (after the crop to a multiple of the scale) are refined
    ``batch_size`` at a time. HCD treats the images of a batch independently (per-image norms, balls and
    random starts from the same seed; the rescalers are batch-independent), so the written LRs are the
    ones of one-at-a-time runs; a batch only raises throughput (and memory, ``batch_size`` times).
    """
    if batch_size < 1:
        raise ValueError(f'hcd_refine: --batch-size must be >= 1, got {batch_size}')
    paths = list_images(input_folder)
    os.makedirs(output_folder, exist_ok=True)
    gains, pending = [], []
    bar = tqdm(total=len(paths), unit='image')

    def flush():
        if not pending:
            return
        model.feed_data({'gt': torch.cat([hr for _, _, hr in pending])})
        result = model.refine(model.gt, model.options.hcd.steps_hr, model.options.hcd.steps_lr)
        with torch.no_grad():
            base = mse_per_image(model.rescaler.upscale(quantize(model.rescaler.downscale(model.gt))), model.gt)
            sr = model.rescaler.upscale(result.lr).clamp(0, 1) if save_sr else None
        image_gains = (psnr(result.loss) - psnr(base)).tolist()
        for index, (name, target, _) in enumerate(pending):
            write_png(result.lr[index], target)
            if save_sr:
                write_png(sr[index], osp.join(output_folder, f'{name}_SR.png'))
            gains.append(image_gains[index])
            bar.set_postfix(image=name, gain_db=f'{image_gains[index]:+.3f}', mean_gain_db=f'{np.mean(gains):+.3f}')
        bar.update(len(pending))
        pending.clear()

    for path in paths:
        name = osp.splitext(osp.basename(path))[0]
        target = osp.join(output_folder, f'{name}.png')
        if osp.exists(target) and not overwrite:
            bar.update(1)
            continue
        rgb, _ = read_image_file(path)  # float RGB in [0, 1]; gray and RGBA are converted (see image_files)
        hr = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        # batches group images by the cropped size
        hr = crop_to_multiple(hr, model.scale, what=f'hcd_refine: {path}', label=f'the scale {model.scale}')
        if pending and (hr.shape != pending[0][2].shape or len(pending) == batch_size):
            flush()
        pending.append((name, target, hr))
    flush()
    bar.close()
    return gains


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='HCDModel option file (rescaler, networks, hcd settings)')
    parser.add_argument('-i', '--input', required=True, help='folder of HR images')
    parser.add_argument('-o', '--output', required=True, help='folder for the collaborative LR PNGs')
    parser.add_argument('--steps', type=int, default=None, help='N_x = N_y (default: the option file)')
    parser.add_argument('--seed', type=int, default=None, help='seed of the random starts')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default=None)
    parser.add_argument('--batch-size', type=int, default=1,
                        help='refine up to this many consecutive same-size images together (same results, higher '
                             'throughput, that many times the memory)')
    parser.add_argument('--save-sr', action='store_true', help='also write the reconstructions <name>_SR.png')
    parser.add_argument('--overwrite', action='store_true', help='refine images whose LR already exists')
    args = parser.parse_args()
    model = load_model(args.opt, args.steps, args.seed, args.device)
    gains = refine_folder(model, args.input, args.output, args.overwrite, args.save_sr, args.batch_size)
    if gains:
        print(f'{len(gains)} images, mean RGB PSNR gain over the base rescaler: {np.mean(gains):+.3f} dB '
              f'(min {np.min(gains):+.3f})')


if __name__ == '__main__':
    main()
