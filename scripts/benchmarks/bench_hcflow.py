"""HCFlow mini-reproduction on CPU: a small HCFlow x4 trained for minutes, then HCD N = 15 on held-out crops.

    PYTHONPATH=. python scripts/benchmarks/bench_hcflow.py --minutes 10 --save-weights /tmp/hcflow_x4_mini.pth
    PYTHONPATH=. python scripts/benchmarks/bench_hcflow.py --load-weights /tmp/hcflow_x4_mini.pth   # HCD only
    PYTHONPATH=. python scripts/benchmarks/bench_hcflow.py --quick      # seconds: a smoke run (the test's)

1. Trains a small HCFlowNet x4 (the authors' structure, fewer steps and narrower: ``SMALL`` below) with
   ``HCFlowModel`` -- the authors' losses, straight-through 8-bit LR, clipping by value 5 then norm 100,
   ActNorm data init on the first batch -- on random 48x48 patches (flipped at random) of the project's
   training photos, for a wall-clock budget of ``--minutes``; Adam ``--lr`` (default 1e-3: minutes, not
   the authors' 500k iterations at 2.5e-4).
2. On the evaluation images -- by default the held-out crops of ``bench_hcd.py`` (three 128x128 crops each of
   chelsea and coffee, the test split), with ``--split validation`` or ``--heldout DIR`` one centre crop
   per image -- per image and per heat (``--heats``, default 0 and 1; latents seeded as in HCD's
   adapter): PSNR-Y (crop border 4, BasicSR's ``calculate_psnr``) of the base HCFlow (stored 8-bit LR) and of
   HCD with N_x = N_y = 15 (paper defaults: l2, eps 0.3, alpha 20/255, seed 0), the gain, seconds per image.

``--save-weights PATH`` writes ``{'params', 'network_g', 'iterations', 'minutes'}`` (``params`` loads into
``HCFlowNet(**network_g)``, also as ``path.pretrain_network_g`` of ``options/test_hcd_hcflow_x4.yml`` with the
``network_g`` section replaced).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from basicsr.models import build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import basicsr_lmar  # noqa: E402,F401
from basicsr_lmar.data.skimage_photos import load_photo, photo_names  # noqa: E402
from basicsr_lmar.ops.collaborative_downscaling import collaborative_downscale  # noqa: E402
from basicsr_lmar.ops.rounding import quantize  # noqa: E402
from basicsr_lmar.registry import RESCALER_REGISTRY  # noqa: E402
from bench_hcd import evaluation_crops, psnr_y  # noqa: E402  (the same crops and metric as the IRN figures)
from heldout import add_heldout_arguments  # noqa: E402

SMALL = {'type': 'HCFlowNet', 'scale': 4, 'flow_steps': [4, 4], 'prior_steps': [2, 2], 'growth': 16, 'rrdb_nf': 16,
         'rrdb_gc': 8, 'rrdb_blocks': 1, 'hidden': 16}
QUICK = {'type': 'HCFlowNet', 'scale': 4, 'flow_steps': [2, 2], 'prior_steps': [1, 1], 'growth': 4, 'rrdb_nf': 8,
         'rrdb_gc': 4, 'rrdb_blocks': 1, 'hidden': 8}


def to_tensor(image):
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()


def train_hcflow(network_g, seconds, patch, batch, lr, seed=0, max_iters=None):
    """``HCFlowModel`` on random patches of the training photos for ``seconds`` (or ``max_iters``)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    photos = [to_tensor(load_photo(name)) for name in photo_names('train')]
    opt = {
        'name': 'bench_hcflow', 'model_type': 'HCFlowModel', 'num_gpu': 0, 'dist': False, 'rank': 0, 'world_size': 1,
        'is_train': True, 'scale': 4, 'network_g': dict(network_g), 'path': {},
        'train': {'optim_g': {'type': 'Adam', 'lr': lr, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [10**9], 'gamma': 0.5}, 'total_iter': 10**9},
        'val': {'heats': [0.0]},
    }
    model = build_model(opt)
    start, iters = time.perf_counter(), 0
    while time.perf_counter() - start < seconds and (max_iters is None or iters < max_iters):
        patches = []
        for _ in range(batch):
            photo = photos[rng.integers(len(photos))]
            y, x = rng.integers(photo.shape[1] - patch + 1), rng.integers(photo.shape[2] - patch + 1)
            crop = photo[:, y:y + patch, x:x + patch]
            patches.append(crop.flip(-1) if rng.random() < 0.5 else crop)
        model.feed_data({'gt': torch.stack(patches)})
        model.optimize_parameters(iters)
        iters += 1
    elapsed = time.perf_counter() - start
    net = model.get_bare_model(model.net_g).eval()
    params = sum(p.numel() for p in net.parameters())
    print(f'trained HCFlowNet x4 {({k: v for k, v in network_g.items() if k != "type"})} ({params:,} params): '
          f'{iters} iterations of {batch}x{patch}x{patch} in {elapsed:.0f} s; last losses '
          + ', '.join(f'{k} {v:.4f}' for k, v in model.log_dict.items() if k != 'nonfinite_skips'))
    return net, iters, elapsed


def load_weights(path):
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    from basicsr.utils.registry import ARCH_REGISTRY
    network_g = dict(checkpoint['network_g'])
    net = ARCH_REGISTRY.get('HCFlowNet')(**{k: v for k, v in network_g.items() if k != 'type'})
    net.load_state_dict(checkpoint['params'], strict=True)
    print(f'HCFlowNet from {path}: {network_g}, {checkpoint.get("iterations", "?")} training iterations')
    return net.eval(), network_g


def hcd_table(rescaler, images, steps):
    """Per image: base PSNR-Y, HCD PSNR-Y, gain, seconds. Returns the gains."""
    print('| image | base PSNR-Y | HCD PSNR-Y | gain (dB) | s/image |')
    print('|---|---|---|---|---|')
    gains = []
    for name, hr in images:
        hr = hr[None]
        with torch.no_grad():
            base = psnr_y(rescaler.upscale(quantize(rescaler.downscale(hr)))[0], hr[0])
        start = time.perf_counter()
        result = collaborative_downscale(rescaler, hr, steps_hr=steps, steps_lr=steps, seed=0)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            value = psnr_y(rescaler.upscale(result.lr)[0], hr[0])
        gains.append(value - base)
        print(f'| {name} | {base:.3f} | {value:.3f} | {value - base:+.3f} | {seconds:.2f} |')
    print(f'\nmean gain {np.mean(gains):+.3f} dB, min {np.min(gains):+.3f} dB, improved '
          f'{sum(g > 0 for g in gains)}/{len(gains)} images')
    return gains


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=10.0, help='wall-clock training budget (default 10)')
    parser.add_argument('--quick', action='store_true',
                        help='a smoke run in seconds: tiny net, 3 iterations, 32x32 crops, N = 2')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate (default 1e-3)')
    parser.add_argument('--heats', type=float, nargs='+', default=[0.0, 1.0])
    parser.add_argument('--steps', type=int, default=15, help='N_x = N_y (default 15, the paper)')
    parser.add_argument('--size', type=int, default=128, help='crop size of the evaluation images')
    parser.add_argument('--save-weights', metavar='PATH', help='write the trained network here')
    parser.add_argument('--load-weights', metavar='PATH', help='skip training: HCD on this saved network')
    add_heldout_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size, steps = (32, 2) if args.quick else (args.size, args.steps)
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(f'torch {torch.__version__}, {args.threads} thread(s), load average {load:.2f}')
    if args.load_weights:
        net, network_g = load_weights(args.load_weights)
        iters, elapsed = None, None
    else:
        network_g = QUICK if args.quick else SMALL
        net, iters, elapsed = train_hcflow(network_g, 60 * args.minutes, patch=32 if args.quick else 48,
                                           batch=2 if args.quick else 8, lr=args.lr,
                                           max_iters=3 if args.quick else None)
    for p in net.parameters():
        p.requires_grad_(False)
    if args.save_weights:
        os.makedirs(os.path.dirname(os.path.abspath(args.save_weights)), exist_ok=True)
        torch.save({'params': net.state_dict(), 'network_g': dict(network_g), 'iterations': iters,
                    'minutes': None if elapsed is None else elapsed / 60}, args.save_weights)
        print(f'wrote {args.save_weights}')
    images, label = evaluation_crops(args, size)
    if args.quick:
        images = images[:2]
    results = {}
    for heat in args.heats:
        print(f'\n### small HCFlow x4, heat {heat:g}: HCD N_x = N_y = {steps} (l2, eps 0.3, alpha 20/255, seed 0); '
              f'{label}, {size}x{size}\n')
        rescaler = RESCALER_REGISTRY.get('HCFlowRescaler')(net, heat=heat, z_policy='seeded', z_seed=0)
        results[heat] = hcd_table(rescaler, images, steps)
    return results


if __name__ == '__main__':
    main()
