"""Cost of full-resolution UHD inference of the enhancers on CPU, and what tiling changes.

    python scripts/benchmarks/bench_enhancers.py [--weights base_model.bin] [--size 2160 3840] \
        [--tile 1024] [--overlap 64]

Each mode runs in a fresh child process so that its peak resident memory (``ru_maxrss``) is its own:
``full`` (one forward pass of the whole frame) and ``tiled`` (:func:`tiled_forward`), both under
``torch.no_grad()``. The test frame is scikit-image's ``coffee`` photo resized (bicubic) to the UHD
size, darkened (gamma 2.2, x0.3) as a low-light input; ``--split validation|test`` or ``--heldout DIR``
takes the first image of that split or folder instead (scripts/benchmarks/heldout.py). With the authors' CNN-I weights
(``--weights``, default ``$BASICSR_LMAR_REFERENCE/lmar_official/base_model.bin`` when present) the
PSNR of each output against the bright frame is printed too; the tiled-vs-full PSNR measures what
instance norm over tiles changes.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir, osp.pardir))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from heldout import add_heldout_arguments, evaluation_images  # noqa: E402


def source_image(args):
    """``(name, float32 RGB in [0, 1])``: coffee by default, else the first image of --split / --heldout."""
    if getattr(args, 'heldout', None) or getattr(args, 'split', None):
        images, _ = evaluation_images(args)
        return images[0]
    from skimage import data
    return 'coffee', data.coffee().astype(np.float32) / 255


def test_frame(size, args=None):
    import cv2

    _, image = source_image(args)
    bright = cv2.resize(np.ascontiguousarray(image, dtype=np.float32), (size[1], size[0]),
                        interpolation=cv2.INTER_CUBIC)
    bright = np.clip(bright, 0, 1)
    return bright, (bright**2.2 * 0.3).astype(np.float32)


def build_net(weights):
    from basicsr_lmar.archs.uhd_unet_arch import UHDUNet
    from basicsr_lmar.checkpoints.lmar import convert_official_uhd_unet, load_official_state_dict

    net = UHDUNet(block='invertible').eval()
    if weights:
        net.load_state_dict(convert_official_uhd_unet(load_official_state_dict(weights)), strict=True)
    return net


def child(args):
    import torch

    from basicsr_lmar.ops.tiled_forward import tiled_forward

    net = build_net(args.weights)
    _, dark = test_frame(args.size, args)
    x = torch.from_numpy(dark).permute(2, 0, 1)[None].contiguous()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.no_grad():
        out = net(x) if args.mode == 'full' else tiled_forward(net, x, args.tile, args.overlap)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(args.output, out[0].permute(1, 2, 0).clamp(0, 1).numpy())
    print(json.dumps({'seconds': seconds, 'peak_rss_mib': peak / 1024, 'rss_before_mib': before / 1024,
                      'threads': torch.get_num_threads()}))


def psnr(a, b):
    """basicsr's PSNR of two float [0, 1] frames (no 8-bit rounding: the tiled/full difference is tiny)."""
    from basicsr.metrics import calculate_psnr

    return float(calculate_psnr(a * 255.0, b * 255.0, crop_border=0))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    reference = os.environ.get('BASICSR_LMAR_REFERENCE')  # a folder holding the authors' release
    default_weights = osp.join(reference, 'lmar_official', 'base_model.bin') if reference else None
    parser.add_argument('--weights', default=default_weights if default_weights and osp.isfile(default_weights)
                        else None, help="the authors' CNN-I weights (base_model.bin of github.com/YPatrickW/LMAR, "
                        'pretrained_models); default $BASICSR_LMAR_REFERENCE/lmar_official/base_model.bin')
    parser.add_argument('--size', type=int, nargs=2, default=[2160, 3840])
    parser.add_argument('--tile', type=int, default=1024)
    parser.add_argument('--overlap', type=int, default=64)
    parser.add_argument('--mode', choices=['full', 'tiled'], help=argparse.SUPPRESS)
    parser.add_argument('--output', help=argparse.SUPPRESS)
    add_heldout_arguments(parser, default_split=None)
    args = parser.parse_args()
    if args.mode:
        return child(args)

    print(f'CNN-I (UHDUNet invertible), input {args.size[0]}x{args.size[1]} from {source_image(args)[0]}, '
          f'weights: {args.weights or "random init"}')
    outputs, results = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in ('full', 'tiled'):
            path = osp.join(folder, f'{mode}.npy')
            command = [sys.executable, __file__, '--mode', mode, '--output', path, '--size', *map(str, args.size),
                       '--tile', str(args.tile), '--overlap', str(args.overlap)]
            if args.weights:
                command += ['--weights', args.weights]
            if args.heldout:
                command += ['--heldout', args.heldout]
            elif args.split:
                command += ['--split', args.split]
            line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[mode] = json.loads(line)
            outputs[mode] = np.load(path)
    bright, dark = test_frame(args.size, args)
    for mode, result in results.items():
        label = mode if mode == 'full' else f'tiled {args.tile}/{args.overlap}'
        quality = f', PSNR vs bright {psnr(outputs[mode], bright):.2f} dB' if args.weights else ''
        print(f'{label:>16}: {result["seconds"]:.1f} s, peak RSS {result["peak_rss_mib"]:.0f} MiB '
              f'(model + frame before the pass: {result["rss_before_mib"]:.0f} MiB), {result["threads"]} threads'
              f'{quality}')
    print(f'full / tiled time ratio: {results["full"]["seconds"] / results["tiled"]["seconds"]:.2f}; '
          f'peak RSS ratio: {results["full"]["peak_rss_mib"] / results["tiled"]["peak_rss_mib"]:.2f}')
    print(f'tiled vs full: PSNR {psnr(outputs["tiled"], outputs["full"]):.2f} dB, '
          f'max |diff| {np.abs(outputs["tiled"] - outputs["full"]).max():.4f}')
    if args.weights:
        print(f'dark input PSNR vs bright: {psnr(dark, bright):.2f} dB')


if __name__ == '__main__':
    main()
