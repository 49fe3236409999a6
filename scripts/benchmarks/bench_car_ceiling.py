"""How much can any downscaler gain over bicubic↓ under a fixed bicubic upscaler? (CAR x4 diagnostics)

For each held-out scikit-image photo (or those named), side by side in one run, PSNR on Y with
``crop_border = scale`` after hard 8-bit rounding of the LR image, the same bicubic upscaler
(:class:`BicubicUpscaler`) everywhere:

* ``bicubic↓``: MATLAB-style antialiased bicubic downscaling (the baseline of bench_car_quality.py);
* ``box kernel↓``: CAR's op with the same kernel at every pixel and zero offsets, the central 3x3 kernel
  elements at equal weight (the initialisation of bench_car_quality.py);
* ``optimal LR``: the least-squares LR image ``argmin ||bicubic_up(LR) - HR||²`` (closed form, pseudo
  inverse of the separable upscaler). No downscaler, learned or not, can beat it by more than what
  8-bit rounding and the crop border leave (hundredths of a dB): it is the ceiling of Table 1's
  "Upscaling: Bicubic" setting on that photo;
* ``per-pixel CAR oracle`` (``--oracle-iters N`` > 0): CAR's own parameterisation (per-pixel kernels
  clamped to [1e-6, 1] and normalised, tanh offsets, the project's ``adaptive_resample``) optimised
  directly for that photo by Adam on the MSE, no network: the ceiling of the non-negative kernel design;
* ``kernel teacher`` (``--teacher-steps``): ``bench_car_quality.teacher_kernels``, the per-pixel target of
  its ``--teacher-weight`` (line-search steps from the box kernel towards the optimal LR, zero offsets).

    python scripts/benchmarks/bench_car_ceiling.py                     # ~4 CPU minutes (oracle 300 iters)
    python scripts/benchmarks/bench_car_ceiling.py --oracle-iters 0    # closed-form figures only, seconds
    python scripts/benchmarks/bench_car_ceiling.py --split validation  # or --heldout DIR (any HR images)
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_car_quality import (bicubic_downscale, initial_kernel, least_squares_lr, teacher_kernels,  # noqa: E402
                               to_tensor, y_metrics)
from heldout import add_heldout_arguments, evaluation_images  # noqa: E402

from basicsr_lmar.archs.car_arch import BicubicUpscaler  # noqa: E402
from basicsr_lmar.data.skimage_photos import ALL_PHOTOS, load_photo  # noqa: E402
from basicsr_lmar.ops.adaptive_resample import adaptive_resample  # noqa: E402
from basicsr_lmar.ops.rounding import quantize_8bit  # noqa: E402


def psnr_after_rounding(lr, hr, upscaler, scale):
    return y_metrics(upscaler(quantize_8bit(lr.clamp(0, 1), 'round')).clamp(0, 1), hr, scale)[0]


def fixed_kernel_lr(hr, kind, scale, shift=0.0):
    """CAR's op with ``initial_kernel(kind)`` at every pixel and every sample moved by ``shift`` HR pixels
    right and down (uniform offsets ``shift / scale``)."""
    k = 3 * scale + 1
    lr_size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    kernel = initial_kernel(kind, scale, floor=0.0)
    kernels = (kernel / kernel.sum()).view(1, -1, 1, 1).expand(1, k * k, *lr_size).contiguous()
    offsets = torch.full((1, k * k, *lr_size), shift / scale)
    return adaptive_resample(hr, kernels, offsets, offsets, scale)


def per_pixel_oracle(hr, scale, iterations, lr_rate, upscaler, log_every=50):
    """Per-pixel CAR kernels and offsets optimised directly for ``hr`` (Adam, MSE), starting from the box
    kernel with zero offsets. Returns the best hard-rounded PSNR seen at the logging points."""
    k = 3 * scale + 1
    lr_size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    raw = initial_kernel('box', scale, floor=1e-3).view(1, -1, 1, 1).repeat(1, 1, *lr_size).requires_grad_(True)
    offsets = torch.zeros(1, 2 * k * k, *lr_size, requires_grad=True)
    optimizer = torch.optim.Adam([raw, offsets], lr=lr_rate)

    def downscale():
        clamped = raw.clamp(1e-6, 1)
        bounded = torch.tanh(offsets)
        return adaptive_resample(hr, clamped / clamped.sum(1, keepdim=True), bounded[:, :k * k], bounded[:, k * k:],
                                 scale)

    best = -np.inf
    for iteration in range(1, iterations + 1):
        loss = (upscaler(downscale()) - hr).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if iteration % log_every == 0 or iteration == iterations:
            with torch.no_grad():
                best = max(best, psnr_after_rounding(downscale(), hr, upscaler, scale))
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('photos', nargs='*', default=[],
                        help=f'scikit-image photos among {", ".join(ALL_PHOTOS)} (default: --split / --heldout)')
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--oracle-iters', type=int, default=300)
    parser.add_argument('--oracle-lr', type=float, default=1e-2)
    parser.add_argument('--teacher-steps', type=int, nargs='*', default=[6, 12],
                        help="bench_car_quality's teacher_kernels (the --teacher-weight target) with these many "
                             'line-search rounds, used as the downscaler')
    parser.add_argument('--shifts', type=float, nargs='*', default=[-1, -0.5, -0.25, 0.25, 0.5, 1],
                        help='alignment check: PSNR change of the box kernel when every sample moves by these many '
                             'HR pixels right and down (a half-pixel bug would put the best shift off zero)')
    add_heldout_arguments(parser)
    args = parser.parse_args(argv)
    if args.photos:
        images = [(name, load_photo(name)) for name in args.photos]
        where = 'photos ' + ', '.join(args.photos)
    else:
        images, where = evaluation_images(args)
    images = [(name, to_tensor(image)) for name, image in images]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    scale = args.scale
    upscaler = BicubicUpscaler(scale)
    oracle = args.oracle_iters > 0
    print(f'x{scale}, bicubic upscaler, PSNR-Y (crop {scale}) after 8-bit rounding; gains in dB over bicubic↓; '
          f'{where}\n')
    columns = ['bicubic↓', 'box kernel↓ (gain)', 'optimal LR (gain)']
    if oracle:
        columns.append(f'per-pixel CAR oracle, {args.oracle_iters} Adam steps (gain)')
    columns += [f'kernel teacher, {steps} steps (gain)' for steps in args.teacher_steps]
    print('| photo | size | ' + ' | '.join(columns) + ' |')
    print('|---|---|' + '---|' * len(columns))
    gains = []
    for name, hr in images:
        height, width = hr.shape[-2:]
        hr = hr[..., :height - height % 8, :width - width % 8]
        start = time.process_time()
        with torch.no_grad():
            base = psnr_after_rounding(bicubic_downscale(hr, scale), hr, upscaler, scale)
            box = psnr_after_rounding(fixed_kernel_lr(hr, 'box', scale), hr, upscaler, scale)
            best = psnr_after_rounding(least_squares_lr(hr, scale), hr, upscaler, scale)
        row = [box - base, best - base]
        cells = [f'{base:.2f}', f'{box:.2f} ({box - base:+.3f})', f'{best:.2f} ({best - base:+.3f})']
        if oracle:
            per_pixel = per_pixel_oracle(hr, scale, args.oracle_iters, args.oracle_lr, upscaler)
            row.append(per_pixel - base)
            cells.append(f'{per_pixel:.2f} ({per_pixel - base:+.3f})')
        for steps in args.teacher_steps:
            kernels = teacher_kernels(hr, scale, steps)
            zeros = torch.zeros_like(kernels)
            with torch.no_grad():
                taught = psnr_after_rounding(adaptive_resample(hr, kernels, zeros, zeros, scale), hr, upscaler, scale)
            row.append(taught - base)
            cells.append(f'{taught:.2f} ({taught - base:+.3f})')
        gains.append(row)
        seconds = time.process_time() - start
        print(f'| {name} | {hr.shape[-2]}×{hr.shape[-1]} | ' + ' | '.join(cells) + f' |  ({seconds:.0f} CPU s)',
              flush=True)
    mean = np.mean(gains, axis=0)
    print('| mean gain | | | ' + ' | '.join(f'{g:+.3f}' for g in mean) + ' |')
    if args.shifts:
        print('\nAlignment: box kernel↓ with every sample shifted diagonally, PSNR change in dB vs no shift\n')
        print('| photo | ' + ' | '.join(f'{shift:+g} px' for shift in args.shifts) + ' |')
        print('|---|' + '---|' * len(args.shifts))
        for name, hr in images:
            hr = hr[..., :hr.shape[-2] - hr.shape[-2] % 8, :hr.shape[-1] - hr.shape[-1] % 8]
            with torch.no_grad():
                centred = psnr_after_rounding(fixed_kernel_lr(hr, 'box', scale), hr, upscaler, scale)
                changes = [psnr_after_rounding(fixed_kernel_lr(hr, 'box', scale, shift), hr, upscaler, scale) - centred
                           for shift in args.shifts]
            print(f'| {name} | ' + ' | '.join(f'{change:+.3f}' for change in changes) + ' |', flush=True)
    return mean


if __name__ == '__main__':
    main()
