"""Joint CAR + SR mini-reproduction (CAR, Sun & Chen, TIP 2020, Table 2) on CPU: a learned downscaler
trained with an SR network against bicubic downscaling + the same SR network.

Three arms, one SR architecture (basicsr's EDSR, reduced width), the same crops, seed and schedule:

* (a) the SR network on MATLAB-style antialiased bicubic LR (8-bit);
* (b) CAR (a reduced :class:`CARResamplerNet`) + the SR network trained jointly with the paper's losses
  (L1, the offset and partial-TV regularisers), soft 8-bit rounding in training, hard rounding at test;
* (c) CAR-dagger: a fresh SR network trained on the frozen CAR's 8-bit LR.

(a) and (b) both start from one SR network pre-trained on bicubic LR (``--pretrain-minutes``, cached with
``--cache DIR``). (b) runs for ``--minutes`` of process CPU time; (a) runs twice: for the iterations (b)
reached (equal iterations) and for the same CPU time (equal time); (c) trains from scratch for the same
CPU time as (b) (iterations with ``--iters``), without the pre-training (a) and (b) had. Each schedule is a
cosine decay over its own budget. Evaluation: per image Y-PSNR / SSIM (basicsr metrics, ``crop_border =
scale``) on ``--split`` or ``--heldout DIR`` (``--also-test`` adds the test split), and the kernels' content
adaptivity:

* spread: the per-element standard deviation of the kernels over the LR pixels of an image (within each
  phase of the network's pixel-shuffle, see :func:`adaptivity`), averaged over elements, divided by the mean
  weight 1/k^2 (a constant kernel gives 0, and so does a fixed periodic pattern);
* offset: the mean offset length in HR pixels.

Departure from the naive set-up: the kernel head keeps PyTorch's default
(kaiming-uniform) weights and only its bias starts at the box kernel (``--init-weight-scale 1``); a 1e-2 scale
made the kernels content-blind. ``--signed`` uses ``CARResamplerNet(signed_kernels=True)``.

Levers of (b): ``--lr-sr-joint`` sets the SR network's lr in
(b)'s joint phase only (a lower one keeps the pre-trained SR network close while the LR changes);
``--car-warmup F`` spends the first share F of (b)'s budget (CPU time, or ``--iters``) training the
ResamplerNet alone against the frozen pre-trained SR network (the SR parameters get no gradient), then the
rest jointly; the warm-up's time and iterations count toward (b), so (a) at equal time / equal iterations
gets (b)'s whole budget.

    python scripts/benchmarks/bench_car_joint.py --scale 4 --minutes 5 --pretrain-minutes 3 --cache /tmp/carj
    python scripts/benchmarks/bench_car_joint.py --quick          # seconds: the test's smoke run
    python scripts/benchmarks/bench_car_joint.py --profile        # where a CAR step's time goes
"""
import argparse
import copy
import hashlib
import json
import math
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
from basicsr.archs.edsr_arch import EDSR

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from bench_car_quality import bicubic_downscale, initial_kernel, random_crops, to_tensor, y_metrics  # noqa: E402
from heldout import add_heldout_arguments, evaluation_images  # noqa: E402

from basicsr_lmar.archs.car_arch import DIV2K_RGB_MEAN, CARResamplerNet  # noqa: E402
from basicsr_lmar.data.skimage_photos import TRAIN_PHOTOS, load_photo, photo_names  # noqa: E402
from basicsr_lmar.losses.car_loss import CAROffsetLoss, PartialTVLoss  # noqa: E402
from basicsr_lmar.ops.rounding import quantize_8bit  # noqa: E402


def build_sr(args):
    feat, blocks = args.sr_width
    return EDSR(3, 3, num_feat=feat, num_block=blocks, upscale=args.scale, img_range=1., rgb_mean=DIV2K_RGB_MEAN)


def car_options(args):
    head, body, top, blocks = args.car_width
    return dict(type='CARResamplerNet', scale=args.scale, num_feat=head, body_feat=body, top_feat=top,
                num_block=blocks, impl=args.op_impl, signed_kernels=args.signed)


def build_car(args):
    net = CARResamplerNet(**{k: v for k, v in car_options(args).items() if k != 'type'})
    with torch.no_grad():  # the bias of the kernel head at the box kernel, its weights PyTorch's or scaled
        last = net.kernel_head[-1]
        last.weight.mul_(args.init_weight_scale)
        box = initial_kernel('box', args.scale, floor=1e-3)
        last.bias.copy_(box / box.sum() if args.signed else box)  # signed: the shift keeps a sum-1 bias
        for head in (net.offset_h_head, net.offset_v_head):
            head[-2].weight.mul_(args.init_weight_scale)
            head[-2].bias.zero_()
    return net


def bicubic_lr(hr, scale):
    return quantize_8bit(bicubic_downscale(hr, scale).clamp(0, 1), 'round')


class Schedule:
    """Cosine decay over a budget of CPU seconds or of iterations (whichever is given)."""

    def __init__(self, seconds=None, iterations=None):
        self.seconds, self.iterations = seconds, iterations
        self.start, self.done = time.process_time(), 0

    def progress(self):
        if self.iterations is not None:
            return self.done / self.iterations if self.iterations > 0 else 1.0
        return (time.process_time() - self.start) / max(self.seconds, 1e-9)

    def running(self):
        return self.progress() < 1

    def factor(self):
        return 0.5 * (1 + math.cos(math.pi * min(self.progress(), 1.0)))

    def cpu(self):
        return time.process_time() - self.start


def run_schedule(optimizer, schedule, batch_loss, label):
    """Adam steps on ``batch_loss()`` until ``schedule`` ends, each group's learning rate cosine-decayed from
    its initial value; returns (iterations, CPU seconds)."""
    bases = [group['lr'] for group in optimizer.param_groups]
    while schedule.running():
        for group, base in zip(optimizer.param_groups, bases):
            group['lr'] = base * schedule.factor()
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.done += 1
        log(label, schedule, float(loss.detach()))
    return schedule.done, schedule.cpu()


def train_sr(sr, train, args, schedule, lr_of, label):
    """SR training on ``lr_of(hr)`` (the LR of an arm, computed without gradient)."""
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.Adam(sr.parameters(), lr=args.lr_sr, betas=(0.9, 0.99))
    sr.train()

    def batch_loss():
        hr = random_crops(train, args.crop, args.batch, generator)
        with torch.no_grad():
            lr = lr_of(hr)
        return (sr(lr) - hr).abs().mean()

    return run_schedule(optimizer, schedule, batch_loss, label)


def train_joint(car, sr, train, args, schedule, label='(b)', generator=None, train_sr_too=True):
    """(b)'s steps: CAR and the SR network on the joint loss, the SR network at ``--lr-sr-joint`` (default
    ``--lr-sr``); with ``train_sr_too=False`` (the ``--car-warmup`` phase) the ResamplerNet alone against the
    frozen SR network (its parameters get no gradient, only the LR does)."""
    generator = generator or torch.Generator().manual_seed(args.seed)
    offset_loss, tv_loss = CAROffsetLoss(loss_weight=args.offset_weight), PartialTVLoss(loss_weight=args.tv_weight)
    groups = [{'params': car.parameters(), 'lr': args.lr_car}]
    if train_sr_too:
        lr_sr = args.lr_sr if args.lr_sr_joint is None else args.lr_sr_joint
        groups.append({'params': sr.parameters(), 'lr': lr_sr})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99))
    car.train(), sr.train()
    sr.requires_grad_(train_sr_too)

    def batch_loss():
        hr = random_crops(train, args.crop, args.batch, generator)
        return joint_loss(car, sr, hr, args, offset_loss, tv_loss)

    try:
        return run_schedule(optimizer, schedule, batch_loss, label)
    finally:
        sr.requires_grad_(True)


def train_b(car, sr, train, args):
    """Arm (b) within one budget (``--minutes`` of CPU time, or ``--iters``): first ``--car-warmup`` of it
    CAR alone against the frozen pre-trained SR network, then the rest jointly, each phase with its own cosine
    decay. Returns (warm-up iterations, all iterations, all CPU seconds)."""
    generator = torch.Generator().manual_seed(args.seed)  # one crop stream over both phases
    seconds = None if args.iters is not None else args.minutes * 60
    warm_iters = warm_cpu = 0
    if args.car_warmup > 0:
        warm = Schedule(None if seconds is None else seconds * args.car_warmup,
                        None if args.iters is None else round(args.iters * args.car_warmup))
        warm_iters, warm_cpu = train_joint(car, sr, train, args, warm, '(b) CAR warm-up', generator, False)
    joint = Schedule(None if seconds is None else seconds - warm_cpu,
                     None if args.iters is None else args.iters - warm_iters)
    iters, cpu = train_joint(car, sr, train, args, joint, '(b)', generator)
    return warm_iters, warm_iters + iters, warm_cpu + cpu


def joint_loss(car, sr, hr, args, offset_loss, tv_loss):
    maps = car(hr)
    lr = car.apply_maps(hr, maps, 'soft', args.alpha)
    return (sr(lr) - hr).abs().mean() + offset_loss(maps[1], maps[2]) + tv_loss(*maps)


def log(label, schedule, loss):
    if schedule.done % 100 == 0:
        print(f'  {label} iter {schedule.done:5d}  cpu {schedule.cpu():6.0f}s  loss {loss:.4f}', flush=True)


def crop_to(hr, multiple):
    height, width = hr.shape[-2:]
    return hr[..., :height - height % multiple, :width - width % multiple]


def adaptivity(kernels, offsets_h, offsets_v, scale, period=None):
    """(spread, offset length in HR pixels) of one image's maps (see the module docstring).

    The spread is taken within each phase of the branches' pixel-shuffle (``period = 8 / scale`` LR pixels,
    2 at x4, 4 at x2): a network that ignores the content still makes a fixed periodic pattern there (a
    checkerboard at initialisation), which is not adaptation."""
    period = period or max(8 // scale, 1)
    n, elements, height, width = kernels.shape
    height, width = height - height % period, width - width % period
    phases = kernels[..., :height, :width].reshape(n, elements, height // period, period, width // period, period)
    spread = phases.permute(0, 1, 3, 5, 2, 4).flatten(4).std(4).mean() * elements
    length = (offsets_h.square() + offsets_v.square()).sqrt().mean() * scale
    return float(spread), float(length)


def centre_of_mass(kernels, offsets_h, offsets_v, scale):
    """Per LR pixel, the kernel-weighted mean sample position relative to the pixel's centre (HR pixels)."""
    k = int(round(kernels.shape[1]**0.5))
    index = torch.arange(k, dtype=kernels.dtype) - k // 2
    dx = index.repeat(k).view(1, -1, 1, 1) + offsets_h * scale
    dy = index.repeat_interleave(k).view(1, -1, 1, 1) + offsets_v * scale
    return (kernels * dx).sum(1), (kernels * dy).sum(1)


@torch.no_grad()
def evaluate(images, scale, sr, car=None, lr_fn=None):
    """Per image ``(name, psnr, ssim, spread, offset)``; ``car`` gives the LR (8-bit) when set."""
    sr.eval()
    rows = []
    for name, hr in images:
        if car is not None:
            car.eval()
            maps = car(hr)
            lr = car.apply_maps(hr, maps, 'round')
            spread, offset = adaptivity(*maps, scale)
        else:
            lr = (lr_fn or bicubic_lr)(hr, scale)
            spread = offset = float('nan')
        psnr, ssim = y_metrics(sr(lr).clamp(0, 1), hr, scale)
        rows.append((name, psnr, ssim, spread, offset))
    return rows


def load_images(args, multiple):
    images, label = evaluation_images(args)
    sets = [(label, [(name, crop_to(to_tensor(image), multiple)) for name, image in images])]
    if args.also_test and (args.heldout or args.split != 'test'):
        sets.append(('test split', [(n, crop_to(to_tensor(load_photo(n)), multiple)) for n in photo_names('test')]))
    if args.quick:  # a corner of each image: the smoke run checks the plumbing, not the figures
        sets = [(label, [(n, hr[..., :64, :64]) for n, hr in imgs]) for label, imgs in sets]
    return sets


def pretrained_sr(train, args):
    key = {k: getattr(args, k) for k in ('scale', 'sr_width', 'crop', 'batch', 'lr_sr', 'seed', 'pretrain_minutes',
                                         'pretrain_iters')}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    path = osp.join(args.cache, f'sr_pretrain_x{args.scale}_{digest}.pt') if args.cache else None
    sr = build_sr(args)
    if path and osp.isfile(path):
        saved = torch.load(path, weights_only=True)
        sr.load_state_dict(saved['params'])
        print(f'pre-trained SR from the cache {path} ({saved["iterations"]} iterations)', flush=True)
        return sr, int(saved['iterations']), float(saved['cpu'])
    torch.manual_seed(args.seed)
    sr = build_sr(args)
    schedule = Schedule(args.pretrain_minutes * 60, args.pretrain_iters)
    iterations, cpu = train_sr(sr, train, args, schedule, lambda hr: bicubic_lr(hr, args.scale), 'pretrain')
    if path:
        os.makedirs(args.cache, exist_ok=True)
        torch.save({'params': sr.state_dict(), 'iterations': iterations, 'cpu': cpu}, path)
    return sr, iterations, cpu


def profile_step(train, args):
    """Where one joint step's CPU time goes: the ResamplerNet, the op, EDSR, the backward."""
    car, sr = build_car(args), build_sr(args)
    generator = torch.Generator().manual_seed(args.seed)
    offset_loss, tv_loss = CAROffsetLoss(loss_weight=args.offset_weight), PartialTVLoss(loss_weight=args.tv_weight)
    hr = random_crops(train, args.crop, args.batch, generator)
    parts = {}

    def timed(name, fn, repeats=3):
        fn()
        start = time.process_time()
        for _ in range(repeats):
            fn()
        parts[name] = (time.process_time() - start) / repeats
    timed('ResamplerNet forward', lambda: car(hr))
    maps = [m.detach().requires_grad_() for m in car(hr)]
    timed('adaptive_resample forward', lambda: car.apply_maps(hr, maps, 'soft'))
    lr = car.apply_maps(hr, maps, 'soft').detach()
    timed('EDSR forward', lambda: sr(lr))
    timed('EDSR step (fwd+bwd, bicubic LR)', lambda: (sr(lr) - hr).abs().mean().backward())
    timed('adaptive_resample fwd+bwd', lambda: car.apply_maps(hr, maps, 'soft').sum().backward())
    timed('ResamplerNet fwd+bwd', lambda: sum(m.sum() for m in car(hr)).backward())
    timed('joint step (fwd+bwd)', lambda: joint_loss(car, sr, hr, args, offset_loss, tv_loss).backward())
    print(f'\nCPU seconds per call, crop {args.crop}, batch {args.batch}, x{args.scale}, op {args.op_impl}, '
          f'{torch.get_num_threads()} thread(s):\n')
    print('| part | CPU s | share of a joint step |\n|---|---|---|')
    for name, seconds in parts.items():
        print(f'| {name} | {seconds:.3f} | {seconds / parts["joint step (fwd+bwd)"]:.0%} |')


def table(title, arms, names):
    print(f'\n{title}\n')
    print('| image | ' + ' | '.join(f'{arm} Y-PSNR / SSIM' for arm in arms) + ' | (b) − (a) dB |')
    print('|---|' + '---|' * len(arms) + '---|')
    a_key, b_key = [k for k in arms if k.startswith('(a)')][-1], '(b) CAR+SR joint'
    for i, name in enumerate(names):
        cells = ' | '.join(f'{rows[i][1]:.2f} / {rows[i][2]:.4f}' for rows in arms.values())
        print(f'| {name} | {cells} | {arms[b_key][i][1] - arms[a_key][i][1]:+.2f} |')
    means = {arm: np.mean([r[1] for r in rows]) for arm, rows in arms.items()}
    print('| mean | ' + ' | '.join(f'{m:.2f}' for m in means.values()) + f' | {means[b_key] - means[a_key]:+.2f} |')
    improved = sum(arms[b_key][i][1] > arms[a_key][i][1] for i in range(len(names)))
    print(f'\n(b) beats {a_key} on {improved}/{len(names)} images; mean gain {means[b_key] - means[a_key]:+.3f} dB')
    return float(means[b_key] - means[a_key]), int(improved)


def save_figure(path, car, sr, name, hr, scale):
    """LR, SR, kernel centre-of-mass (x, y; minus its image mean, so that a constant shift does not hide the
    variation) and offset-length maps for one image."""
    from matplotlib.figure import Figure
    with torch.no_grad():
        car.eval(), sr.eval()
        maps = car(hr)
        lr = car.apply_maps(hr, maps, 'round')
        out = sr(lr).clamp(0, 1)
        com_x, com_y = centre_of_mass(*maps, scale)
        length = (maps[1].square() + maps[2].square()).sqrt().mean(1) * scale
    figure = Figure(figsize=(12, 3.2), dpi=80)
    com_x, com_y = com_x[0].numpy(), com_y[0].numpy()
    panels = [('CAR LR (8-bit)', lr[0].permute(1, 2, 0).numpy(), None), ('SR', out[0].permute(1, 2, 0).numpy(), None),
              (f'kernel centre of mass x\n− mean {com_x.mean():+.3f} HR px', com_x - com_x.mean(), 'coolwarm'),
              (f'centre of mass y\n− mean {com_y.mean():+.3f} HR px', com_y - com_y.mean(), 'coolwarm'),
              ('mean offset length (HR px)', length[0].numpy(), 'viridis')]
    for i, (title, image, cmap) in enumerate(panels):
        axis = figure.add_subplot(1, len(panels), i + 1)
        if cmap == 'coolwarm':
            bound = float(np.abs(image).max()) or 1.0
            shown = axis.imshow(image, cmap=cmap, vmin=-bound, vmax=bound)
        else:
            shown = axis.imshow(np.clip(image, 0, 1) if cmap is None else image, cmap=cmap)
        if cmap is not None:
            figure.colorbar(shown, ax=axis, fraction=0.046)
        axis.set_title(title, fontsize=8)
        axis.axis('off')
    figure.suptitle(f'{name}, x{scale}: CAR + SR joint (arm b)', fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    print(f'figure: {path}', flush=True)


def save_pair(prefix, car, sr, args):
    """``PREFIX_net_g.pth``, ``PREFIX_net_sr.pth`` (basicsr's ``params`` layout) and ``PREFIX.yml`` for
    ``scripts/car_rescale.py -opt PREFIX.yml --net-g PREFIX_net_g.pth --net-sr PREFIX_net_sr.pth``."""
    import yaml
    feat, blocks = args.sr_width
    torch.save({'params': car.state_dict()}, f'{prefix}_net_g.pth')
    torch.save({'params': sr.state_dict()}, f'{prefix}_net_sr.pth')
    options = {'name': osp.basename(prefix), 'model_type': 'CARModel', 'scale': args.scale, 'num_gpu': 0,
               'network_g': car_options(args),
               'network_sr': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': feat, 'num_block': blocks,
                              'upscale': args.scale, 'img_range': 1.0, 'rgb_mean': list(DIV2K_RGB_MEAN)},
               'path': {'pretrain_network_g': f'{prefix}_net_g.pth', 'pretrain_network_sr': f'{prefix}_net_sr.pth'}}
    with open(f'{prefix}.yml', 'w') as handle:
        yaml.safe_dump(options, handle, sort_keys=False)
    print(f'saved (b): {prefix}.yml, {prefix}_net_g.pth, {prefix}_net_sr.pth', flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=int, choices=(2, 4), default=4)
    parser.add_argument('--minutes', type=float, default=5.0, help='CPU minutes of (b), and of (a) at equal time')
    parser.add_argument('--pretrain-minutes', type=float, default=3.0, help='CPU minutes of the bicubic pre-training')
    parser.add_argument('--iters', type=int, help='iterations of (b) instead of --minutes (and (a) = (b))')
    parser.add_argument('--pretrain-iters', type=int, help='pre-training iterations instead of --pretrain-minutes')
    parser.add_argument('--quick', action='store_true', help='tiny networks and a few iterations (seconds)')
    parser.add_argument('--profile', action='store_true', help='time the parts of one joint step, then stop')
    parser.add_argument('--cache', metavar='DIR', help='keep / reuse the pre-trained SR network here')
    parser.add_argument('--skip-c', action='store_true', help='leave out arm (c)')
    parser.add_argument('--crop', type=int, default=64)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--sr-width', type=int, nargs=2, default=[32, 4], metavar=('FEAT', 'BLOCKS'))
    parser.add_argument('--car-width', type=int, nargs=4, default=[16, 32, 64, 2],
                        metavar=('HEAD', 'BODY', 'TOP', 'BLOCKS'), help='reduced ResamplerNet (full: 64 128 256 5)')
    parser.add_argument('--lr-sr', type=float, default=5e-4)
    parser.add_argument('--lr-car', type=float, default=1e-4)
    parser.add_argument('--lr-sr-joint', type=float,
                        help="SR lr in (b)'s joint phase (default --lr-sr; (a) and (c) always use --lr-sr)")
    parser.add_argument('--car-warmup', type=float, default=0.0, metavar='FRACTION',
                        help="share of (b)'s budget (CPU time, or --iters) spent training CAR alone against the "
                             'frozen pre-trained SR network before the joint phase; it counts toward (b)')
    parser.add_argument('--offset-weight', type=float, default=1e-5, help='lambda of CAROffsetLoss')
    parser.add_argument('--tv-weight', type=float, default=1e-3, help='gamma_tv of PartialTVLoss')
    parser.add_argument('--alpha', type=float, default=1.0, help='soft rounding strength')
    parser.add_argument('--init-weight-scale', type=float, default=1.0,
                        help="factor on the kernel/offset heads' last conv weights at the start (1: PyTorch's)")
    parser.add_argument('--signed', action='store_true', help='CARResamplerNet(signed_kernels=True)')
    parser.add_argument('--op-impl', choices=('auto', 'reference', 'chunked'), default='reference')
    parser.add_argument('--also-test', action='store_true', help='evaluate on the test split as well')
    parser.add_argument('--figure', metavar='PNG', help='LR / SR / centre-of-mass / offset maps of the first image')
    parser.add_argument('--save-weights', metavar='PREFIX', help="save (b)'s pair for scripts/car_rescale.py")
    parser.add_argument('--json', metavar='PATH', help='write the figures as JSON')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    add_heldout_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.crop, args.batch, args.sr_width, args.car_width = 32, 2, [8, 1], [4, 4, 8, 0]
        args.iters, args.pretrain_iters = args.iters or 3, args.pretrain_iters or 3
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    scale = args.scale
    train = [to_tensor(load_photo(name)) for name in TRAIN_PHOTOS]
    if args.profile:
        return profile_step(train, args)
    sets = load_images(args, math.lcm(8, scale))
    print(f'CAR joint x{scale}: EDSR {args.sr_width}, ResamplerNet {args.car_width} (signed {args.signed}), '
          f'crop {args.crop}, batch {args.batch}, lr sr {args.lr_sr} car {args.lr_car}, lambda {args.offset_weight}, '
          f'gamma_tv {args.tv_weight}, init weight scale {args.init_weight_scale}, lr sr joint {args.lr_sr_joint}, '
          f'CAR warm-up {args.car_warmup}, budget (b) '
          f'{args.iters or str(args.minutes) + " CPU min"}, pre-training {args.pretrain_iters or args.pretrain_minutes}'
          f', seed {args.seed}', flush=True)
    base, pre_iters, pre_cpu = pretrained_sr(train, args)
    pre_rows = evaluate(sets[0][1], scale, base)
    print(f'pre-training: {pre_iters} iterations, {pre_cpu / 60:.1f} CPU min; on bicubic LR mean Y-PSNR '
          f'{np.mean([r[1] for r in pre_rows]):.2f} (the start of (a) and of (b)\'s SR network)', flush=True)
    torch.manual_seed(args.seed + 1)
    car, sr_b = build_car(args), copy.deepcopy(base)
    start_rows = evaluate(sets[0][1], scale, sr_b, car)
    print(f'(b) at the start: mean Y-PSNR {np.mean([r[1] for r in start_rows]):.2f}, kernel spread '
          f'{np.mean([r[3] for r in start_rows]):.4f}, offset {np.mean([r[4] for r in start_rows]):.3f} HR px',
          flush=True)
    warm_iters, b_iters, b_cpu = train_b(car, sr_b, train, args)
    print(f'(b): {b_iters} iterations ({warm_iters} of them CAR-only warm-up) in {b_cpu / 60:.1f} CPU min',
          flush=True)
    sr_a_iter = copy.deepcopy(base)
    a_iters, a_iter_cpu = train_sr(sr_a_iter, train, args, Schedule(iterations=b_iters),
                                   lambda hr: bicubic_lr(hr, scale), '(a) equal iterations')
    arms_models = {f'(a) bicubic, {a_iters} it': (sr_a_iter, None)}
    if args.iters is None:
        sr_a_time = copy.deepcopy(base)
        a_time_iters, _ = train_sr(sr_a_time, train, args, Schedule(b_cpu), lambda hr: bicubic_lr(hr, scale),
                                   '(a) equal time')
        arms_models[f'(a) bicubic, {b_cpu / 60:.1f} CPU min ({a_time_iters} it)'] = (sr_a_time, None)
    arms_models['(b) CAR+SR joint'] = (sr_b, car)
    if not args.skip_c:
        torch.manual_seed(args.seed + 2)
        sr_c = build_sr(args)
        car.eval()
        c_schedule = Schedule(b_cpu, None if args.iters is None else b_iters)
        c_iters, c_cpu = train_sr(sr_c, train, args, c_schedule,
                                  lambda hr: car.apply_maps(hr, car(hr), 'round'), '(c) fresh SR on CAR LR')
        arms_models[f'(c) fresh SR on frozen CAR LR ({c_iters} it)'] = (sr_c, car)
    arms_models['(b) SR on bicubic LR (diagnostic)'] = (sr_b, None)
    results = {}
    for label, images in sets:
        names = [name for name, _ in images]
        arms = {arm: evaluate(images, scale, sr, net) for arm, (sr, net) in arms_models.items()}
        gain, improved = table(f'x{scale}, {label}, after pre-training {pre_iters} it; (b) {b_iters} it, '
                               f'{b_cpu / 60:.1f} CPU min', arms, names)
        b_rows = arms['(b) CAR+SR joint']
        print(f'adaptivity of (b) (start → end): kernel spread {np.mean([r[3] for r in start_rows]):.4f} → '
              f'{np.mean([r[3] for r in b_rows]):.4f} (× mean weight 1/k²; 0 = one constant kernel), '
              f'offset length {np.mean([r[4] for r in start_rows]):.3f} → '
              f'{np.mean([r[4] for r in b_rows]):.3f} HR px', flush=True)
        results[label] = {'gain_db': gain, 'improved': improved, 'images': names,
                          'arms': {arm: [list(r[1:]) for r in rows] for arm, rows in arms.items()}}
    if args.figure:
        name, hr = sets[-1][1][0]  # the test split's first image with --also-test
        save_figure(args.figure, car, sr_b, name, hr, scale)
    if args.save_weights:
        save_pair(args.save_weights, car, sr_b, args)
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump({'args': vars(args), 'pretrain_iters': pre_iters, 'b_iters': b_iters, 'b_cpu_s': b_cpu,
                       'b_warmup_iters': warm_iters,
                       'results': results}, handle, indent=1)
    return results


if __name__ == '__main__':
    main()
