"""HCD with the per-image stopping rule vs the paper's fixed N = 15: time ratio and gain difference, side by side.

    # the networks: python scripts/reproduce.py irn_x4 hcflow_x4 (their weights are the defaults below)
    # choose the rule on the validation split (a grid of rules):
    python scripts/benchmarks/bench_hcd_stopping.py --split validation --grid --crops-per-image 8
    # time the chosen rule (collaborative_downscaling.RECOMMENDED_STOP) on the test split:
    python scripts/benchmarks/bench_hcd_stopping.py --split test --rescalers irn hcflow

Rescalers (``--rescalers``, default ``irn hcflow``; or ``car``):

- ``irn``: the small IRN x4 of ``scripts/reproduce.py irn_x4`` (``options/repro/irn_x4.yml``), z = 0 as there;
  ``--irn-weights PATH`` (default: where that run saves it);
- ``hcflow``: the small HCFlow x4 of ``scripts/reproduce.py hcflow_x4``, heat 0; ``--hcflow-weights PATH``;
- ``car``: the CAR x4 trained under bicubic upscaling of ``scripts/reproduce.py car_bicubic_x4`` (the paper's
  clamped head, ``options/repro/car_bicubic_x4_clamped.yml``), bicubic up; ``--car-weights PATH``.

Images: 128x128 crops (``--size``). Test split: the six fixed crops of the test photos (``heldout.TEST_CROPS``);
validation split and ``--heldout DIR``: two crops per image at fixed relative positions (``crop_positions``),
``--crops-per-image K`` (up to 8) for a larger set.

Per rescaler, in one process, the fixed-N run (paper defaults: l2, eps 0.3, alpha 20/255, seed 0, last
iterate) and the stopping run (same, with the rule; at most N steps per stage) are timed alternately,
``--repeats`` times each, best time kept, in two modes: one image at a time (batch 1, as HCDModel's default
test loader) and all crops in one batch (the images that stop leave the batch). Printed: mean PSNR-Y gain
(crop border 4, on the stored 8-bit LR) of both, their difference, the time ratio, the mean gradient steps
per stage, and fixed N = 5 for reference. ``--grid`` also runs a grid of rules (batched, one timing) to choose
from; ``--n-curve`` the gain of fixed N for several N (what any rule that stops by N steps can reach). The gains
of the chosen rule on the whole test photos are a figure of ``scripts/reproduce.py hcd_irn_x4`` /
``hcd_hcflow_x4`` (docs/results.md).
"""
import argparse
import os.path as osp
import subprocess
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from basicsr.metrics import calculate_psnr  # noqa: E402
from basicsr.utils import tensor2img  # noqa: E402

import basicsr_lmar  # noqa: F401,E402
from basicsr_lmar.ops.collaborative_downscaling import RECOMMENDED_STOP, collaborative_downscale  # noqa: E402
from basicsr_lmar.ops.rounding import quantize  # noqa: E402
from basicsr_lmar.registry import RESCALER_REGISTRY  # noqa: E402
from heldout import add_heldout_arguments, evaluation_images, test_crops  # noqa: E402
from reproduced import default_weights, load_network  # noqa: E402

FIXED = dict(epsilon=0.3, step_size=20 / 255, norm='l2', seed=0)
# candidate rules for --grid (patience, tolerance, gain fraction, minimum steps): gain fractions with and without
# a minimum number of steps per stage, and a longer window
GRID = [(1, None, f, m) for m in (0, 3, 4, 5, 6) for f in (0.05, 0.1, 0.2)] + \
       [(2, None, f, m) for m in (0, 4, 5) for f in (0.1, 0.2)]
# top-left corners of the crops, as fractions of the free range: the first two are the default (two per image)
CROP_FRACTIONS = ((0.25, 0.3), (0.6, 0.65), (0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.25, 0.9))


def crop_positions(height, width, size, count=2):
    """``count`` fixed crops per image (``CROP_FRACTIONS``; two: at ~1/4 and ~3/5 of the free range), or none
    when the image is smaller than ``size``."""
    if height < size or width < size:
        return []
    return sorted({(int(round(fy * (height - size))), int(round(fx * (width - size))))
                   for fy, fx in CROP_FRACTIONS[:count]})


def to_tensor(image):
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def psnr_y(output, gt, border=4):
    return calculate_psnr(tensor2img([output]), tensor2img([gt]), crop_border=border, test_y_channel=True)


def base_psnr(rescaler, hr):
    with torch.no_grad():
        return psnr_y(rescaler.upscale(quantize(rescaler.downscale(hr))).clamp(0, 1), hr)


def benchmark_images(args):
    if not args.heldout and args.split == 'test' and args.size == 128 and args.crops_per_image == 2:
        return test_crops(128), 'test split: the six 128x128 crops of heldout.TEST_CROPS (chelsea, coffee)'
    photos, label = evaluation_images(args)
    if not args.heldout and args.split == 'test':
        label += ' (crops at crop_positions: --size is not 128 or --crops-per-image is not 2)'
    images = []
    for name, photo in photos:
        tensor = to_tensor(photo)
        positions = crop_positions(tensor.shape[1], tensor.shape[2], args.size, args.crops_per_image)
        if not positions:
            print(f'left out {name}: {tensor.shape[1]}x{tensor.shape[2]} is smaller than --size {args.size}')
        for y, x in positions:
            images.append((f'{name}@{y},{x}', tensor[:, y:y + args.size, x:x + args.size].contiguous()))
    if not images:
        raise SystemExit(f'bench_hcd_stopping: no image of {label} is at least {args.size}x{args.size}; '
                         'lower --size (a multiple of 8)')
    return images, f'{label}, {len(images)} crops of {args.size}x{args.size}'


# ---------------------------------------------------------------------------------------------- rescalers
def irn_rescaler(args):
    net = load_network('irn_x4.yml', args.irn_weights, '--irn-weights', 'irn_x4')
    print(f'IRN x4 from {args.irn_weights}', flush=True)
    return RESCALER_REGISTRY.get('IRNRescaler')(net, z_policy='zero', z_seed=0)


def hcflow_rescaler(args):
    net = load_network('hcflow_x4.yml', args.hcflow_weights, '--hcflow-weights', 'hcflow_x4')
    print(f'HCFlow x4 from {args.hcflow_weights}', flush=True)
    return RESCALER_REGISTRY.get('HCFlowRescaler')(net, heat=0.0)


def car_rescaler(args):
    net = load_network('car_bicubic_x4_clamped.yml', args.car_weights, '--car-weights', 'car_bicubic_x4')
    print(f'CAR x4 (bicubic upscaling) from {args.car_weights}', flush=True)
    return RESCALER_REGISTRY.get('CARRescaler')(net, None)


RESCALERS = {'irn': (irn_rescaler, 'small IRN x4, z = 0'), 'hcflow': (hcflow_rescaler, 'small HCFlow x4, heat 0'),
             'car': (car_rescaler, 'CAR x4 under bicubic upscaling')}


# ---------------------------------------------------------------------------------------------- measuring
def run(rescaler, batch, steps, rule):
    start = time.perf_counter()
    result = collaborative_downscale(rescaler, batch, steps_hr=steps, steps_lr=steps, **FIXED, **rule)
    return time.perf_counter() - start, result


def gains(rescaler, images, result_lrs, bases):
    with torch.no_grad():
        return [psnr_y(rescaler.upscale(lr[None]).clamp(0, 1), hr[None]) - base
                for (_, hr), lr, base in zip(images, result_lrs, bases)]


def measure(rescaler, images, arms, repeats, batched):
    """Per arm (name -> (steps, rule)): best time over ``repeats`` (arms interleaved), the gains and the mean
    gradient steps per stage. ``batched``: all images in one call, else one call per image."""
    stack = torch.stack([hr for _, hr in images])
    times = {name: float('inf') for name in arms}
    outputs = {}
    for _ in range(repeats):
        for name, (steps, rule) in arms.items():
            if batched:
                seconds, result = run(rescaler, stack, steps, rule)
                parts = [result]
            else:
                seconds, parts = 0.0, []
                for _, hr in images:
                    s, result = run(rescaler, hr[None], steps, rule)
                    seconds += s
                    parts.append(result)
            times[name] = min(times[name], seconds)
            outputs[name] = parts
    return times, outputs


def summarise(rescaler, images, bases, outputs):
    lrs = torch.cat([part.lr for part in outputs])
    steps_hr = torch.cat([part.gradient_steps_hr for part in outputs]).double().mean().item()
    steps_lr = torch.cat([part.gradient_steps_lr for part in outputs]).double().mean().item()
    return gains(rescaler, images, lrs, bases), steps_hr, steps_lr


def rule_label(rule):
    if not rule:
        return 'fixed'
    parts = [f'W={rule["stop_patience"]}']
    if rule.get('stop_min_steps'):
        parts.append(f'M={rule["stop_min_steps"]}')
    if rule.get('stop_tolerance') is not None:
        parts.append(f'tol={rule["stop_tolerance"]:g}')
    if rule.get('stop_gain_fraction') is not None:
        parts.append(f'frac={rule["stop_gain_fraction"]:g}')
    return ' '.join(parts)


def side_by_side(label, rescaler, images, rule, repeats, steps):
    bases = [base_psnr(rescaler, hr[None]) for _, hr in images]
    collaborative_downscale(rescaler, images[0][1][None], steps_hr=1, steps_lr=1, seed=0)  # warm-up
    arms = {f'fixed N={steps}': (steps, {}), f'stopping ({rule_label(rule)}, N<={steps})': (steps, rule),
            'fixed N=5': (5, {})}
    rows = {}
    for mode, batched in (('one image at a time', False), (f'batch of {len(images)}', True)):
        times, outputs = measure(rescaler, images, arms, repeats, batched)
        for name in arms:
            rows[(mode, name)] = (times[name], ) + summarise(rescaler, images, bases, outputs[name])
    fixed_name, stop_name = list(arms)[:2]
    print(f'\n### {label}\n')
    print('| mode | arm | mean gain (dB) | min gain (dB) | gain - fixed (dB) | time (s) | time ratio | '
          'mean steps HR / LR |')
    print('|---|---|---|---|---|---|---|---|')
    summary = {}
    for mode in ('one image at a time', f'batch of {len(images)}'):
        base_time, base_gains = rows[(mode, fixed_name)][0], rows[(mode, fixed_name)][1]
        for name in arms:
            seconds, g, shr, slr = rows[(mode, name)]
            print(f'| {mode} | {name} | {np.mean(g):+.3f} | {np.min(g):+.3f} | {np.mean(g) - np.mean(base_gains):+.3f} '
                  f'| {seconds:.2f} | {seconds / base_time:.2f} | {shr:.1f} / {slr:.1f} |')
        seconds, g, shr, slr = rows[(mode, stop_name)]
        summary[mode] = (seconds / base_time, np.mean(g) - np.mean(base_gains), shr, slr)
    stop_gains = rows[('one image at a time', stop_name)][1]
    print('\nper image (one at a time): ' + ', '.join(
        f'{name} {fixed:+.3f}/{stop:+.3f}' for (name, _), fixed, stop in
        zip(images, rows[('one image at a time', fixed_name)][1], stop_gains)) + ' (fixed/stopping gain, dB)')
    for mode, (ratio, difference, _, _) in summary.items():
        print(f'{label}, {mode}: stopping / fixed N={steps} time ratio {ratio:.2f}, gain difference '
              f'{difference:+.3f} dB')
    return summary


def parse_rule(text):
    """``'W=3,f=0.02'`` / ``'W=1,M=5,f=0.1'`` / ``'W=2,t=0.003'`` -> a GRID entry (patience, tolerance, fraction,
    minimum steps)."""
    fields = {'W': None, 't': None, 'f': None, 'M': 0}
    for part in text.split(','):
        key, _, value = part.partition('=')
        if key.strip() not in fields or not value:
            raise argparse.ArgumentTypeError(f'--rules: {part!r} in {text!r} is not W=<int>, M=<int>, f=<fraction> or '
                                             't=<tolerance>, e.g. W=3,f=0.02')
        fields[key.strip()] = (int if key.strip() in 'WM' else float)(value)
    if fields['W'] is None or (fields['t'] is None and fields['f'] is None):
        raise argparse.ArgumentTypeError(f'--rules: {text!r} needs W=<window> and f=<fraction> and/or t=<tolerance>')
    return fields['W'], fields['t'], fields['f'], fields['M']


def grid(label, rescaler, images, steps, rules=GRID):
    """Every rule of ``rules`` (GRID) on the batch (one timing each; the gains are exact, the times indicative)."""
    bases = [base_psnr(rescaler, hr[None]) for _, hr in images]
    stack = torch.stack([hr for _, hr in images])
    collaborative_downscale(rescaler, stack[:1], steps_hr=1, steps_lr=1, seed=0)
    fixed_time, fixed = run(rescaler, stack, steps, {})
    fixed_gain = np.mean(gains(rescaler, images, fixed.lr, bases))
    print(f'\n### {label}: rules on the batch of {len(images)} (fixed N={steps}: {fixed_gain:+.3f} dB, '
          f'{fixed_time:.2f} s)\n')
    print('| rule | mean gain (dB) | gain - fixed (dB) | steps ratio (HR+LR) | time ratio |')
    print('|---|---|---|---|---|')
    for patience, tolerance, fraction, min_steps in rules:
        rule = dict(stop_patience=patience, stop_tolerance=tolerance, stop_gain_fraction=fraction,
                    stop_min_steps=min_steps)
        seconds, result = run(rescaler, stack, steps, rule)
        g = np.mean(gains(rescaler, images, result.lr, bases))
        used = (result.gradient_steps_hr + result.gradient_steps_lr).double().mean().item() / (2 * steps)
        print(f'| {rule_label(rule)} | {g:+.3f} | {g - fixed_gain:+.3f} | {used:.2f} | {seconds / fixed_time:.2f} |',
              flush=True)


def n_curve(label, rescaler, images, n_values, steps):
    """Mean gain of fixed N (last and best iterate) for each N, on the batch: what any rule that stops by N
    steps can reach on these images (time ~ N / steps of the fixed run)."""
    bases = [base_psnr(rescaler, hr[None]) for _, hr in images]
    stack = torch.stack([hr for _, hr in images])
    _, fixed = run(rescaler, stack, steps, {})
    reference = np.mean(gains(rescaler, images, fixed.lr, bases))
    print(f'\n### {label}: fixed N on the batch of {len(images)} (fixed N={steps}: {reference:+.3f} dB)\n')
    print('| N | mean gain, last iterate (dB) | - fixed N=15 | mean gain, best iterate (dB) | - fixed N=15 |')
    print('|---|---|---|---|---|')
    for n in n_values:
        _, last = run(rescaler, stack, n, {})
        _, best = run(rescaler, stack, n, {'stop_tolerance': 0.0})  # a rule that never fires: best iterate
        g_last, g_best = (np.mean(gains(rescaler, images, r.lr, bases)) for r in (last, best))
        print(f'| {n} | {g_last:+.3f} | {g_last - reference:+.3f} | {g_best:+.3f} | {g_best - reference:+.3f} |',
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_heldout_arguments(parser)
    parser.add_argument('--rescalers', nargs='+', default=['irn', 'hcflow'], choices=tuple(RESCALERS))
    parser.add_argument('--size', type=int, default=128, help='crop size (a multiple of 8)')
    parser.add_argument('--steps', type=int, default=15, help='N of the fixed arm and the cap of the stopping arm')
    parser.add_argument('--stop-patience', type=int, default=RECOMMENDED_STOP['stop_patience'])
    parser.add_argument('--stop-tolerance', type=float, default=RECOMMENDED_STOP['stop_tolerance'])
    parser.add_argument('--stop-gain-fraction', type=float, default=RECOMMENDED_STOP['stop_gain_fraction'])
    parser.add_argument('--stop-min-steps', type=int, default=RECOMMENDED_STOP['stop_min_steps'])
    parser.add_argument('--crops-per-image', type=int, default=2, choices=range(1, len(CROP_FRACTIONS) + 1),
                        metavar=f'1..{len(CROP_FRACTIONS)}',
                        help='crops per image of the validation split / --heldout (CROP_FRACTIONS; default 2)')
    parser.add_argument('--grid', action='store_true', help='also evaluate the grid of candidate rules (GRID)')
    parser.add_argument('--rules', type=parse_rule, nargs='+', metavar='W=..,f=..',
                        help='the rules of --grid instead of GRID, e.g. W=3,f=0.02 W=1,M=5,f=0.1 W=2,t=0.003')
    parser.add_argument('--no-side-by-side', action='store_true', help='only the grid / the N curve')
    parser.add_argument('--n-curve', type=int, nargs='+', metavar='N',
                        help='also the mean gain of fixed N for these N (last and best iterate)')
    parser.add_argument('--repeats', type=int, default=2, help='timings per arm (interleaved), best kept')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--irn-weights', metavar='PATH', default=default_weights('irn_x4.yml'),
                        help='the small IRN x4 (default: where scripts/reproduce.py irn_x4 saves it)')
    parser.add_argument('--hcflow-weights', metavar='PATH', default=default_weights('hcflow_x4.yml'),
                        help='the small HCFlow x4 (default: where scripts/reproduce.py hcflow_x4 saves it)')
    parser.add_argument('--car-weights', metavar='PATH', default=default_weights('car_bicubic_x4_clamped.yml'),
                        help='the CAR x4 under bicubic upscaling (default: where scripts/reproduce.py car_bicubic_x4 '
                        'saves it)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rule = dict(stop_patience=args.stop_patience, stop_tolerance=args.stop_tolerance,
                stop_gain_fraction=args.stop_gain_fraction, stop_min_steps=args.stop_min_steps)
    images, label = benchmark_images(args)
    load = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    print(f'torch {torch.__version__}, {args.threads} thread(s); images: {label}; rule {rule_label(rule)}; '
          f'uptime: {load}', flush=True)
    summaries = {}
    rescalers = {name: RESCALERS[name][0](args) for name in args.rescalers}  # every network before any timing
    for name, rescaler in rescalers.items():
        label = RESCALERS[name][1]
        if args.grid:
            grid(label, rescaler, images, args.steps, args.rules or GRID)
        if args.n_curve:
            n_curve(label, rescaler, images, args.n_curve, args.steps)
        if not args.no_side_by_side:
            summaries[name] = side_by_side(label, rescaler, images, rule, args.repeats, args.steps)
    load = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    print(f'\nuptime at the end: {load}')
    if summaries:
        print('\n| rescaler | mode | time ratio | gain difference (dB) |\n|---|---|---|---|')
        for name, summary in summaries.items():
            for mode, (ratio, difference, _, _) in summary.items():
                print(f'| {name} | {mode} | {ratio:.2f} | {difference:+.3f} |')
    return summaries


if __name__ == '__main__':
    from basicsr_lmar.cli.errors import run_main

    run_main(main)
