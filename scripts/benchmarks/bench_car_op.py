"""Speed and peak memory of the CAR resampling op: reference vs chunked (vs fused Triton on CUDA).

Forward (no grad) and forward + backward (gradients w.r.t. image, kernels and both offset maps), one
RGB image at 512x512 and 2040x1356, scales 2 and 4 (k = 3s + 1), float32. Every case runs in a fresh
subprocess so that CPU peak memory (max RSS above the inputs) is per case; on CUDA the peak is
``torch.cuda.max_memory_allocated`` above the inputs and times are the median of ``--repeat`` runs
(CUDA-synchronised). Ratios are printed side by side: each implementation's forward + backward speed-up
over the reference, and its forward + backward peak over the bytes of the results it must return (output
+ the four gradients), which stays O(1) for an O(output) implementation. The last lines compare the fused
path with the targets (>= 5x the reference's speed, memory O(output)).

    python scripts/benchmarks/bench_car_op.py            # all sizes (CPU: a few minutes)
    python scripts/benchmarks/bench_car_op.py --quick    # 512x512 only, one repetition
    python scripts/benchmarks/bench_car_op.py --tiny     # 64x64 only, one repetition (checks the script)
    python scripts/benchmarks/bench_car_op.py --device cuda
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES = ((512, 512), (1356, 2040))


def reference_bytes_estimate(height, width, scale):
    """Rough autograd footprint of the reference path: ~12 float32 tensors of k^2 x C x h x w."""
    k2 = (3 * scale + 1)**2
    return 12 * 4 * k2 * 3 * (height // scale) * (width // scale)


def run_case(impl, height, width, scale, device, repeat, threads):
    """Runs in the child process; prints one JSON line."""
    torch.set_num_threads(threads)
    sys.path.insert(0, REPO)
    from basicsr_lmar.ops.adaptive_resample import adaptive_resample

    generator = torch.Generator().manual_seed(0)
    k2 = (3 * scale + 1)**2
    h, w = height // scale, width // scale
    img = torch.rand(1, 3, height, width, generator=generator).to(device)
    kernels = torch.rand(1, k2, h, w, generator=generator).to(device)
    kernels = kernels / kernels.sum(1, keepdim=True)
    offsets = [(torch.rand(1, k2, h, w, generator=generator) * 2 - 1).to(device) for _ in range(2)]
    grad_out = torch.randn(1, 3, h, w, generator=generator).to(device)
    inputs = [img, kernels, *offsets]

    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    statistic = statistics.median if device == 'cuda' else min  # CPU: best of (load from other jobs)

    def peak_bytes():
        if device == 'cuda':
            return torch.cuda.max_memory_allocated()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def current_bytes():
        if device == 'cuda':
            return torch.cuda.memory_allocated()
        with open('/proc/self/statm') as handle:
            return int(handle.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

    result = {'result_mb': (grad_out.numel() * 2 + sum(t.numel() for t in inputs)) * 4 / 2**20}
    # warm-up (Triton compilation, allocator)
    with torch.no_grad():
        adaptive_resample(*inputs, scale, impl=impl)
    sync()
    base = current_bytes()
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with torch.no_grad():
            adaptive_resample(*inputs, scale, impl=impl)
        sync()
        times.append(time.perf_counter() - start)
    result['forward_s'] = statistic(times)
    result['forward_peak_mb'] = max(peak_bytes() - base, 0) / 2**20
    leaves = [t.detach().requires_grad_() for t in inputs]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = adaptive_resample(*leaves, scale, impl=impl)
        torch.autograd.grad(out, leaves, grad_out)
        sync()
        times.append(time.perf_counter() - start)
        del out
    result['forward_backward_s'] = statistic(times)
    result['forward_backward_peak_mb'] = max(peak_bytes() - base, 0) / 2**20
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--quick', action='store_true', help='512x512 only, one repetition')
    parser.add_argument('--tiny', action='store_true', help='64x64 only, one repetition (checks the script)')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--reference-limit-gb', type=float, default=6.0,
                        help='skip the reference path where its estimated footprint exceeds this')
    parser.add_argument('--case', nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        impl, height, width, scale = args.case
        run_case(impl, int(height), int(width), int(scale), args.device, args.repeat, args.threads)
        return
    impls = ['reference', 'chunked'] + (['triton'] if args.device == 'cuda' else [])
    sizes = ((64, 64), ) if args.tiny else SIZES[:1] if args.quick else SIZES
    repeat = 1 if args.quick or args.tiny else args.repeat
    how = 'median' if args.device == 'cuda' else 'best'
    print(f'device {args.device}, threads {args.threads}, {how} of {repeat}, float32, 1x3 image')
    if args.device != 'cuda':
        print('impl triton: skipped (needs CUDA; on CPU it only runs under TRITON_INTERPRET=1, for correctness)')
    print('| size | scale | impl | fwd s | fwd+bwd s | fwd peak MB | fwd+bwd peak MB | fwd+bwd speed-up vs reference '
          '| fwd+bwd peak / results |')
    print('|---|---|---|---|---|---|---|---|---|')
    fused = []
    for height, width in sizes:
        for scale in (2, 4):
            reference_time = None
            for impl in impls:
                size = f'{width}×{height}'
                too_big = reference_bytes_estimate(height, width, scale) > args.reference_limit_gb * 2**30
                if impl == 'reference' and too_big:
                    estimate = reference_bytes_estimate(height, width, scale) / 2**30
                    print(f'| {size} | ×{scale} | reference | skipped: ~{estimate:.0f} GB estimated '
                          f'(> --reference-limit-gb {args.reference_limit_gb}) | | | | | |', flush=True)
                    continue
                command = [sys.executable, os.path.abspath(__file__), '--device', args.device, '--repeat', str(repeat),
                           '--threads', str(args.threads), '--case', impl, str(height), str(width), str(scale)]
                completed = subprocess.run(command, capture_output=True, text=True)
                if completed.returncode != 0:
                    print(f'| {size} | ×{scale} | {impl} | failed: {completed.stderr.strip().splitlines()[-1]} ||||||')
                    continue
                r = json.loads(completed.stdout.strip().splitlines()[-1])
                if impl == 'reference':
                    reference_time = r['forward_backward_s']
                speed_up = reference_time / r['forward_backward_s'] if reference_time else None
                ratio = f'{speed_up:.2f}×' if speed_up else 'n/a'
                memory = r['forward_backward_peak_mb'] / r['result_mb']
                print(f'| {size} | ×{scale} | {impl} | {r["forward_s"]:.4f} | {r["forward_backward_s"]:.4f} | '
                      f'{r["forward_peak_mb"]:.0f} | {r["forward_backward_peak_mb"]:.0f} | {ratio} | {memory:.2f} |',
                      flush=True)
                if impl == 'triton':
                    fused.append((size, scale, speed_up, memory))
    for size, scale, speed_up, memory in fused:
        verdict = 'n/a' if speed_up is None else ('meets' if speed_up >= 5 else 'MISSES')
        print(f'fused {size} ×{scale}: {ratio_text(speed_up)} the reference\'s fwd+bwd speed ({verdict} the >= 5× '
              f'target); fwd+bwd peak = {memory:.2f} × the results\' bytes')


def ratio_text(value):
    return 'n/a ×' if value is None else f'{value:.1f}×'


if __name__ == '__main__':
    main()
