"""HCD / IRN benchmark on CPU: quality gains on held-out photos, gain vs N, N_x/N_y ablation, latency.

    python scripts/benchmarks/bench_hcd.py --quick     # a few minutes on a shared 2-core CPU
    python scripts/benchmarks/bench_hcd.py             # longer IRN training, larger crops

1. Trains a small IRN x4 (``InvRescaleNet``, fewer/narrower blocks than the paper's) with ``IRNModel``
   (the authors' losses) on random 48x48 patches of the project's training photos (astronaut, rocket,
   motorcycle_left, immunohistochemistry, retina) for a wall-clock budget. Tested with z = 0 by default: an
   IRN trained for minutes has not learned to ignore sampled z yet (seeded z gives ~12 dB),
   ``--z-policy seeded`` to see it.
2. On the held-out photos (three crops each of chelsea and coffee), per image: PSNR (Y, crop border 4,
   BasicSR's calculate_psnr) of the base IRN (quantised LR, seeded z) and of HCD with N_x = N_y = 15
   (paper defaults: l2, eps 0.3, alpha 20/255, seed 0), and the gain.
3. Mean gain vs N = 1, 5, 10, 15, 20 (the paper's Table 3), N_x/N_y ablation (Table 2), seconds per image.
4. The same for the network-free bicubic-down/bicubic-up rescaler (``BicubicSRRescaler(None)``).
   With ``--car-checkpoint PATH`` (a CAR resampler trained under bicubic upscaling, as saved by
   ``bench_car_quality.py --save-weights``), the same tables for CAR-down + bicubic-up.
Batched throughput and the side-by-side with the authors' code: ``bench_hcd_cost.py``.

Everything is measured side by side in one run; threads are fixed with ``--threads`` (default 1).
"""
import argparse
import os.path as osp
import sys
import time

import numpy as np
import torch
from basicsr.metrics import calculate_psnr
from basicsr.models import build_model
from basicsr.utils import tensor2img

import basicsr_lmar  # noqa: F401
from basicsr_lmar.data.skimage_photos import load_photo, photo_names
from basicsr_lmar.ops.collaborative_downscaling import collaborative_downscale
from basicsr_lmar.ops.rounding import quantize
from basicsr_lmar.registry import RESCALER_REGISTRY

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from heldout import add_heldout_arguments, evaluation_images  # noqa: E402

# The project's fixed split (basicsr_lmar.data.skimage_photos, docs/data.md): train on TRAIN_PHOTOS,
# report on crops of the held-out photos (chelsea, coffee) only.
HELD_OUT = (('chelsea', (60, 120)), ('chelsea', (150, 250)), ('chelsea', (20, 300)), ('coffee', (100, 200)),
            ('coffee', (250, 350)), ('coffee', (30, 420)))


def to_tensor(image):
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def train_irn(seconds, patch, batch, block_num, growth, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    photos = [to_tensor(load_photo(name)) for name in photo_names('train')]
    opt = {
        'name': 'bench_irn', 'model_type': 'IRNModel', 'num_gpu': 0, 'dist': False, 'rank': 0, 'world_size': 1,
        'is_train': True, 'scale': 4,
        'network_g': {'type': 'InvRescaleNet', 'scale': 4, 'block_num': list(block_num), 'growth': growth},
        'path': {},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 1e-5, 'betas': [0.9, 0.999]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [10**9], 'gamma': 0.5}, 'total_iter': 10**9},
        'val': {'z_policy': 'seeded', 'z_seed': 0},
    }
    model = build_model(opt)
    start, iters = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        patches = []
        for _ in range(batch):
            photo = photos[rng.integers(len(photos))]
            y = rng.integers(photo.shape[1] - patch + 1)
            x = rng.integers(photo.shape[2] - patch + 1)
            crop = photo[:, y:y + patch, x:x + patch]
            if rng.random() < 0.5:
                crop = crop.flip(-1)
            patches.append(crop)
        model.feed_data({'gt': torch.stack(patches)})
        model.optimize_parameters(iters)
        iters += 1
    params = sum(p.numel() for p in model.net_g.parameters())
    print(f'trained IRN x4 block_num={list(block_num)} growth={growth} ({params:,} params): {iters} iterations '
          f'of {batch}x{patch}x{patch} in {time.perf_counter() - start:.0f} s; last losses '
          + ', '.join(f'{k} {v:.2f}' for k, v in model.log_dict.items()))
    net = model.get_bare_model(model.net_g).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def held_out(size):
    images = []
    for name, (y, x) in HELD_OUT:
        photo = to_tensor(load_photo(name))
        images.append((f'{name}@{y},{x}', photo[:, y:y + size, x:x + size]))
    return images


def evaluation_crops(args, size):
    """The crops HCD is measured on: the fixed crops of the test photos (``held_out``) by default, else up to
    three ``size`` crops (top left, centre, bottom right) of every image of ``--split`` / ``--heldout DIR``."""
    if not args.heldout and args.split == 'test':
        return held_out(size), 'test split (the fixed HELD_OUT crops)'
    photos, where = evaluation_images(args)
    images = []
    for name, image in photos:
        photo = to_tensor(image)
        height, width = photo.shape[-2:]
        if min(height, width) < size:
            raise SystemExit(f'bench_hcd.py: {name} is {height}x{width}, smaller than the {size}x{size} crops; '
                             'use larger images or --quick (64x64 crops)')
        corners = {(0, 0), ((height - size) // 2, (width - size) // 2), (height - size, width - size)}
        for y, x in sorted(corners):
            images.append((f'{name}@{y},{x}', photo[:, y:y + size, x:x + size]))
    return images, where


def psnr_y(output, gt, border=4):
    return calculate_psnr(tensor2img([output]), tensor2img([gt]), crop_border=border, test_y_channel=True)


def base_psnr(rescaler, hr):
    with torch.no_grad():
        return psnr_y(rescaler.upscale(quantize(rescaler.downscale(hr))).clamp(0, 1), hr)


def hcd_psnr(rescaler, hr, steps_hr, steps_lr, **kwargs):
    start = time.perf_counter()
    result = collaborative_downscale(rescaler, hr, steps_hr=steps_hr, steps_lr=steps_lr, seed=0, **kwargs)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        return psnr_y(rescaler.upscale(result.lr).clamp(0, 1), hr), seconds


def quality_tables(label, rescaler, images, n_list, ablation):
    print(f'\n### {label}: per image, N_x = N_y = 15 (l2, eps 0.3, alpha 20/255, seed 0)\n')
    print('| image | base PSNR-Y | HCD PSNR-Y | gain (dB) | s/image | gain with keep_best (dB) |')
    print('|---|---|---|---|---|---|')
    bases, gains, best_gains = {}, [], []
    for name, hr in images:
        bases[name] = base_psnr(rescaler, hr[None])
        value, seconds = hcd_psnr(rescaler, hr[None], 15, 15)
        best, _ = hcd_psnr(rescaler, hr[None], 15, 15, keep_best=True)
        gains.append(value - bases[name])
        best_gains.append(best - bases[name])
        print(f'| {name} | {bases[name]:.3f} | {value:.3f} | {value - bases[name]:+.3f} | {seconds:.2f} | '
              f'{best - bases[name]:+.3f} |')
    print(f'\nmean gain {np.mean(gains):+.3f} dB, min {np.min(gains):+.3f} dB, '
          f'improved {sum(g > 0 for g in gains)}/{len(gains)} images '
          f'(keep_best: mean {np.mean(best_gains):+.3f}, improved {sum(g > 0 for g in best_gains)}/{len(gains)})')
    print(f'\n### {label}: mean gain vs N (N_x = N_y = N)\n')
    print('| N | mean gain (dB) | min gain (dB) | s/image |')
    print('|---|---|---|---|')
    for n in n_list:
        runs = [hcd_psnr(rescaler, hr[None], n, n) for _, hr in images]
        g = [value - bases[name] for (name, _), (value, _) in zip(images, runs)]
        print(f'| {n} | {np.mean(g):+.3f} | {np.min(g):+.3f} | {np.mean([s for _, s in runs]):.2f} |')
    print(f'\n### {label}: N_y (HR stage) / N_x (LR stage) ablation\n')
    print('| N_y | N_x | mean gain (dB) | s/image |')
    print('|---|---|---|---|')
    for steps_hr, steps_lr in ablation:
        runs = [hcd_psnr(rescaler, hr[None], steps_hr, steps_lr) for _, hr in images]
        g = [value - bases[name] for (name, _), (value, _) in zip(images, runs)]
        print(f'| {steps_hr} | {steps_lr} | {np.mean(g):+.3f} | {np.mean([s for _, s in runs]):.2f} |')
    return gains


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='short training, 64x64 crops, fewer settings')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--train-seconds', type=float, default=None)
    parser.add_argument('--z-policy', default='zero', choices=('zero', 'seeded'),
                        help='IRN z at test: an IRN trained for minutes is not yet robust to sampled z')
    parser.add_argument('--car-checkpoint', metavar='PATH',
                        help='a CAR resampler trained under bicubic upscaling (bench_car_quality.py --save-weights)')
    parser.add_argument('--skip-irn', action='store_true', help='leave out the IRN (training and tables)')
    parser.add_argument('--skip-bicubic', action='store_true', help='leave out the bicubic rescaler')
    parser.add_argument('--save-weights', metavar='PATH',
                        help="save the trained IRN (basicsr's params layout + its network_g options) to PATH")
    add_heldout_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seconds = args.train_seconds if args.train_seconds is not None else (120 if args.quick else 600)
    size = 64 if args.quick else 128
    n_list = (1, 5, 15) if args.quick else (1, 5, 10, 15, 20)
    ablation = ((0, 15), (15, 0), (5, 10), (10, 5), (15, 15)) if not args.quick else ((0, 15), (15, 0), (15, 15))
    images, where = evaluation_crops(args, size)
    print(f'torch {torch.__version__}, {args.threads} thread(s), evaluation crops {size}x{size} of the {where}, '
          f'IRN training {seconds:.0f} s')
    if args.car_checkpoint:
        car = load_car_rescaler(args.car_checkpoint)
        quality_tables('CAR x4 under bicubic upscaling', car, images, n_list, ablation)
    if not args.skip_irn:
        net = train_irn(seconds, patch=48, batch=8, block_num=(1, 1), growth=16)
        if args.save_weights:
            network_g = {'type': 'InvRescaleNet', 'scale': 4, 'block_num': [1, 1], 'growth': 16}
            torch.save({'params': net.state_dict(), 'network_g': network_g}, args.save_weights)
            print(f'saved the IRN to {args.save_weights} (network_g: {network_g}; path.pretrain_network_g of an '
                  'HCDModel option file for scripts/hcd_refine.py)', flush=True)
        irn = RESCALER_REGISTRY.get('IRNRescaler')(net, z_policy=args.z_policy, z_seed=0)
        quality_tables(f'IRN x4 (small, CPU-trained), {args.z_policy} z', irn, images, n_list, ablation)
    if not args.skip_bicubic:
        bicubic = RESCALER_REGISTRY.get('BicubicSRRescaler')(None, scale=4)
        quality_tables('bicubic down / bicubic up x4', bicubic, images, (1, 15) if args.quick else n_list,
                       ((0, 15), (15, 0), (15, 15)))


def load_car_rescaler(path):
    """CARRescaler (bicubic upscaler) from a checkpoint of ``bench_car_quality.py --save-weights``."""
    from basicsr.utils.registry import ARCH_REGISTRY
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    options = {key: value for key, value in checkpoint['network_g'].items() if key != 'type'}
    net = ARCH_REGISTRY.get('CARResamplerNet')(**options)
    net.load_state_dict(checkpoint['params'], strict=True)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    print(f'CAR resampler from {path}: {options}, {checkpoint.get("iterations", "?")} training iterations')
    return RESCALER_REGISTRY.get('CARRescaler')(net, None)


if __name__ == '__main__':
    main()
