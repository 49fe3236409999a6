"""Refines a folder of HR images into collaborative LR PNGs (HCD) for a pretrained rescaler.

    python scripts/hcd_refine.py -opt options/test_hcd_irn_x4.yml -i datasets/Set5/GTmod12 -o results/hcd_lr_x4

The option file is an HCDModel test file: its ``network_*`` sections and ``path.pretrain_network_*``
give the rescaler, ``rescaler`` the adapter (any entry of ``RESCALER_REGISTRY``) and ``hcd`` the
algorithm settings (``--steps`` overrides N_x = N_y; ``--stop`` turns on the per-image stopping rule with
its recommended settings, ``--stop-tolerance`` / ``--stop-gain-fraction`` / ``--stop-patience`` / ``--stop-min-steps`` set it,
docs/hcd.md). Each image is refined by ``HCDModel.test`` and its
8-bit LR (HCD quantises the LR to 8 bits) is written as ``<name>.png``; ``--save-sr`` also writes the
reconstruction ``<name>_SR.png`` at the input's bit depth. ``--batch-size B`` refines up to B
consecutive images of the same size together: the same LRs, higher throughput on many small images.
The progress bar shows the RGB PSNR gain (basicsr's ``calculate_psnr`` on the 8-bit reconstructions)
of each image over the base rescaler (same z policy for both).

Sizes: the rescaler needs multiples of its scale (of 8 for CAR). ``--size-policy crop`` (default, as
``GTmod`` folders) crops other images at the bottom/right, ``pad`` pads them there (reflection) and
crops the reconstruction back (the LR is the one of the padded image), ``refuse`` stops; every crop or
pad is listed before anything is computed, and an image smaller than one multiple is refused.

Folder handling is the one of every folder tool (``basicsr_lmar.cli.folders``; README "Folder
tools"): every input is checked and the output folder created and probed before the first image is
refined; unreadable or too-small images stop the run, all named, or are left out with ``--skip-bad``;
images whose outputs exist are skipped, and the run says how many (``--overwrite``); outputs are
written under a temporary name and renamed. Input mistakes end with one message and exit code 2
(``--debug`` for the traceback).
"""
import argparse
import os.path as osp

import numpy as np
import torch
from basicsr.metrics import calculate_psnr
from basicsr.models import build_model
from basicsr.utils import tensor2img

import basicsr_lmar  # noqa: F401  (registers archs, models, rescaler adapters)
from basicsr_lmar.cli.errors import run_main
from basicsr_lmar.cli.folders import FolderRun, add_folder_arguments, add_size_policy_argument
from basicsr_lmar.cli.inputs import resolve_device
from basicsr_lmar.data.size_rules import SizeRule
from basicsr_lmar.errors import UserError
from basicsr_lmar.ops.collaborative_downscaling import RECOMMENDED_STOP
from basicsr_lmar.options import read_option_file


def load_model(option_file, steps=None, seed=None, device=None, stop=None):
    """The HCDModel of ``option_file`` for test-time refinement (``steps`` overrides N_x = N_y; ``stop``: a
    mapping of ``stop_*`` options that replaces the file's, e.g. :data:`RECOMMENDED_STOP`)."""
    opt = read_option_file(option_file)
    use_cuda = torch.cuda.is_available() if device is None else resolve_device(device).type == 'cuda'
    opt.update(is_train=False, dist=False, rank=0, world_size=1, num_gpu=1 if use_cuda else 0)
    opt['path'] = dict(opt.get('path') or {})
    for key, path in opt['path'].items():
        if key.startswith('pretrain_network_') and path is not None and not osp.isfile(path):
            raise UserError(f'-opt {option_file}: path.{key} {path} does not exist; set it to the checkpoint of '
                            f'{key[len("pretrain_"):]}')
    opt.setdefault('name', osp.splitext(osp.basename(option_file))[0])
    opt['hcd'] = dict(opt.get('hcd') or {})
    opt['hcd']['steps_list'] = None
    if steps is not None:
        opt['hcd']['steps_hr'] = opt['hcd']['steps_lr'] = steps
    if seed is not None:
        opt['hcd']['seed'] = seed
    if stop is not None:
        opt['hcd'].update(stop)
    return build_model(opt)


def stop_options(args):
    """The ``stop_*`` options of the command line, or None (the option file's)."""
    given = {key: getattr(args, key) for key in RECOMMENDED_STOP if getattr(args, key) is not None}
    if not args.stop and not given:
        return None
    stop = dict(RECOMMENDED_STOP) if args.stop else dict.fromkeys(RECOMMENDED_STOP)
    if 'stop_tolerance' in given or 'stop_gain_fraction' in given:  # the criteria given replace the recommended
        stop.update(stop_tolerance=None, stop_gain_fraction=None)
    stop.update(given)
    return stop


def size_rule(model, policy='crop'):
    """What the model's rescaler accepts: multiples of ``hr_size_multiple`` when the adapter declares it
    (CAR: 8), else of its scale."""
    rescaler = model.rescaler
    multiple = getattr(rescaler, 'hr_size_multiple', None) or model.scale
    return SizeRule(multiple, f'{type(rescaler).__name__} x{model.scale}', policy=policy, flag='--size-policy')


def refine_folder(model, input_folder, output_folder, overwrite=False, save_sr=False, batch_size=1, skip_bad=False,
                  size_policy='crop', bit_depth=None):
    """Refines every image of ``input_folder`` whose outputs are not in ``output_folder`` yet; returns the
    gains (dB).

    Consecutive images of the same size (after the size policy) are refined ``batch_size`` at a time.
    HCD treats the images of a batch independently (per-image norms, balls and random starts from the
    same seed; the rescalers are batch-independent), so the written LRs are the ones of one-at-a-time
    runs; a batch only raises throughput (and memory, ``batch_size`` times).
    """
    if batch_size < 1:
        raise UserError(f'hcd_refine: --batch-size must be >= 1, got {batch_size}')
    rule = size_rule(model, size_policy)
    folder = FolderRun('hcd_refine', input_folder, skip_bad=skip_bad, overwrite=overwrite, bit_depth=bit_depth)
    gains, pending = [], []

    def flush(bar):
        if not pending:
            return
        model.feed_data({'gt': torch.cat([hr for _, hr in pending])})
        model.test()  # the base LR and SR, and the HCD LR and its reconstruction (HCDModel's pipeline)
        for index, (job, _) in enumerate(pending):
            hr = tensor2img([rule.restore(model.gt[index], job.size)])
            psnr = calculate_psnr(tensor2img([rule.restore(model.output[index], job.size)]), hr, crop_border=0)
            base = calculate_psnr(tensor2img([rule.restore(model.output_base[index], job.size)]), hr, crop_border=0)
            folder.write(job, 'lr', model.lq[index], fixed_bit_depth=8)  # HCD's LR is 8-bit by the method
            if save_sr:
                folder.write(job, 'sr', rule.restore(model.output[index], job.size))
            gains.append(psnr - base)
            bar.set_postfix(image=job.name, gain_db=f'{gains[-1]:+.3f}', mean_gain_db=f'{np.mean(gains):+.3f}',
                            refresh=False)
        bar.update(len(pending))  # counts the images refined, with their figures
        pending.clear()

    with folder:
        jobs = folder.plan({'lr': (output_folder, '{stem}.png'),
                            'sr': (output_folder if save_sr else None, '{stem}_SR.png')}, size_rule=rule)
        folder.prepare_outputs()
        bar = folder.progress(jobs, 'HCD')  # advanced by flush: iterating it would close it before the last batch
        for job in jobs:
            hr = folder.read_tensor(job, model.device)
            if hr is None:
                bar.update(1)
                continue
            hr = rule.fit(hr)  # batches group images by the size the rescaler sees
            if pending and (hr.shape != pending[0][1].shape or len(pending) == batch_size):
                flush(bar)
            pending.append((job, hr))
        flush(bar)
        bar.close()
    print(folder.summary())
    return gains


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='HCDModel option file (rescaler, networks, hcd settings)')
    add_folder_arguments(parser, 'folder of HR images', 'folder for the collaborative LR PNGs')
    add_size_policy_argument(parser, 'the scale (of 8 for CAR)')
    parser.add_argument('--steps', type=int, default=None, help='N_x = N_y (default: the option file)')
    parser.add_argument('--seed', type=int, default=None, help='seed of the random starts')
    parser.add_argument('--stop', action='store_true',
                        help='stop each image when converged (--steps is then the maximum), with the recommended '
                             f'rule {RECOMMENDED_STOP}')
    parser.add_argument('--stop-tolerance', type=float, default=None,
                        help='stop an image when its best loss improved by less than this fraction of itself over '
                             'the window')
    parser.add_argument('--stop-gain-fraction', type=float, default=None,
                        help='stop an image when the window improved its loss by less than this fraction of its '
                             'gain so far')
    parser.add_argument('--stop-patience', type=int, default=None, help='window of the stopping rule (steps)')
    parser.add_argument('--stop-min-steps', type=int, default=None,
                        help='steps every image takes before the stopping rule may stop it')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda if available)')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='refine up to this many consecutive same-size images together (same results, higher '
                             'throughput, that many times the memory)')
    parser.add_argument('--save-sr', action='store_true', help='also write the reconstructions <name>_SR.png')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f'--batch-size must be >= 1, got {args.batch_size}')
    model = load_model(args.opt, args.steps, args.seed, args.device, stop_options(args))
    gains = refine_folder(model, args.input, args.output, args.overwrite, args.save_sr, args.batch_size,
                          args.skip_bad, args.size_policy, args.bit_depth)
    if gains:
        print(f'{len(gains)} images, mean RGB PSNR gain over the base rescaler: {np.mean(gains):+.3f} dB '
              f'(min {np.min(gains):+.3f})')
    return gains


if __name__ == '__main__':
    run_main(main)
