"""HCD on a GPU: N_x = N_y = 15 gradient steps per image on a 128x128 and a 512x512 image, time and peak memory.

``collaborative_downscale`` (the op HCDModel and scripts/hcd_refine.py call) on one image of each size
(the test photo ``chelsea``, resized), for three rescalers at x4: the paper's IRN (``block_num [8, 8]``,
growth 32), a small IRN (``[1, 1]``, growth 16, the shape that ``scripts/reproduce.py irn_x4`` trains) and
bicubic down / up. Timing does not depend on the weights, so the IRNs are randomly initialised and perturbed
(``bench_hcd_cost.perturbed_irn``). Median of ``--repeat`` runs after a warm-up (CUDA events); peak memory
is ``torch.cuda.max_memory_allocated`` above the models and the image during one refinement.

    python scripts/benchmarks/bench_hcd_gpu.py
    python scripts/benchmarks/bench_hcd_gpu.py --device cpu --sizes 16 --steps 1 --repeat 1 --skip-paper-irn
                                                           # checks the script
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), osp.pardir, osp.pardir)))

from basicsr_lmar.data.skimage_photos import load_photo  # noqa: E402
from basicsr_lmar.ops.collaborative_downscaling import collaborative_downscale  # noqa: E402
from basicsr_lmar.ops.resize import resize  # noqa: E402
from basicsr_lmar.registry import RESCALER_REGISTRY  # noqa: E402
from bench_hcd_cost import perturbed_irn  # noqa: E402  (this folder)
from gpu_timing import median_seconds, mib_text, peak_mib  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--sizes', type=int, nargs='+', default=[128, 512])
    parser.add_argument('--steps', type=int, default=15, help='N_x = N_y')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (CPU runs)')
    parser.add_argument('--skip-paper-irn', action='store_true', help='leave out the [8, 8] IRN (slow on CPU)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rescalers = {
        'IRN x4 [8, 8] (paper)': RESCALER_REGISTRY.get('IRNRescaler')(perturbed_irn([8, 8], 32), z_policy='zero'),
        'IRN x4 [1, 1]': RESCALER_REGISTRY.get('IRNRescaler')(perturbed_irn([1, 1], 16), z_policy='zero'),
        'bicubic x4': RESCALER_REGISTRY.get('BicubicSRRescaler')(None, scale=4),
    }
    if args.skip_paper_irn:
        del rescalers['IRN x4 [8, 8] (paper)']
    photo = torch.from_numpy(load_photo('chelsea')).permute(2, 0, 1)[None]
    print(f'device {device} ({torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}), '
          f'torch {torch.__version__}, N_x = N_y = {args.steps}, one image, median of {args.repeat}')
    print('| rescaler | image | seconds per image | ms per step | peak MiB |\n|---|---|---|---|---|')
    for name, rescaler in rescalers.items():
        rescaler = rescaler.to(device).eval()
        for side in args.sizes:
            hr = resize(photo, (side, side), 'bicubic').clamp(0, 1).to(device)

            def refine():
                return collaborative_downscale(rescaler, hr, steps_hr=args.steps, steps_lr=args.steps, seed=0)

            seconds = median_seconds(refine, args.repeat, device)
            print(f'| {name} | {side}x{side} | {seconds:.3f} | {seconds / (2 * args.steps) * 1e3:.1f} | '
                  f'{mib_text(peak_mib(refine, device))} |', flush=True)


if __name__ == '__main__':
    main()
