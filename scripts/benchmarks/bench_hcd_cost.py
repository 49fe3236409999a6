"""HCD cost on CPU: batched vs one-at-a-time throughput, and side by side with the authors' attack functions.

    python scripts/benchmarks/bench_hcd_cost.py --threads 1 2
    python scripts/benchmarks/bench_hcd_cost.py --threads 1 2 --skip-paper-irn --profile [--channels-last]
    python scripts/benchmarks/bench_hcd_cost.py --threads 1 --authors-code /tmp/hcd_authors --size 128

1. Batching: 4 images of 64x64 (the first four fixed crops of the test photos, ``heldout.TEST_CROPS``) refined
   with N_x = N_y = 15 in one batch vs one at a time, for three rescalers: the small IRN x4 that
   ``scripts/reproduce.py irn_x4`` trains (``--irn-weights``, default where it saves them), the paper's IRN x4
   (``[8, 8]``, growth 32) and bicubic down/up. No paper-size IRN is trained here and timing does not depend on
   the weights, so that one is randomly initialised and perturbed (its last convs start at zero);
   ``--random-weights`` does the same for the small one. Reports the throughput ratio and whether the stored
   8-bit LRs are identical (seed 0, z = 0).
2. ``--authors-code DIR``: DIR holds a module ``authors_code`` with the authors' IRN arch and their
   ``attack_pgd_sr`` / ``attack_pgd`` / ``Quantization`` / ``Model`` (from the authors' repository
   ``xubingna/HCD``, kept outside this one, with ``Model.gaussian_batch`` returning zeros: z = 0 as ours). One image of
   ``--size`` squared (chelsea) through the paper's IRN x4, N_x = N_y = ``--steps``, same global seed;
   prints both times, the ratio and how many stored LR values differ, and the cost model: F, one forward
   of down + up, and B, its backward to the input, timed on our net; per step ours costs F + B and the
   authors' checkpointed net 2F + B, so (F + B) / (2F + B) is the ratio expected at equal conv speed.

Everything is measured side by side in one process; ``--threads`` runs the whole table per thread count.
"""
import argparse
import importlib
import sys
import time

import numpy as np
import torch

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.irn_arch import InvRescaleNet
from basicsr_lmar.ops.collaborative_downscaling import collaborative_downscale
from basicsr_lmar.ops.rounding import quantize
from basicsr_lmar.registry import RESCALER_REGISTRY
from heldout import test_crops  # this folder
from reproduced import default_weights, load_network


def perturbed_irn(block_num, growth, seed=0):
    torch.manual_seed(seed)
    net = InvRescaleNet(scale=4, block_num=block_num, growth=growth).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.002)
    return net


def best_of(repeats, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def batching(label, rescaler, images, steps, repeats):
    collaborative_downscale(rescaler, images[:1], steps_hr=1, steps_lr=1, seed=0)  # warm-up
    kwargs = dict(steps_hr=steps, steps_lr=steps, seed=0)
    one, singles = best_of(repeats, lambda: [collaborative_downscale(rescaler, im[None], **kwargs) for im in images])
    together_s, together = best_of(repeats, lambda: collaborative_downscale(rescaler, images, **kwargs))
    levels = [(together.lr[i] - singles[i].lr[0]).abs() * 255 for i in range(len(images))]
    same = sum(int(float(d.max()) < 0.5) for d in levels)
    print(f'| {label} | {torch.get_num_threads()} | {one:.2f} s | {together_s:.2f} s | {one / together_s:.2f}x | '
          f'{same}/{len(images)} |', flush=True)


def conv_profile(rescaler, images, steps):
    """Where the small IRN's time goes, one at a time vs batched: the torch profiler's self CPU time of the
    convolutions (forward: oneDNN and PyTorch's own ``_slow_conv2d``; backward to the input), per image."""
    from torch.profiler import ProfilerActivity, profile
    kwargs = dict(steps_hr=steps, steps_lr=steps, seed=0)
    runs = (('one at a time', lambda: [collaborative_downscale(rescaler, im[None], **kwargs) for im in images]),
            ('batched', lambda: collaborative_downscale(rescaler, images, **kwargs)))
    collaborative_downscale(rescaler, images[:1], steps_hr=1, steps_lr=1, seed=0)  # warm-up
    for label, run in runs:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        events = {event.key: event for event in prof.key_averages()}

        def self_ms(*names):
            return sum(events[name].self_cpu_time_total for name in names if name in events) / 1e3 / len(images)

        forward = self_ms('aten::mkldnn_convolution', 'aten::_slow_conv2d_forward')
        backward = self_ms('aten::convolution_backward', 'aten::_slow_conv2d_backward')
        total = sum(event.self_cpu_time_total for event in events.values()) / 1e3 / len(images)
        slow = events['aten::_slow_conv2d_forward'].count if 'aten::_slow_conv2d_forward' in events else 0
        calls = slow + (events['aten::mkldnn_convolution'].count if 'aten::mkldnn_convolution' in events else 0)
        print(f'| {label} | {torch.get_num_threads()} | {forward:.0f} ms | {backward:.0f} ms | {total:.0f} ms | '
              f'{(forward + backward) / total:.0%} | {slow} of {calls} |', flush=True)


def side_by_side(authors_dir, size, steps):
    sys.path.insert(0, authors_dir)
    authors = importlib.import_module('authors_code')
    from basicsr_lmar.checkpoints.irn import convert_official_irn_state_dict
    torch.manual_seed(0)
    theirs = authors.InvRescaleNet(3, 3, lambda i, o: authors.DenseBlock(i, o), [8, 8], 2)
    with torch.no_grad():  # a non-trivial net: perturb every weight (the last convs start at zero)
        for name, p in theirs.named_parameters():
            if 'haar' not in name:
                p.add_(torch.randn_like(p) * 0.002)
    state, options = convert_official_irn_state_dict(theirs.state_dict())
    ours = InvRescaleNet(**options).eval()
    ours.load_state_dict(state, strict=True)
    hr = test_crops(size)[0][1][None].contiguous()  # chelsea@60,120
    with torch.no_grad():
        forward_diff = float((ours(hr) - theirs(hr)).abs().max())
    model = authors.Model(theirs)
    h = size // 4

    def run_theirs():
        torch.manual_seed(123)
        hr_refined = authors.attack_pgd_sr(model, None, hr, 0.3, 20 / 255, steps, 1, 'l_2', h_old=h, w_old=h,
                                           scale=4).detach()
        lr = authors.attack_pgd(model, hr_refined, 0.3, 20 / 255, steps, 1, 'l_2', h_old=h, w_old=h, scale=4)
        return authors.Quantization()(lr.detach())

    rescaler = RESCALER_REGISTRY.get('IRNRescaler')(ours, z_policy='zero')

    def run_ours():
        torch.manual_seed(123)
        return collaborative_downscale(rescaler, hr, steps_hr=steps, steps_lr=steps, seed=None).lr

    # Where the time goes: one HR-stage objective (down, then up) as a plain forward, and forward +
    # backward to the input. Ours costs F + B per step; the authors' checkpointed net costs 2F + B (a
    # no-grad forward, then the forward again inside backward), so (F + B) / (2F + B) is what avoiding
    # their recomputation alone can give at the same conv speed.
    def objective_forward():
        with torch.no_grad():
            rescaler.upscale(rescaler.downscale(hr))

    def objective_forward_backward():
        image = hr.clone().requires_grad_(True)
        rescaler.upscale(rescaler.downscale(image)).sum().backward()

    objective_forward()
    forward_s, _ = best_of(3, objective_forward)
    forward_backward_s, _ = best_of(3, objective_forward_backward)
    backward_s = forward_backward_s - forward_s
    floor = (forward_s + backward_s) / (2 * forward_s + backward_s)
    their_s, their_lr = best_of(1, run_theirs)
    our_s, our_lr = best_of(1, run_ours)
    differ = int(((our_lr - their_lr).abs() * 255 > 0.5).sum())
    with torch.no_grad():
        psnr = [10 * np.log10(1 / float(((rescaler.upscale(quantize(lr)) - hr)**2).mean()))
                for lr in (their_lr, our_lr)]
    print(f"| {size}x{size} | {steps} | {torch.get_num_threads()} | {their_s:.1f} s | {our_s:.1f} s | "
          f'{our_s / their_s:.2f} | {differ} of {our_lr.numel()} | {forward_diff:.1e} | '
          f'{psnr[0]:.3f} / {psnr[1]:.3f} | {forward_s:.2f} s / {backward_s:.2f} s | {floor:.2f} |', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--threads', type=int, nargs='+', default=[1])
    parser.add_argument('--steps', type=int, default=15, help='N_x = N_y')
    parser.add_argument('--repeats', type=int, default=3, help='best of, for the batching table')
    parser.add_argument('--skip-batching', action='store_true')
    parser.add_argument('--skip-paper-irn', action='store_true', help='batching: leave out the [8, 8] IRN (slow)')
    parser.add_argument('--channels-last', action='store_true',
                        help='batching: the IRNs and the images in channels-last memory format')
    parser.add_argument('--profile', action='store_true',
                        help='batching: also profile the small IRN (convolution time per image, one at a time vs '
                             'batched)')
    parser.add_argument('--irn-weights', metavar='PATH', default=default_weights('irn_x4.yml'),
                        help='the small IRN x4 (default: where scripts/reproduce.py irn_x4 saves it)')
    parser.add_argument('--random-weights', action='store_true',
                        help='a randomly initialised small IRN instead (timing does not depend on the weights)')
    parser.add_argument('--authors-code', help="folder with authors_code.py (the authors' functions)")
    parser.add_argument('--size', type=int, default=128, help='image side for the side-by-side run')
    args = parser.parse_args(argv)
    print(f'torch {torch.__version__}')
    if not args.skip_batching:
        images = torch.stack([hr for _, hr in test_crops(64)[:4]]).contiguous()
        memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
        images = images.contiguous(memory_format=memory_format)

        def irn(net):
            return RESCALER_REGISTRY.get('IRNRescaler')(net.to(memory_format=memory_format), z_policy='zero')

        small = perturbed_irn([1, 1], 16) if args.random_weights else load_network(
            'irn_x4.yml', args.irn_weights, '--irn-weights', 'irn_x4')
        trained = 'random' if args.random_weights else 'trained'
        rescalers = [(f'IRN x4 small ([1, 1], growth 16, {trained})', irn(small))]
        if not args.skip_paper_irn:
            rescalers.append(('IRN x4 paper ([8, 8], growth 32, random)', irn(perturbed_irn([8, 8], 32))))
        rescalers.append(('bicubic down / up x4', RESCALER_REGISTRY.get('BicubicSRRescaler')(None, scale=4)))
        layout = ', channels-last' if args.channels_last else ''
        print(f'\n4 images of 64x64{layout}, N_x = N_y = {args.steps}, best of {args.repeats}\n')
        print('| rescaler | threads | one at a time | batched | throughput ratio | stored LR identical |')
        print('|---|---|---|---|---|---|')
        for threads in args.threads:
            torch.set_num_threads(threads)
            for label, rescaler in rescalers:
                batching(label, rescaler, images, args.steps, args.repeats)
        if args.profile:
            print(f'\nSmall IRN, convolution self CPU time per image (torch profiler), N_x = N_y = {args.steps}\n')
            print('| run | threads | conv forward | conv input gradient | all ops | conv share | '
                  'forward convs on _slow_conv2d |')
            print('|---|---|---|---|---|---|---|')
            for threads in args.threads:
                torch.set_num_threads(threads)
                conv_profile(rescalers[0][1], images, args.steps)
    if args.authors_code:
        print("\nSide by side with the authors' attack functions (paper IRN x4, z = 0, same global seed)\n")
        print("| image | N | threads | theirs | ours | ours / theirs | stored LR values differing | "
              "forward max diff | RGB PSNR theirs / ours | our F / B (down+up) | (F+B)/(2F+B) |")
        print('|---|---|---|---|---|---|---|---|---|---|---|')
        for threads in args.threads:
            torch.set_num_threads(threads)
            side_by_side(args.authors_code, args.size, args.steps)


if __name__ == '__main__':
    from basicsr_lmar.cli.errors import run_main

    run_main(main)
