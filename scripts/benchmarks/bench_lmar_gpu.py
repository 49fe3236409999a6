"""LMAR on a GPU: the resampler + enhancer pipeline at 2160x3840 -> 1080x1920, time and peak memory per image.

Each pipeline is ``LMARResampler.enhance(x, enhancer, size, use_lmar)`` (the one entry that validation and
the scripts call): plain ``U(E(D(x)))`` and LMAR ``U(E(x_c))``; also the resampler alone and the enhancer
(CNN-I, ``UHDUNet`` block ``invertible``) at full and at working size. Times are the median of ``--repeat``
runs after a warm-up (CUDA events); peak memory is ``torch.cuda.max_memory_allocated`` above the models and
the input during one call. Weights are random (timing and memory do not depend on them). The paper
(Table 1) reports about 10-11 ms per image with LMAR on an RTX 3090; the last line prints our LMAR
pipeline's time next to that figure and its ratio to the plain pipeline and to the full-size enhancer.

    python scripts/benchmarks/bench_lmar_gpu.py                       # CUDA, 2160x3840, backend auto
    python scripts/benchmarks/bench_lmar_gpu.py --backend torch --amp fp16
    python scripts/benchmarks/bench_lmar_gpu.py --device cpu --size 64 96 --repeat 1   # checks the script
"""
import argparse
import contextlib
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), osp.pardir, osp.pardir)))

from basicsr_lmar.archs.lmar_arch import LMARResampler  # noqa: E402
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet  # noqa: E402
from gpu_timing import median_seconds, mib_text, peak_mib  # noqa: E402  (this folder)

PAPER_MS = (10, 11)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--size', type=int, nargs=2, default=(2160, 3840), help='input H W (working size: half)')
    parser.add_argument('--backend', default='auto', choices=('auto', 'torch', 'tcnn'), help='LMAR MLP backend')
    parser.add_argument('--amp', default='none', choices=('none', 'fp16', 'bf16'), help='autocast the pipeline')
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (CPU runs)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    resampler = LMARResampler(mlp_backend=args.backend).to(device).eval()
    enhancer = UHDUNet(block='invertible').to(device).eval()
    size = tuple(args.size)
    working = (size[0] // 2, size[1] // 2)
    x = torch.rand(1, 3, *size, device=device)
    x_d = resampler.resize(x, working)
    autocast = (torch.autocast(device.type, dtype={'fp16': torch.float16, 'bf16': torch.bfloat16}[args.amp])
                if args.amp != 'none' else contextlib.nullcontext())
    cases = {
        'enhancer at full size': lambda: enhancer(x),
        'enhancer at working size': lambda: enhancer(x_d),
        'resampler alone': lambda: resampler(x, working),
        'plain U(E(D(x)))': lambda: resampler.enhance(x, enhancer, working, use_lmar=False),
        'LMAR U(E(x_c))': lambda: resampler.enhance(x, enhancer, working, use_lmar=True),
    }
    print(f'device {device} ({torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}), '
          f'torch {torch.__version__}, input {size[0]}x{size[1]} -> working {working[0]}x{working[1]}, '
          f'MLP backend {resampler.mlp_backend}, amp {args.amp}, median of {args.repeat}')
    print('| pipeline | ms per image | peak MiB above models + input |\n|---|---|---|')
    results = {}
    with torch.no_grad(), autocast:
        for name, fn in cases.items():
            seconds = median_seconds(fn, args.repeat, device)
            results[name] = seconds
            print(f'| {name} | {seconds * 1e3:.2f} | {mib_text(peak_mib(fn, device))} |', flush=True)
    lmar = results['LMAR U(E(x_c))']
    print(f'LMAR pipeline {lmar * 1e3:.2f} ms per image (paper, RTX 3090: {PAPER_MS[0]}-{PAPER_MS[1]} ms); '
          f'LMAR / plain = {lmar / results["plain U(E(D(x)))"]:.2f}x, '
          f'full-size enhancer / LMAR = {results["enhancer at full size"] / lmar:.2f}x')


if __name__ == '__main__':
    main()
