"""Cost of the LMAR resampler next to the enhancer it serves (CPU or CUDA), measured side by side.

    python scripts/benchmarks/bench_lmar_cost.py                      # 512x512 and 1024x1024, 2 threads
    python scripts/benchmarks/bench_lmar_cost.py --full               # also 2160x3840
    python scripts/benchmarks/bench_lmar_cost.py --official-code /tmp/lmar_official   # + the authors' code

For each input size H x W (working size H/2 x W/2, lanczos3 without antialiasing as the released code):

- enhancer (CNN-I, UHDUNet; the authors' weights when ``--reference`` holds them) at full size and at
  the working size; plain pipeline = D + enhancer + U; LMAR pipeline = resampler + enhancer + U;
- the resampler alone, and its MLP alone, with the MLP's achieved GFLOP/s as a fraction of this
  machine's fp32 GEMM throughput (best of a few 4096^3 ``torch.mm``);
- ``--official-code DIR``: the authors' ``LMAR_model.inference`` (a copy of their repository kept
  outside this project, with a torch stand-in for tiny-cuda-nn: ``official_runner.py`` in DIR) on the
  same input: resampler time = their pipeline - their enhancer at the working size;
- peak extra memory of the resampler, tiled (default budget) vs untiled, in a fresh process: the rise
  of the peak RSS (VmHWM, reset first through /proc/self/clear_refs, since a forked child inherits the
  parent's peak) on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.

Times are the best of ``--repeat`` runs after one warm-up.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir, osp.pardir))
sys.path.insert(0, REPO)

from basicsr_lmar.archs.lmar_arch import LMARResampler  # noqa: E402
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet  # noqa: E402

LMAR_BIN = 'lmar_official/LMAR_model.bin'


def best_time(fn, repeat, device):
    fn()
    best = float('inf')
    for _ in range(repeat):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_gflops(device, repeat=3, n=4096):
    a = torch.rand(n, n, device=device)
    b = torch.rand(n, n, device=device)
    out = torch.empty(n, n, device=device)
    seconds = best_time(lambda: torch.mm(a, b, out=out), repeat, device)
    return 2 * n**3 / seconds / 1e9


def mlp_flops_per_pixel(layout):
    return 2 * sum(out_dim * in_dim for out_dim, in_dim in layout.shapes[:-1]) + 2 * layout.n_outputs * layout.width


def build(reference_dir, device, tile_mb=None):
    resampler = LMARResampler(mlp_backend='torch', **({'tile_memory_mb': tile_mb} if tile_mb else {}))
    enhancer = UHDUNet(block='invertible')
    path = osp.join(reference_dir, LMAR_BIN) if reference_dir else None
    loaded = False
    if path and osp.isfile(path):
        from basicsr_lmar.checkpoints.lmar import (convert_official_lmar_resampler,
                                                              convert_official_uhd_unet, load_official_state_dict)
        state = load_official_state_dict(path)
        resampler.load_state_dict(convert_official_lmar_resampler(state))
        enhancer.load_state_dict(convert_official_uhd_unet(state, prefix='model.'))
        loaded = True
    return resampler.to(device).eval(), enhancer.to(device).eval(), loaded


def image(size, device):
    from skimage import data
    import numpy as np
    photo = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)[None]
    photo = torch.nn.functional.interpolate(photo, size=size, mode='bilinear', align_corners=False)
    return (photo.clamp(0, 1)**2.2 * 0.3).contiguous().to(device)


def _status_bytes(key):
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak_rss():
    """Resets the peak RSS (VmHWM; a forked child starts with its parent's) and returns the current RSS."""
    with open('/proc/self/clear_refs', 'w') as handle:
        handle.write('5')
    return _status_bytes('VmRSS')


def _peak_rss():
    return _status_bytes('VmHWM')


def memory_child(size, tiled, reference_dir, device_name, tile_mb):
    """Run in a fresh process: peak extra memory of one resampler forward (MiB)."""
    device = torch.device(device_name)
    resampler, _, _ = build(reference_dir, device, tile_mb)
    if not tiled:
        resampler.tile_memory_mb = 1e9
    x = image(size, device)
    working = (size[0] // 2, size[1] // 2)
    if device.type == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _reset_peak_rss()
    with torch.no_grad():
        resampler(x, working)
    if device.type == 'cuda':
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _peak_rss() - base
    print(json.dumps({'peak_mib': peak / 2**20}))


def measure_memory(size, tiled, args):
    command = [sys.executable, __file__, '--memory-child', str(size[0]), str(size[1]), '1' if tiled else '0',
               '--device', args.device, '--threads', str(args.threads)]
    if args.reference:
        command += ['--reference', args.reference]
    if args.tile_mb:
        command += ['--tile-mb', str(args.tile_mb)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])['peak_mib']


def load_official(code_dir):
    sys.path.insert(0, code_dir)
    import official_runner  # noqa: F401  (the authors' code with a torch tiny-cuda-nn stand-in)
    return official_runner.build()


def head_to_head(official, resampler, fast, sizes, rounds, device):
    """Alternates the authors' resampler and ours ``rounds`` times per size; best time of each.

    The authors' resampler time is their ``inference`` with the enhancer replaced by the identity,
    minus their final upscale of the 3-channel result (timed in the same rounds).
    """
    import copy
    their_resize = sys.modules['model.LMAR_model'].resize
    theirs = copy.copy(official)
    theirs.model = torch.nn.Identity()
    rows = []
    for size in sizes:
        x = image(size, device)
        working = (size[0] // 2, size[1] // 2)
        small = torch.rand(1, 3, *working, device=device)
        features = torch.ones(size[0] * size[1], resampler.layout.padded_inputs, device=device)
        features[:, :7] = torch.rand(size[0] * size[1], 7, device=device)
        n = 4096
        a, b, out = (torch.rand(n, n, device=device) for _ in range(3))
        best = {key: float('inf') for key in ('theirs', 'up', 'fp32', 'bf16', 'mlp', 'gemm')}
        with torch.no_grad():
            for _ in range(rounds):
                for key, fn in (('theirs', lambda: theirs.inference(x, working, size)),
                                ('up', lambda: their_resize(small, out_shape=size, antialiasing=False)),
                                ('fp32', lambda: resampler(x, working)), ('bf16', lambda: fast(x, working)),
                                ('mlp', lambda: resampler.imnet(features)), ('gemm', lambda: torch.mm(a, b, out=out))):
                    best[key] = min(best[key], best_time(fn, 1, device))
        their_resampler = best['theirs'] - best['up']
        gemm = 2 * n**3 / best['gemm'] / 1e9
        mlp = mlp_flops_per_pixel(resampler.layout) * size[0] * size[1] / best['mlp'] / 1e9
        rows.append(f'| {size[0]}x{size[1]} | {their_resampler:.2f} s | {best["fp32"]:.2f} s | {best["bf16"]:.2f} s | '
                    f'{their_resampler / best["fp32"]:.2f}x | {their_resampler / best["bf16"]:.2f}x | '
                    f'{mlp:.1f} / {gemm:.1f} GFLOP/s ({100 * mlp / gemm:.0f} %) |')
        print(rows[-1], flush=True)
    print('\n| input | authors resampler | ours fp32 | ours bf16 MLP | speed-up fp32 | speed-up bf16 '
          '| fp32 MLP / fp32 GEMM peak |\n|---|---|---|---|---|---|---|\n' + '\n'.join(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--full', action='store_true', help='also 2160x3840')
    parser.add_argument('--sizes', type=int, nargs='+', default=[512, 1024], help='square input sizes')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--reference', default=os.environ.get('BASICSR_LMAR_REFERENCE'),
                        help="a folder with the authors' release (lmar_official/, from github.com/YPatrickW/LMAR, "
                        'pretrained_models); default $BASICSR_LMAR_REFERENCE; random weights without it')
    parser.add_argument('--official-code', help="folder with the authors' code and official_runner.py")
    parser.add_argument('--tile-mb', type=float, help='tile budget (default: the arch default)')
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--head-to-head', type=int, metavar='ROUNDS',
                        help="only alternate the authors' resampler and ours ROUNDS times (needs --official-code)")
    parser.add_argument('--memory-child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        h, w, tiled = args.memory_child
        memory_child((int(h), int(w)), tiled == '1', args.reference, args.device, args.tile_mb)
        return

    device = torch.device(args.device)
    resampler, enhancer, loaded = build(args.reference, device, args.tile_mb)
    official = load_official(args.official_code) if args.official_code else None
    sizes = [(s, s) for s in args.sizes] + ([(2160, 3840)] if args.full else [])
    if args.head_to_head:
        if official is None:
            parser.error('--head-to-head needs --official-code')
        fast = LMARResampler(mlp_backend='torch', mlp_inference_precision='bf16').to(device).eval()
        fast.load_state_dict(resampler.state_dict())
        head_to_head(official, resampler, fast, sizes, args.head_to_head, device)
        return
    peak = gemm_gflops(device)
    per_pixel = mlp_flops_per_pixel(resampler.layout)
    print(f'device {device}, {args.threads} threads, torch {torch.__version__}; weights: '
          f'{"authors" if loaded else "random"}; fp32 GEMM peak (4096^3 mm): {peak:.1f} GFLOP/s; '
          f'MLP {per_pixel / 2:,.0f} multiply-adds per UHD pixel')
    fast = LMARResampler(mlp_backend='torch', mlp_inference_precision='bf16').to(device).eval()
    fast.load_state_dict(resampler.state_dict())
    header = ('| input | enhancer full | enhancer 1/2 | plain 1/2 | LMAR 1/2 | resampler | resampler bf16 | MLP '
              '| MLP GFLOP/s (% peak) '
              '| authors LMAR 1/2 | authors resampler | speed-up fp32 / bf16 | mem untiled | mem tiled |')
    rows = [header, '|' + '---|' * (header.count('|') - 1)]
    for size in sizes:
        x = image(size, device)
        working = (size[0] // 2, size[1] // 2)
        with torch.no_grad():
            t_full = best_time(lambda: enhancer(x), args.repeat, device)
            x_d = resampler.resize(x, working)
            t_half = best_time(lambda: enhancer(x_d), args.repeat, device)
            t_plain = best_time(lambda: resampler.resize(enhancer(resampler.resize(x, working)), size),
                                args.repeat, device)
            t_lmar = best_time(lambda: resampler.resize(enhancer(resampler(x, working)), size), args.repeat, device)
            t_resampler = best_time(lambda: resampler(x, working), args.repeat, device)
            t_fast = best_time(lambda: fast(x, working), args.repeat, device)
            features = torch.ones(size[0] * size[1], resampler.layout.padded_inputs, device=device)
            features[:, :7] = torch.rand(size[0] * size[1], 7, device=device)
            t_mlp = best_time(lambda: resampler.imnet(features), args.repeat, device)
        mlp_gflops = per_pixel * size[0] * size[1] / t_mlp / 1e9
        official_cells = ['-', '-', '-']
        if official is not None:
            with torch.no_grad():
                t_official = best_time(lambda: official.inference(x, working, size), max(1, args.repeat - 1), device)
                t_official_enh = best_time(lambda: official.model(x_d), args.repeat, device)
                their_resize = sys.modules['model.LMAR_model'].resize
                enhanced = official.model(x_d)
                t_official_up = best_time(lambda: their_resize(enhanced, out_shape=size, antialiasing=False),
                                          args.repeat, device)
            # their resampler = their pipeline - their enhancer at the working size - their final upscale
            t_official_resampler = t_official - t_official_enh - t_official_up
            official_cells = [f'{t_official:.2f} s', f'{t_official_resampler:.2f} s',
                              f'{t_official_resampler / t_resampler:.1f}x / {t_official_resampler / t_fast:.1f}x']
        memory = ['-', '-']
        if not args.no_memory:
            memory = [f'{measure_memory(size, False, args):.0f} MiB', f'{measure_memory(size, True, args):.0f} MiB']
        rows.append(f'| {size[0]}x{size[1]} | {t_full:.2f} s | {t_half:.2f} s | {t_plain:.2f} s | {t_lmar:.2f} s | '
                    f'{t_resampler:.2f} s | {t_fast:.2f} s | {t_mlp:.2f} s | {mlp_gflops:.1f} ({100 * mlp_gflops / peak:.0f} %) | '
                    + ' | '.join(official_cells + memory) + ' |')
        print(rows[-1], flush=True)
    print('\n' + '\n'.join(rows))


if __name__ == '__main__':
    main()
