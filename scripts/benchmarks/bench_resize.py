"""Times resize_right, basicsr_lmar's ``resize`` and ``F.interpolate(mode='bicubic')`` side by side.

Cases: 1×3×2160×3840 → 1080×1920 (antialiased bicubic; F.interpolate with ``antialias=True``) and the
reverse upscale 1080×1920 → 2160×3840 (antialiasing has no effect when upscaling; F.interpolate with
``antialias=False``). The three methods run interleaved in each repeat so machine load hits them alike;
the median over repeats is reported with ratios. Peak memory is the growth of the process's peak RSS
(``VmHWM``, reset through ``/proc/self/clear_refs`` once the input exists) during one call, each method in
a fresh subprocess (tracemalloc cannot see torch's allocations); it includes the output.

    PYTHONPATH=. python scripts/benchmarks/bench_resize.py [--threads 2] [--repeats 7] [--no-memory] [--backward]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from basicsr_lmar.ops.resize import resize, resize_reference

CASES = {
    'down 2160x3840 -> 1080x1920': ((2160, 3840), (1080, 1920), True),
    'up 1080x1920 -> 2160x3840': ((1080, 1920), (2160, 3840), False),
}


def _methods(out_size, antialias):
    return {
        'resize_right': lambda x: resize_reference(x, out_size, 'bicubic', antialias),
        'basicsr_lmar.resize': lambda x: resize(x, out_size, 'bicubic', antialias),
        'F.interpolate': lambda x: F.interpolate(x, size=out_size, mode='bicubic', antialias=antialias,
                                                 align_corners=False),
    }


def _status_mib(field):
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f'{field} missing from /proc/self/status')


def measure_memory(case, method, threads):
    """Runs in a subprocess: prints the max-RSS growth (MiB) of one call, input already allocated."""
    torch.set_num_threads(threads)
    in_size, out_size, antialias = CASES[case]
    x = torch.rand(1, 3, *in_size)
    fn = _methods(out_size, antialias)[method]
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')  # resets the peak RSS (VmHWM) to the current RSS
    before = _status_mib('VmRSS')
    with torch.no_grad():
        y = fn(x)
    print(json.dumps({'peak_mib': _status_mib('VmHWM') - before, 'output_mib': y.numel() * 4 / 2**20}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--backward', action='store_true',
                        help='also time forward + backward (gradient w.r.t. the input) of ours vs F.interpolate')
    parser.add_argument('--_memory', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory:
        return measure_memory(*args._memory, args.threads)
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, float32, median of {args.repeats}')
    for case, (in_size, out_size, antialias) in CASES.items():
        x = torch.rand(1, 3, *in_size)
        methods = _methods(out_size, antialias)
        times = {name: [] for name in methods}
        with torch.no_grad():
            ours = methods['basicsr_lmar.resize'](x)  # warm-up (builds and caches the operators)
            error = (ours - methods['resize_right'](x)).abs().max().item()
            for _ in range(args.repeats):
                for name, fn in methods.items():
                    start = time.perf_counter()
                    fn(x)
                    times[name].append(time.perf_counter() - start)
        median = {name: statistics.median(t) for name, t in times.items()}
        print(f'\n{case} (bicubic, antialias={antialias}); max |ours - resize_right| = {error:.2e}')
        for name, seconds in median.items():
            line = f'  {name:20s} {seconds * 1e3:8.1f} ms (min {min(times[name]) * 1e3:7.1f})'
            if not args.no_memory:
                result = subprocess.run([sys.executable, __file__, '--threads', str(args.threads), '--_memory', case,
                                         name], capture_output=True, text=True, check=True)
                memory = json.loads(result.stdout)
                line += f'   peak +{memory["peak_mib"]:6.0f} MiB (output {memory["output_mib"]:.0f} MiB)'
            print(line)
        base = median['F.interpolate']
        print(f'  ratios: resize_right / F.interpolate = {median["resize_right"] / base:.2f}x, '
              f'ours / F.interpolate = {median["basicsr_lmar.resize"] / base:.2f}x, '
              f'resize_right / ours = {median["resize_right"] / median["basicsr_lmar.resize"]:.1f}x')
        if args.backward:
            _time_backward(x, methods, args.repeats)


def _time_backward(x, methods, repeats):
    x = x.clone().requires_grad_()
    names = ['basicsr_lmar.resize', 'F.interpolate']
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            start = time.perf_counter()
            methods[name](x).sum().backward()
            times[name].append(time.perf_counter() - start)
            x.grad = None
    median = {name: statistics.median(t) for name, t in times.items()}
    print('  forward + backward: ' + ', '.join(f'{name} {seconds * 1e3:.1f} ms' for name, seconds in median.items())
          + f'; ours / F.interpolate = {median[names[0]] / median[names[1]]:.2f}x')


if __name__ == '__main__':
    main()
