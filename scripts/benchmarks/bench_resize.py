"""Times resize_right, basicsr_lmar's ``resize`` and ``F.interpolate(mode='bicubic')`` side by side.

Cases (1×3 images, float32):

* ``down aa``: 2160×3840 → 1080×1920, antialiased bicubic (F.interpolate with ``antialias=True``);
* ``down``: 2160×3840 → 1080×1920 without antialiasing (the released LMAR resizer's mode), bicubic and
  lanczos3, both against F.interpolate's bicubic with ``antialias=False`` (it has no lanczos);
* ``up``: 1080×1920 → 2160×3840 (antialiasing has no effect when upscaling; F.interpolate with
  ``antialias=False``).

All methods of a case run interleaved in each repeat so machine load hits them alike; the median over
repeats is reported with ratios (``--skip-reference`` leaves resize_right out: it is ~10× slower), next
to the median *CPU time* (user + system of this process) per call, which other jobs' load disturbs far
less than the wall time on a shared machine (with one thread it is the work done). Peak
memory is the growth of the process's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` once
the input exists) during one call, each method in a fresh subprocess (tracemalloc cannot see torch's
allocations); it includes the output. ``--size H W`` scales the cases down (e.g. ``--size 216 384`` for
a quick check); ``--cases`` picks some.

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

# name -> (input size as a multiple of --size, output as a multiple, antialias, our kernels)
CASES = {
    'down aa': ((1, 1), (0.5, 0.5), True, ('bicubic', )),
    'down': ((1, 1), (0.5, 0.5), False, ('bicubic', 'lanczos3')),
    'up': ((0.5, 0.5), (1, 1), False, ('bicubic', )),
}


def _sizes(case, size):
    in_scale, out_scale = CASES[case][:2]
    return tuple(int(s * f) for s, f in zip(size, in_scale)), tuple(int(s * f) for s, f in zip(size, out_scale))


def _methods(case, size, reference=True):
    _, out_size = _sizes(case, size)
    antialias, kernels = CASES[case][2:]
    methods = {}
    if reference:
        methods['resize_right'] = lambda x: resize_reference(x, out_size, 'bicubic', antialias)
    for kernel in kernels:
        methods[f'basicsr_lmar.resize {kernel}'] = lambda x, k=kernel: resize(x, out_size, k, antialias)
    methods['F.interpolate'] = lambda x: F.interpolate(x, size=out_size, mode='bicubic', antialias=antialias,
                                                       align_corners=False)
    return methods


def _status_mib(field):
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f'{field} missing from /proc/self/status')


def measure_memory(case, method, threads, size):
    """Runs in a subprocess: prints the max-RSS growth (MiB) of one call, input already allocated."""
    torch.set_num_threads(threads)
    in_size, _ = _sizes(case, size)
    x = torch.rand(1, 3, *in_size)
    fn = _methods(case, size)[method]
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
    parser.add_argument('--size', type=int, nargs=2, default=(2160, 3840), help='the large size of the cases')
    parser.add_argument('--cases', nargs='+', choices=list(CASES), default=list(CASES))
    parser.add_argument('--skip-reference', action='store_true', help='leave resize_right out (it is ~10x slower)')
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--backward', action='store_true',
                        help='also time forward + backward (gradient w.r.t. the input) of ours vs F.interpolate')
    parser.add_argument('--_memory', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(args.size)
    if args._memory:
        return measure_memory(*args._memory, args.threads, size)
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, float32, median of {args.repeats} '
          'interleaved repeats')
    summary = []
    for case in args.cases:
        in_size, out_size = _sizes(case, size)
        antialias = CASES[case][2]
        x = torch.rand(1, 3, *in_size)
        methods = _methods(case, size, reference=not args.skip_reference)
        times = {name: [] for name in methods}
        cpu_times = {name: [] for name in methods}
        with torch.no_grad():
            errors = {}
            for name, fn in methods.items():
                result = fn(x)  # warm-up (builds and caches the operators)
                if name.startswith('basicsr_lmar'):
                    kernel = name.split()[-1]
                    errors[kernel] = (result - resize_reference(x, out_size, kernel, antialias)).abs().max().item()
            for _ in range(args.repeats):
                for name, fn in methods.items():
                    start, start_cpu = time.perf_counter(), time.process_time()
                    fn(x)
                    times[name].append(time.perf_counter() - start)
                    cpu_times[name].append(time.process_time() - start_cpu)
        median = {name: statistics.median(t) for name, t in times.items()}
        median_cpu = {name: statistics.median(t) for name, t in cpu_times.items()}
        parity = ', '.join(f'{kernel} {error:.1e}' for kernel, error in errors.items())
        print(f'\n{case}: {in_size[0]}x{in_size[1]} -> {out_size[0]}x{out_size[1]}, antialias={antialias}; '
              f'max |ours - resize_right| = {parity}')
        for name, seconds in median.items():
            line = (f'  {name:28s} {seconds * 1e3:8.1f} ms (min {min(times[name]) * 1e3:7.1f}), '
                    f'CPU {median_cpu[name] * 1e3:8.1f} ms')
            if not args.no_memory:
                result = subprocess.run([sys.executable, __file__, '--threads', str(args.threads), '--size', *map(
                    str, size), '--_memory', case, name], capture_output=True, text=True, check=True)
                memory = json.loads(result.stdout)
                line += f'   peak +{memory["peak_mib"]:6.0f} MiB (output {memory["output_mib"]:.0f} MiB)'
            print(line)
        base, base_cpu = median['F.interpolate'], median_cpu['F.interpolate']
        ratios = [f'{name.split()[-1]} / F.interpolate = {seconds / base:.2f}x (CPU time '
                  f'{median_cpu[name] / base_cpu:.2f}x)' for name, seconds in median.items()
                  if name.startswith('basicsr_lmar')]
        if 'resize_right' in median:
            ratios.append(f'resize_right / F.interpolate = {median["resize_right"] / base:.2f}x')
        print('  ratios: ' + ', '.join(ratios))
        summary.append(f'{case}: ' + ', '.join(ratios))
        if args.backward:
            _time_backward(x, methods, args.repeats)
    print('\nsummary (ours / F.interpolate, medians):\n  ' + '\n  '.join(summary))


def _time_backward(x, methods, repeats):
    x = x.clone().requires_grad_()
    names = [next(name for name in methods if name.startswith('basicsr_lmar')), 'F.interpolate']
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
