"""Does LMAR's training objective predict PSNR in the demo? An oracle per feature layer.

    python scripts/benchmarks/bench_lmar_demo_objective.py [--layers body.down_fusion2 head ...] [--steps 100]

For each held-out photo of the demo (384x576, darkened as in ``options/demo_lmar_skimage.yml``) and
working sizes 1/2 and 1/4 per side (bicubic, no antialiasing, as the demo's validation), the
low-resolution image x_c itself is optimised (Adam, lr 2e-3, from the plain downscale x_d) to minimise
L_rc = SmoothL1(U(E(x_c)), E(x)) at the enhancer module ``layer``, i.e. the best any resampler could do
on that objective. Printed: PSNR of the final pipeline U(enhancer(x_c)) against GT for the plain
downscale, the antialiased plain downscale, and the L_rc-oracle of each layer. A layer whose oracle is
below "plain" is an objective that, minimised, lowers PSNR.

``--split validation|test`` picks the demo's photos (default: test, the held-out photos); ``--heldout DIR``
takes every image of DIR instead, resized and darkened the same way as the demo's validation data
(``SkimagePhotoDataset``'s resize_to, gamma, gain and noise, drawn with its per-index seed).

Needs the demo's stage-1 enhancer (``make demo``, or ``python scripts/lmar_demo.py``):
``experiments/demo_lmar_enhancer_skimage/models/net_g_latest.pth``.
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch
import torch.nn.functional as F
import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from basicsr.archs import build_network  # noqa: E402
from basicsr.metrics import calculate_psnr  # noqa: E402
from basicsr.utils import tensor2img  # noqa: E402
from basicsr.utils.options import ordered_yaml  # noqa: E402

import basicsr_lmar  # noqa: E402,F401
from basicsr_lmar.data.skimage_dataset import SkimagePhotoDataset  # noqa: E402
from basicsr_lmar.ops.resize import resize  # noqa: E402
from basicsr_lmar.archs.feature_hooks import FeatureHook  # noqa: E402
from basicsr_lmar.data.skimage_dataset import darken  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from heldout import add_heldout_arguments, evaluation_images  # noqa: E402

LMAR_OPT = osp.join(REPO, 'options', 'demo_lmar_skimage.yml')
ENHANCER_CKPT = osp.join(REPO, 'experiments', 'demo_lmar_enhancer_skimage', 'models', 'net_g_latest.pth')


def psnr(image, gt):
    """RGB PSNR of the 8-bit images, as the LMAR validation table computes it."""
    return calculate_psnr(tensor2img([image]), tensor2img([gt]), crop_border=0)


def folder_samples(args, dataset):
    """The images of ``--heldout DIR`` as the demo's validation samples: resized to the dataset's
    ``resize_to`` (bicubic), cropped to a multiple of its scale, darkened with its gamma / gain / noise
    drawn from ``default_rng((seed, index))`` as ``SkimagePhotoDataset`` does."""
    opt = dataset.opt
    images, _ = evaluation_images(args)
    samples = []
    for index, (name, image) in enumerate(images):
        gt = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        if opt.resize_to:
            gt = resize(gt[None], tuple(opt.resize_to), 'bicubic').clamp(0, 1)[0]
        scale = opt.scale if opt.degradation == 'bicubic' else 1
        gt = gt[:, :gt.shape[1] - gt.shape[1] % scale, :gt.shape[2] - gt.shape[2] % scale]
        rng = np.random.default_rng((opt.seed, index))
        gamma, gain = rng.uniform(*opt.gamma), rng.uniform(*opt.gain)
        dark = darken(np.ascontiguousarray(gt.numpy().transpose(1, 2, 0)), gamma, gain, opt.noise_sigma, rng)
        samples.append({'lq': torch.from_numpy(dark.transpose(2, 0, 1).copy()), 'gt': gt, 'lq_path': f'{name}.png'})
    return samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--layers', nargs='+',
                        default=['body.down_fusion2', 'body.down_fusion1', 'stem', 'body.skip_fusion1', 'head'])
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--kernel', default='bicubic')
    add_heldout_arguments(parser)
    args = parser.parse_args(argv)
    if not osp.isfile(ENHANCER_CKPT):
        raise SystemExit(f'{ENHANCER_CKPT} not found: run the demo (python scripts/lmar_demo.py) first')
    torch.manual_seed(0)
    with open(LMAR_OPT) as handle:
        opt = yaml.load(handle, Loader=ordered_yaml()[0])
    enhancer_opt = {k: v for k, v in opt['network_enhancer'].items() if k != 'feature_layer'}
    enhancer = build_network(enhancer_opt).eval()
    enhancer.load_state_dict(torch.load(ENHANCER_CKPT, map_location='cpu')['params'])
    enhancer.requires_grad_(False)
    dataset = SkimagePhotoDataset(dict(opt['datasets']['val'], phase='val', split=args.split))
    if args.heldout:
        dataset = folder_samples(args, dataset)
    kernel = args.kernel

    rows = {}
    for index in range(len(dataset)):
        sample = dataset[index]
        x, gt = sample['lq'][None], sample['gt'][None]
        full = x.shape[-2:]
        for divisor in (2, 4):
            size = (full[0] // divisor, full[1] // divisor)
            with torch.no_grad():
                x_d = resize(x, size, kernel, False)
                row = rows.setdefault(divisor, {})
                row.setdefault('plain', []).append(psnr(resize(enhancer(x_d), full, kernel, False), gt))
                x_aa = resize(x, size, kernel, True)
                row.setdefault('plain, antialiased D', []).append(psnr(resize(enhancer(x_aa), full, kernel, False), gt))
            for layer in args.layers:
                hook = FeatureHook(enhancer, layer)
                with torch.no_grad():
                    target = hook.extract(x)
                x_c = x_d.clone().requires_grad_(True)
                optimizer = torch.optim.Adam([x_c], lr=2e-3)
                for _ in range(args.steps):
                    feature = resize(hook.extract(x_c), tuple(target.shape[-2:]), 'lanczos3', False)
                    loss = F.smooth_l1_loss(feature, target)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                hook.remove()
                with torch.no_grad():
                    row.setdefault(f'L_rc oracle at {layer}', []).append(
                        psnr(resize(enhancer(x_c), full, kernel, False), gt))
            print(f'done {sample["lq_path"]} 1/{divisor}', flush=True)

    names = list(rows[2])
    print(f'\nPSNR (dB) of U(enhancer(x_c)), mean over the {len(dataset)} photos '
          f'({"--heldout " + args.heldout if args.heldout else args.split + " split"}), {kernel}, '
          f'{args.steps} Adam steps per oracle\n')
    print('| x_c | 1/2 per side | 1/4 per side |\n|---|---|---|')
    for name in names:
        cells = []
        for divisor in (2, 4):
            values = rows[divisor][name]
            mean = sum(values) / len(values)
            base = sum(rows[divisor]['plain']) / len(values)
            cells.append(f'{mean:.2f} ({mean - base:+.2f})')
        print(f'| {name} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
