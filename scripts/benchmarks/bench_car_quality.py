"""Mini-reproduction of CAR's Table 1 ("Upscaling: Bicubic" columns) at x4 on CPU.

Trains a reduced-width :class:`CARResamplerNet` under a fixed differentiable bicubic upscaler on random
crops of scikit-image's training photos for a time budget, then on the held-out photos (chelsea,
coffee) compares, side by side in one run:

* CAR downscaling (8-bit, hard rounding) + bicubic upscaling, and
* bicubic downscaling with MATLAB-style antialiasing (8-bit) + bicubic upscaling,

by PSNR / SSIM on Y with ``crop_border = scale`` (basicsr metrics). The paper reports +0.58 dB on Set5
x4 for the full network trained on DIV2K.

    python scripts/benchmarks/bench_car_quality.py               # ~20 CPU minutes of training
    python scripts/benchmarks/bench_car_quality.py --minutes 3   # shortened run
"""
import argparse
import math
import time

import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img

from basicsr_lmar.archs.car_arch import BicubicUpscaler, CARResamplerNet
from basicsr_lmar.data.skimage_photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, load_photo
from basicsr_lmar.losses.car_loss import CAROffsetLoss, PartialTVLoss
from basicsr_lmar.models.car_model import quantize_8bit
from basicsr_lmar.ops.adaptive_resample import adaptive_resample
from basicsr_lmar.ops.resize import resize


def to_tensor(photo):
    return torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1))).float()[None]


def random_crops(photos, size, batch, generator):
    crops = []
    for _ in range(batch):
        photo = photos[int(torch.randint(len(photos), (1, ), generator=generator))]
        top = int(torch.randint(photo.shape[2] - size + 1, (1, ), generator=generator))
        left = int(torch.randint(photo.shape[3] - size + 1, (1, ), generator=generator))
        crop = photo[..., top:top + size, left:left + size]
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-1)
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.transpose(-1, -2)
        crops.append(crop)
    return torch.cat(crops)


def bicubic_initialisation(net, scale):
    """Sets the last kernel conv to output the (non-negative part of the) antialiased bicubic kernel
    everywhere and the offset heads to output 0, so training starts near bicubic downscaling."""
    k = net.kernel_size
    # Element (ky, kx) is centred on HR distance (kx - k // 2, ky - k // 2) from the projected LR centre.
    distance = (torch.arange(k, dtype=torch.float64) - k // 2) / scale
    magnitude = distance.abs()
    cubic = torch.where(magnitude <= 1, 1.5 * magnitude**3 - 2.5 * magnitude**2 + 1,
                        torch.where(magnitude < 2, -0.5 * magnitude**3 + 2.5 * magnitude**2 - 4 * magnitude + 2,
                                    torch.zeros_like(magnitude))).clamp(min=1e-3)
    kernel = (cubic.view(k, 1) * cubic.view(1, k)).flatten()
    with torch.no_grad():
        last = net.kernel_head[-1]
        last.weight.mul_(1e-2)
        last.bias.copy_((kernel / kernel.max()).float())
        for head in (net.offset_h_head, net.offset_v_head):
            head[-2].weight.mul_(1e-2)
            head[-2].bias.zero_()


def y_metrics(result, reference, scale):
    result, reference = tensor2img([result]), tensor2img([reference])
    return (calculate_psnr(result, reference, crop_border=scale, test_y_channel=True),
            calculate_ssim(result, reference, crop_border=scale, test_y_channel=True))


def evaluate(net, upscaler, photos, scale):
    rows = []
    net.eval()
    with torch.no_grad():
        for name, hr in photos:
            height, width = hr.shape[-2:]
            hr = hr[..., :height - height % 8, :width - width % 8]
            lr_car = quantize_8bit(adaptive_resample(hr, *net(hr), scale).clamp(0, 1), 'round')
            lr_bic = quantize_8bit(resize(hr, (hr.shape[-2] // scale, hr.shape[-1] // scale), 'bicubic',
                                          antialias=True).clamp(0, 1), 'round')
            car = y_metrics(upscaler(lr_car).clamp(0, 1), hr, scale)
            bic = y_metrics(upscaler(lr_bic).clamp(0, 1), hr, scale)
            rows.append((name, tuple(hr.shape[-2:]), car, bic))
    net.train()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--minutes', type=float, default=20.0, help='training time budget')
    parser.add_argument('--clock', choices=('cpu', 'wall'), default='cpu',
                        help='budget in process CPU time (default; fair on a shared machine) or wall-clock time')
    parser.add_argument('--crop', type=int, default=64)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--offset-weight', type=float, default=1e-5, help='lambda of CAROffsetLoss')
    parser.add_argument('--tv-weight', type=float, default=1e-3, help='gamma_tv of PartialTVLoss')
    parser.add_argument('--alpha', type=float, default=4.0, help='soft rounding sharpness')
    parser.add_argument('--width', type=int, nargs=4, default=[16, 32, 64, 2], metavar=('HEAD', 'BODY', 'TOP', 'BLOCKS'),
                        help='reduced ResamplerNet widths (full network: 64 128 256 5)')
    parser.add_argument('--init', choices=('bicubic', 'random'), default='bicubic',
                        help='start from (clamped) bicubic kernels and zero offsets, or from random heads')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    scale = args.scale
    head, body, top, blocks = args.width
    net = CARResamplerNet(scale=scale, num_feat=head, body_feat=body, top_feat=top, num_block=blocks)
    if args.init == 'bicubic':
        bicubic_initialisation(net, scale)
    upscaler = BicubicUpscaler(scale)
    offset_loss = CAROffsetLoss(loss_weight=args.offset_weight)
    tv_loss = PartialTVLoss(loss_weight=args.tv_weight)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-6)
    train = [to_tensor(load_photo(name)) for name in TRAIN_PHOTOS]
    heldout = [(name, to_tensor(load_photo(name))) for name in HELDOUT_PHOTOS]
    params = sum(p.numel() for p in net.parameters())
    print(f'CAR x{scale} under bicubic upscaling: ResamplerNet widths {args.width} ({params:,} params), '
          f'crop {args.crop}, batch {args.batch}, lr {args.lr}, lambda {args.offset_weight}, '
          f'gamma_tv {args.tv_weight}, soft-round alpha {args.alpha}, init {args.init}, budget {args.minutes} min',
          flush=True)
    if args.init == 'bicubic':
        report(evaluate(net, upscaler, heldout, scale), 'at initialisation')
    budget = args.minutes * 60
    clock = time.process_time if args.clock == 'cpu' else time.time
    start, wall_start = clock(), time.time()
    iteration, running = 0, []
    while clock() - start < budget:
        progress = (clock() - start) / budget
        for group in optimizer.param_groups:  # cosine decay over the time budget
            group['lr'] = args.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        hr = random_crops(train, args.crop, args.batch, generator)
        kernels, offsets_h, offsets_v = net(hr)
        lr = quantize_8bit(adaptive_resample(hr, kernels, offsets_h, offsets_v, scale).clamp(0, 1), 'soft',
                           args.alpha)
        l1 = (upscaler(lr) - hr).abs().mean()
        loss = l1 + offset_loss(offsets_h, offsets_v) + tv_loss(kernels, offsets_h, offsets_v)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running.append(float(l1.detach()))
        iteration += 1
        if iteration % 50 == 0:
            offset = float(offsets_h.detach().abs().mean() + offsets_v.detach().abs().mean()) / 2
            print(f'iter {iteration:5d}  {args.clock} {clock() - start:6.0f}s  L1 {np.mean(running[-50:]):.4f}  '
                  f'|offset| {offset:.3f}', flush=True)
    minutes, wall = (clock() - start) / 60, (time.time() - wall_start) / 60
    report(evaluate(net, upscaler, heldout, scale),
           f'after {iteration} iterations in {minutes:.1f} {args.clock} min ({wall:.1f} wall min)')


def report(rows, title):
    print(f'\nHeld-out photos, {title}:\n')
    print('| photo | size | CAR↓+bicubic↑ PSNR / SSIM | bicubic↓+bicubic↑ PSNR / SSIM | gain dB |')
    print('|---|---|---|---|---|')
    for name, size, car, bic in rows:
        print(f'| {name} | {size[0]}×{size[1]} | {car[0]:.2f} / {car[1]:.4f} | {bic[0]:.2f} / {bic[1]:.4f} '
              f'| {car[0] - bic[0]:+.2f} |')
    car_mean = np.mean([r[2][0] for r in rows])
    bic_mean = np.mean([r[3][0] for r in rows])
    print(f'| mean | | {car_mean:.2f} | {bic_mean:.2f} | {car_mean - bic_mean:+.2f} |')


if __name__ == '__main__':
    main()
