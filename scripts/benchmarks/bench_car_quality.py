"""Mini-reproduction of CAR's Table 1 ("Upscaling: Bicubic" columns) at x4 on CPU.

Trains a reduced-width :class:`CARResamplerNet` under a fixed differentiable bicubic upscaler on random
crops of scikit-image's training photos for a CPU-time budget, then on the held-out photos (chelsea,
coffee) compares, side by side in one run:

* CAR downscaling (8-bit, hard rounding) + bicubic upscaling,
* bicubic downscaling with MATLAB-style antialiasing (8-bit) + bicubic upscaling, and
* the least-squares-optimal LR image (8-bit) + bicubic upscaling: the ceiling of any downscaler,

by PSNR / SSIM on Y with ``crop_border = scale`` (basicsr metrics). The paper reports +0.58 dB on Set5
x4 for the full network trained on DIV2K. Departures from the paper's training, all options: MSE
instead of L1 (the figure of merit is PSNR; ``--loss l1`` for the paper's), the regulariser weights
scaled down with it, a narrow box-kernel start instead of a random one (``--init``), the centre of the
crops only in the loss (``--loss-border``), a cosine learning-rate decay over the budget.
``bench_car_ceiling.py`` gives the ceiling, the per-pixel oracle and the alignment check.

    python scripts/benchmarks/bench_car_quality.py               # 20 CPU minutes of training
    python scripts/benchmarks/bench_car_quality.py --minutes 3   # shortened run
    python scripts/benchmarks/bench_car_quality.py --save-weights car_bicubic_x4.pth   # + car_bicubic_x4.yml
    python scripts/car_rescale.py -opt car_bicubic_x4.yml -i HR_DIR --sr-out SR_DIR     # evaluate it anywhere
    python scripts/benchmarks/bench_car_quality.py --signed      # signed kernels (beyond the paper)
    python scripts/benchmarks/bench_car_quality.py --split validation   # choose recipes; --heldout DIR: any images
"""
import argparse
import functools
import math
import os.path as osp
import sys
import time

import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img

from basicsr_lmar.archs.car_arch import BicubicUpscaler, CARResamplerNet
from basicsr_lmar.data.skimage_photos import TRAIN_PHOTOS, load_photo, photo_names
from basicsr_lmar.losses.car_loss import CAROffsetLoss, PartialTVLoss
from basicsr_lmar.ops.rounding import quantize_8bit
from basicsr_lmar.ops.adaptive_resample import adaptive_resample
from basicsr_lmar.ops.resize import resize

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from heldout import add_heldout_arguments, evaluation_images  # noqa: E402


def to_tensor(photo):
    return torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1))).float()[None]


def random_crops(photos, size, batch, generator):
    crops = []
    for _ in range(batch):
        photo = photos[int(torch.randint(len(photos), (1, ), generator=generator))]
        top = int(torch.randint(photo.shape[2] - size + 1, (1, ), generator=generator))
        left = int(torch.randint(photo.shape[3] - size + 1, (1, ), generator=generator))
        crop = photo[..., top:top + size, left:left + size]
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-1)
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.transpose(-1, -2)
        crops.append(crop)
    return torch.cat(crops)


def initial_kernel(kind, scale, floor=0.0, peak=1.0):
    """The k*k kernel (relative weights: ``peak`` at the centre, at least ``floor``) the network starts
    from, with zero offsets.

    ``bicubic``: the antialiased bicubic kernel stretched by ``scale``, negative lobes clamped (CAR kernels
    are non-negative). ``box``: equal weights on the central 3x3 elements. Element (ky, kx) samples HR
    position centre + (kx - k // 2, ky - k // 2) bilinearly, and the centre of an LR pixel lies between
    HR pixels, so at x4 this is a 4x4 average with half-weight neighbours, (1, 2, 2, 1) / 6 per axis. It
    is the best space-invariant non-negative kernel under the bicubic upscaler (a least-squares fit of
    one shared kernel on training crops lands on it) and already matches antialiased bicubic
    downscaling, where the clamped bicubic kernel loses ~0.5 dB: the upscaler blurs, so a narrower
    downscaling kernel pays."""
    k = 3 * scale + 1
    distance = (torch.arange(k, dtype=torch.float64) - k // 2) / scale
    if kind == 'box':
        profile = (distance.abs() * scale <= 1).double()
    else:
        magnitude = distance.abs()
        profile = torch.where(magnitude <= 1, 1.5 * magnitude**3 - 2.5 * magnitude**2 + 1,
                              torch.where(magnitude < 2, -0.5 * magnitude**3 + 2.5 * magnitude**2 - 4 * magnitude + 2,
                                          torch.zeros_like(magnitude)))
    kernel = (profile.view(k, 1) * profile.view(1, k)).flatten()
    return (peak * kernel / kernel.max()).clamp(min=floor).float()


def initialise_heads(net, kind, scale, peak=1.0, floor=1e-3, weight_scale=1e-2):
    """Starts the kernel head at ``initial_kernel(kind, floor, peak)`` (its last conv's bias, with the
    conv's weights scaled by ``weight_scale``) and the offset heads at ~0.

    Beware the head's clamp to [1e-6, 1]: it passes no gradient outside that range. Measured with this
    script: from every start tried (this default; peak 0.5 / floor 5e-3 / weight
    scale 0.1; peak 0.5 / floor 0.02-0.05 / weight scale 1 at lr 1e-4-3e-4; random heads; with or without
    ``--clamp-barrier``; a sigmoid before the clamp, ``--kernel-activation sigmoid``) the reduced network
    goes within a few hundred iterations to one constant kernel (from the box starts: the central 3x3
    elements at equal weight and every other element at ~0), the kernels varying from pixel to pixel by
    < 5e-4: it learns a fixed kernel as good as the box and no content adaptation in this budget."""
    with torch.no_grad():
        last = net.kernel_head[-1]
        last.weight.mul_(weight_scale)
        kernel = initial_kernel(kind, scale, floor=floor, peak=peak)
        # signed kernels are raw - mean + 1/k^2: a bias that sums to 1 is the kernel itself
        last.bias.copy_(kernel / kernel.sum() if getattr(net, 'signed_kernels', False) else kernel)
        for head in (net.offset_h_head, net.offset_v_head):
            head[-2].weight.mul_(1e-2)
            head[-2].bias.zero_()


def y_metrics(result, reference, scale):
    result, reference = tensor2img([result]), tensor2img([reference])
    return (calculate_psnr(result, reference, crop_border=scale, test_y_channel=True),
            calculate_ssim(result, reference, crop_border=scale, test_y_channel=True))


def upscaling_matrix(size, scale, dtype=torch.float64):
    """The 1-D operator (size * scale, size) of :class:`BicubicUpscaler` along one axis (it is separable)."""
    identity = torch.eye(size, dtype=dtype)[None, None]
    return resize(identity, (size * scale, size), 'bicubic', antialias=True, boundary='reflect')[0, 0]


@functools.lru_cache(maxsize=None)
def upscaling_pseudo_inverse(size, scale):
    """pinv(upscaling_matrix(size, scale)), cached: training crops of one size reuse it every iteration."""
    return torch.linalg.pinv(upscaling_matrix(size, scale))


def least_squares_lr(hr, scale):
    """The LR image that minimises ||bicubic_up(LR) - HR||^2: the ceiling of every downscaler under this
    upscaler (before 8-bit rounding). Bicubic upscaling is linear and separable, so
    LR* = pinv(U_h) @ HR @ pinv(U_w)^T per channel and image of the batch; as the Y channel is an affine
    function of RGB, this is also the optimum for the error on Y."""
    rows = upscaling_pseudo_inverse(hr.shape[-2] // scale, scale)
    cols = upscaling_pseudo_inverse(hr.shape[-1] // scale, scale)
    return (rows @ hr.double() @ cols.T).float()


def teacher_kernels(hr, scale, steps):
    """Per-pixel CAR kernels (zero offsets) that move the box kernel's LR towards the crop's least-squares
    LR: ``steps`` rounds of a per-pixel exact line search along sum_c (s_i,c - LR_c) (LR*_c - LR_c) (s_i:
    the kernel element's sample), clipped to >= 0 and renormalised. No network: a teacher signal whose
    pixel-to-pixel variation depends on the content at first order."""
    k = 3 * scale + 1
    n, channels, height, width = hr.shape
    target = least_squares_lr(hr, scale).clamp(0, 1)
    box = initial_kernel('box', scale)
    kernels = (box / box.sum()).view(1, -1, 1, 1).expand(n, k * k, height // scale, width // scale).contiguous()
    # with zero offsets the samples do not depend on the kernels: the LR is sum_i kernels_i * samples_i
    probe = kernels.clone().requires_grad_(True)
    zeros = torch.zeros_like(kernels)
    lr = adaptive_resample(hr, probe, zeros, zeros, scale)
    samples = torch.stack([torch.autograd.grad(lr[:, c].sum(), probe, retain_graph=c < channels - 1)[0]
                           for c in range(channels)], 1)  # (n, C, k*k, h, w)
    for _ in range(steps):
        lr = (kernels[:, None] * samples).sum(2)
        residual = target - lr
        deviation = samples - lr[:, :, None]
        direction = (deviation * residual[:, :, None]).sum(1)  # (n, k*k, h, w)
        change = (direction[:, None] * deviation).sum(2)  # first-order LR change per unit step
        step = (change * residual).sum(1, keepdim=True) / change.square().sum(1, keepdim=True).clamp(min=1e-12)
        kernels = (kernels + step * direction).clamp(min=0)
        kernels = kernels / kernels.sum(1, keepdim=True).clamp(min=1e-12)
    return kernels


def bicubic_downscale(hr, scale):
    """The baseline: MATLAB-style bicubic downscaling (antialiased kernel stretched by ``scale``). The
    border is reflected (MATLAB imresize pads symmetrically; reflect and replicate give the same PSNR
    here to 0.001 dB, zero padding is 0.01 dB worse)."""
    return resize(hr, (hr.shape[-2] // scale, hr.shape[-1] // scale), 'bicubic', antialias=True, boundary='reflect')


def evaluate(net, upscaler, photos, scale, with_ceiling=False):
    rows = []
    net.eval()
    hooked = net.kernel_head._forward_hooks
    saved_hooks = dict(hooked)
    hooked.clear()
    with torch.no_grad():
        for name, hr in photos:
            height, width = hr.shape[-2:]
            hr = hr[..., :height - height % 8, :width - width % 8]
            lr_car = net.downscale(hr, rounding='round')
            lr_bic = quantize_8bit(bicubic_downscale(hr, scale).clamp(0, 1), 'round')
            car = y_metrics(upscaler(lr_car).clamp(0, 1), hr, scale)
            bic = y_metrics(upscaler(lr_bic).clamp(0, 1), hr, scale)
            ceiling = None
            if with_ceiling:
                lr_best = quantize_8bit(least_squares_lr(hr, scale).clamp(0, 1), 'round')
                ceiling = y_metrics(upscaler(lr_best).clamp(0, 1), hr, scale)
            rows.append((name, tuple(hr.shape[-2:]), car, bic, ceiling))
    hooked.update(saved_hooks)
    net.train()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--minutes', type=float, default=20.0, help='training time budget')
    parser.add_argument('--iters', type=int, help='stop after this many iterations as well (a smoke run)')
    parser.add_argument('--clock', choices=('cpu', 'wall'), default='cpu',
                        help='budget in process CPU time (default; fair on a shared machine) or wall-clock time')
    parser.add_argument('--crop', type=int, default=96)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--offset-weight', type=float, default=1e-6,
                        help='lambda of CAROffsetLoss (1e-5 with --loss l1; MSE gradients are ~10x smaller)')
    parser.add_argument('--tv-weight', type=float, default=1e-4,
                        help='gamma_tv of PartialTVLoss (1e-3 with --loss l1)')
    parser.add_argument('--alpha', type=float, default=1.0,
                        help='soft rounding strength in (0, 1] (ops.rounding.soft_round)')
    parser.add_argument('--width', type=int, nargs=4, default=[16, 32, 64, 2],
                        metavar=('HEAD', 'BODY', 'TOP', 'BLOCKS'),
                        help='reduced ResamplerNet widths (full network: 64 128 256 5)')
    parser.add_argument('--init', choices=('box', 'bicubic', 'random'), default='box',
                        help='start from a fixed kernel with zero offsets (see initial_kernel), or from random heads')
    parser.add_argument('--init-peak', type=float, default=1.0, help='raw centre value of the initial kernel (<= 1)')
    parser.add_argument('--init-floor', type=float, default=1e-3, help='raw value of the other elements (> 1e-6)')
    parser.add_argument('--init-weight-scale', type=float, default=1e-2,
                        help="factor on the kernel head's last conv weights at the start")
    parser.add_argument('--clamp-barrier', type=float, default=0.0, metavar='WEIGHT',
                        help='weight of a penalty on the raw kernel values outside the head\'s clamp range [1e-6, 1] '
                             '(squared distance), which gives clamped elements a gradient back; 0 = off')
    parser.add_argument('--kernel-activation', choices=('clamp', 'sigmoid'), default='clamp',
                        help="clamp: the authors' head (raw conv output clamped to [1e-6, 1], normalised); sigmoid: "
                             'a sigmoid on the raw output first (a departure, via a forward hook: the clamp then never '
                             'saturates, so no element loses its gradient)')
    parser.add_argument('--loss', choices=('l1', 'mse'), default='mse',
                        help='reconstruction loss: l1 (the paper) or mse (optimises PSNR directly)')
    parser.add_argument('--lr-target-weight', type=float, default=0.0, metavar='WEIGHT',
                        help='weight of an LR-domain MSE between the CAR LR and the least-squares-optimal LR of the '
                             'crop under the fixed upscaler (least_squares_lr); 0 = off')
    parser.add_argument('--teacher-weight', type=float, default=0.0, metavar='WEIGHT',
                        help='weight of an MSE between the predicted kernels and teacher_kernels of the crop; 0 = off')
    parser.add_argument('--teacher-steps', type=int, default=6, help='line-search rounds of teacher_kernels')
    parser.add_argument('--recon-weight', type=float, default=1.0, help='weight of the HR reconstruction loss')
    parser.add_argument('--loss-border', type=int, default=8,
                        help='HR pixels at each crop edge left out of the reconstruction loss (padding effects)')
    parser.add_argument('--op-impl', choices=('auto', 'reference', 'chunked'), default='reference',
                        help='network_g.impl: the adaptive_resample implementation (training and evaluation; the '
                             'implementations agree to 1e-5); on small CPU crops the reference is ~15-20 %% faster '
                             'than the chunked path')
    parser.add_argument('--signed', action='store_true',
                        help='CARResamplerNet(signed_kernels=True): kernels of any sign summing to 1 '
                             '(beyond the paper)')
    parser.add_argument('--save-weights', metavar='PATH',
                        help='save the trained resampler (state dict + CARResamplerNet options) to PATH')
    parser.add_argument('--wall-limit', type=float, metavar='MINUTES',
                        help='also stop training after this many wall-clock minutes (a crowded machine); the report '
                             'gives the CPU minutes actually used')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--figure', metavar='PNG', help='LR images and results of the first evaluation image')
    parser.add_argument('--also-test', action='store_true',
                        help='after the --split / --heldout report, report on the test split too')
    add_heldout_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    scale = args.scale
    head, body, top, blocks = args.width
    network_g = dict(type='CARResamplerNet', scale=scale, num_feat=head, body_feat=body, top_feat=top, num_block=blocks,
                     impl=args.op_impl, signed_kernels=args.signed)
    net = CARResamplerNet(**{key: value for key, value in network_g.items() if key != 'type'})
    if args.init != 'random':
        initialise_heads(net, args.init, scale, args.init_peak, args.init_floor, args.init_weight_scale)
    if args.kernel_activation == 'sigmoid':
        last = net.kernel_head[-1]
        if args.init != 'random':
            with torch.no_grad():
                last.bias.copy_(torch.logit(last.bias.clamp(1e-4, 1 - 1e-4)))
        last.register_forward_hook(lambda module, inputs, output: torch.sigmoid(output))
    upscaler = BicubicUpscaler(scale)
    offset_loss = CAROffsetLoss(loss_weight=args.offset_weight)
    tv_loss = PartialTVLoss(loss_weight=args.tv_weight)
    raw_kernels = []
    if args.clamp_barrier:  # the kernel head's output before CARResamplerNet.forward clamps it
        net.kernel_head.register_forward_hook(lambda module, inputs, output: raw_kernels.append(output))
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-6)
    train = [to_tensor(load_photo(name)) for name in TRAIN_PHOTOS]
    images, where = evaluation_images(args)
    heldout = [(name, to_tensor(image)) for name, image in images]
    params = sum(p.numel() for p in net.parameters())
    print(f'CAR x{scale} under bicubic upscaling: ResamplerNet widths {args.width} ({params:,} params), '
          f'crop {args.crop}, batch {args.batch}, lr {args.lr}, lambda {args.offset_weight}, '
          f'gamma_tv {args.tv_weight}, soft-round alpha {args.alpha}, init {args.init} (peak {args.init_peak}, floor '
          f'{args.init_floor}, weight scale {args.init_weight_scale}), kernel activation {args.kernel_activation}, '
          f'clamp barrier {args.clamp_barrier}, signed {args.signed}, loss {args.loss} '
          f'(border {args.loss_border}), op {args.op_impl}, budget {args.minutes} {args.clock} min; '
          f'evaluated on the {where}',
          flush=True)
    if args.init != 'random':
        report(evaluate(net, upscaler, heldout, scale), 'at initialisation')
    budget = args.minutes * 60
    clock = time.process_time if args.clock == 'cpu' else time.time
    start, wall_start = clock(), time.time()
    iteration, running = 0, []
    wall_limit = math.inf if args.wall_limit is None else args.wall_limit * 60
    max_iters = math.inf if args.iters is None else args.iters
    while clock() - start < budget and time.time() - wall_start < wall_limit and iteration < max_iters:
        progress = (clock() - start) / budget
        for group in optimizer.param_groups:  # cosine decay over the time budget
            group['lr'] = args.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        hr = random_crops(train, args.crop, args.batch, generator)
        kernels, offsets_h, offsets_v = maps = net(hr)
        lr = net.apply_maps(hr, maps, 'soft', args.alpha)
        error = upscaler(lr) - hr
        if args.loss_border:
            error = error[..., args.loss_border:-args.loss_border, args.loss_border:-args.loss_border]
        reconstruction = error.abs().mean() if args.loss == 'l1' else error.square().mean()
        loss = args.recon_weight * reconstruction
        if args.lr_target_weight:
            target = least_squares_lr(hr, scale).clamp(0, 1)
            trim = args.loss_border // scale
            lr_error = (lr - target)[..., trim:lr.shape[-2] - trim, trim:lr.shape[-1] - trim]
            loss = loss + args.lr_target_weight * lr_error.square().mean()
        if args.teacher_weight:
            with torch.enable_grad():
                teacher = teacher_kernels(hr, scale, args.teacher_steps)
            loss = loss + args.teacher_weight * (kernels - teacher).square().mean()
        loss = loss + offset_loss(offsets_h, offsets_v) + tv_loss(kernels, offsets_h, offsets_v)
        if raw_kernels:
            raw = raw_kernels.pop()
            outside = (raw - 1).clamp(min=0).square() + (net.kernel_min - raw).clamp(min=0).square()
            loss = loss + args.clamp_barrier * outside.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running.append(float(reconstruction.detach()))
        iteration += 1
        if iteration % 50 == 0:
            offset = float(offsets_h.detach().abs().mean() + offsets_v.detach().abs().mean()) / 2
            print(f'iter {iteration:5d}  {args.clock} {clock() - start:6.0f}s  '
                  f'{args.loss} {np.mean(running[-50:]):.5f}  '
                  f'|offset| {offset:.3f}', flush=True)
    minutes, wall = (clock() - start) / 60, (time.time() - wall_start) / 60
    rows = evaluate(net, upscaler, heldout, scale, with_ceiling=True)
    report(rows, f'after {iteration} iterations in {minutes:.1f} {args.clock} min ({wall:.1f} wall min)')
    if args.also_test and (args.heldout or args.split != 'test'):
        test = [(name, to_tensor(load_photo(name))) for name in photo_names('test')]
        report(evaluate(net, upscaler, test, scale, with_ceiling=True), 'the same network on the test split')
    if args.figure:
        save_lr_figure(args.figure, net, upscaler, heldout[0], scale, 'signed' if args.signed else 'clamped')
    if args.save_weights:
        save_weights(args.save_weights, net, network_g, args, iteration, rows)
    return rows


def save_lr_figure(path, net, upscaler, photo, scale, variant):
    """The 8-bit LR images (bicubic↓ and CAR↓, shown at their pixel size × 2) and both bicubic↑ results on a
    crop of one image: what the LR a user stores looks like, and the ringing it brings."""
    from matplotlib.figure import Figure
    name, hr = photo
    hr = hr[..., :hr.shape[-2] - hr.shape[-2] % 8, :hr.shape[-1] - hr.shape[-1] % 8]
    net.eval()
    with torch.no_grad():
        lr_car = net.downscale(hr, rounding='round')
        lr_bic = quantize_8bit(bicubic_downscale(hr, scale).clamp(0, 1), 'round')
        up_car, up_bic = upscaler(lr_car).clamp(0, 1), upscaler(lr_bic).clamp(0, 1)
    net.train()
    height, width = hr.shape[-2:]
    top, left = (height // 2 - 64) // scale * scale, (width // 2 - 64) // scale * scale
    crop = (slice(top, top + 128), slice(left, left + 128))
    lr_crop = (slice(top // scale, (top + 128) // scale), slice(left // scale, (left + 128) // scale))

    def image(t, region):
        return t[0].permute(1, 2, 0)[region].numpy()
    panels = [('bicubic↓ LR (8-bit)', image(lr_bic, (slice(None), slice(None)))),
              (f'CAR↓ LR, {variant} kernels (8-bit)', image(lr_car, (slice(None), slice(None)))),
              ('bicubic↓ LR, centre crop', image(lr_bic, lr_crop)), (f'CAR↓ LR ({variant}), centre crop',
                                                                      image(lr_car, lr_crop)),
              ('bicubic↓ + bicubic↑', image(up_bic, crop)), (f'CAR↓ ({variant}) + bicubic↑', image(up_car, crop)),
              ('HR', image(hr, crop))]
    figure = Figure(figsize=(14, 2.6), dpi=80)
    for i, (title, picture) in enumerate(panels):
        axis = figure.add_subplot(1, len(panels), i + 1)
        axis.imshow(np.clip(picture, 0, 1), interpolation='nearest')
        axis.set_title(title, fontsize=7)
        axis.axis('off')
    figure.suptitle(f'{name}, x{scale}', fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    print(f'figure: {path}', flush=True)


def save_weights(path, net, network_g, args, iterations, rows):
    """basicsr's checkpoint layout (``params``) plus what is needed to rebuild and judge the network:
    ``network_g`` (the options for ``build_network``), ``network_sr`` (the fixed bicubic upscaler), the
    benchmark arguments, the iteration count and the held-out figures."""
    torch.save({
        'params': {key: value.detach().cpu() for key, value in net.state_dict().items()},
        'network_g': network_g,
        'network_sr': {'type': 'BicubicUpscaler', 'scale': network_g['scale']},
        'benchmark_args': vars(args),
        'iterations': iterations,
        'heldout_psnr_y': {name: {'car': float(car[0]), 'bicubic': float(bic[0])} for name, _, car, bic, _ in rows},
    }, path)
    import yaml
    options = {'name': osp.splitext(osp.basename(path))[0], 'model_type': 'CARModel', 'scale': network_g['scale'],
               'num_gpu': 0, 'network_g': dict(network_g), 'path': {'pretrain_network_g': osp.abspath(path)}}
    with open(osp.splitext(path)[0] + '.yml', 'w') as handle:  # no network_sr: car_rescale's bicubic default
        yaml.safe_dump(options, handle, sort_keys=False)
    print(f'saved the resampler to {path} and its option file {osp.splitext(path)[0]}.yml (scripts/car_rescale.py '
          f'-opt that file; or CARResamplerNet(**checkpoint["network_g"] minus "type") and '
          f'load_state_dict(checkpoint["params"]))', flush=True)


def report(rows, title):
    """Per-photo table; with the ceiling column when the rows carry it. Gains are in dB over bicubic↓,
    "of ceiling" is the CAR gain as a share of the least-squares-optimal LR's gain."""
    ceiling = rows[0][4] is not None
    print(f'\nEvaluation images, {title}:\n')
    extra = ' | optimal LR↓+bicubic↑ PSNR / SSIM | ceiling gain dB | share of ceiling' if ceiling else ''
    print(f'| photo | size | CAR↓+bicubic↑ PSNR / SSIM | bicubic↓+bicubic↑ PSNR / SSIM | gain dB{extra} |')
    print('|---|---|---|---|---|' + ('---|---|---|' if ceiling else ''))
    for name, size, car, bic, best in rows:
        line = (f'| {name} | {size[0]}×{size[1]} | {car[0]:.2f} / {car[1]:.4f} | {bic[0]:.2f} / {bic[1]:.4f} '
                f'| {car[0] - bic[0]:+.3f}')
        if ceiling:
            line += (f' | {best[0]:.2f} / {best[1]:.4f} | {best[0] - bic[0]:+.3f} '
                     f'| {(car[0] - bic[0]) / (best[0] - bic[0]):.0%}')
        print(line + ' |')
    car_mean = np.mean([r[2][0] for r in rows])
    bic_mean = np.mean([r[3][0] for r in rows])
    line = f'| mean | | {car_mean:.2f} | {bic_mean:.2f} | {car_mean - bic_mean:+.3f}'
    if ceiling:
        best_mean = np.mean([r[4][0] for r in rows])
        share = (car_mean - bic_mean) / (best_mean - bic_mean)
        line += f' | {best_mean:.2f} | {best_mean - bic_mean:+.3f} | {share:.0%}'
    print(line + ' |', flush=True)


if __name__ == '__main__':
    main()
