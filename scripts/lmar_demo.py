"""LMAR demo body: enhancer pretraining -> LMAR collaborative training -> the with/without table.

    python scripts/lmar_demo.py            [--reuse-enhancer]

Embedded data only (scikit-image's bundled photos, darkened at run time by ``SkimagePhotoDataset``
with ``degradation: lowlight``: gain * x^gamma + Gaussian noise, see docs/data.md):

1. ``options/demo_lmar_enhancer_skimage.yml``: a small CNN-I enhancer (UHDUNet, C = 4) learns low-light
   enhancement on crops of the training photos (BasicSR ``SRModel``, L1), through the plugin's entry
   ``basicsr_lmar/train.py``;
2. ``options/demo_lmar_skimage.yml``: ``LMARModel`` trains a resampler in front of that frozen enhancer
   and validates on the held-out photos (resized to 384x576) at the seven working sizes of the
   paper's Tables 1-3 (scaled) x five resizers, with and without LMAR;
3. the table (markdown/CSV), the PSNR-vs-size plot and example images (held-out photo at 1/4 of the
   area with bicubic, with and without LMAR) are copied to ``results/lmar_demo/`` and the table printed.

Both training stages run with one thread by default (``--threads``): the seeded run then reproduces
its table exactly. Measured (docs/benchmarks.md, "Demo"): 4 min 40 s. On the held-out photos LMAR is
above the plain pipeline at every downscaled working size and resizer (+0.15 to +0.29 dB PSNR) and
+0.04 dB at full size; the mean gain at <= 1/2 of the size is +0.21 dB. The result is one enhancer's:
with two threads stage 1 ends at another enhancer, on which the same LMAR options lose 0.06 dB at full
size (docs/benchmarks.md). The demo's LMAR options differ from the paper's on purpose (L_rc at the
enhancer's output, L_rc only, ...): see options/demo_lmar_skimage.yml and docs/lmar.md, "The demo".
"""
import argparse
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ENHANCER_OPT = osp.join(REPO, 'options', 'demo_lmar_enhancer_skimage.yml')
LMAR_OPT = osp.join(REPO, 'options', 'demo_lmar_skimage.yml')
ENHANCER_CKPT = osp.join(REPO, 'experiments', 'demo_lmar_enhancer_skimage', 'models', 'net_g_latest.pth')
LMAR_DIR = osp.join(REPO, 'experiments', 'demo_lmar_skimage')
RESULTS = osp.join(REPO, 'results', 'lmar_demo')


def train(options, threads):
    command = [sys.executable, osp.join(REPO, 'basicsr_lmar', 'train.py'), '-opt', options]
    print('running:', ' '.join(command), f'({threads} thread(s))', flush=True)
    # Float reductions are split differently with other thread counts, so training follows another
    # trajectory: the seeded demo reproduces its table digit for digit only at a fixed thread count.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run(command, cwd=REPO, check=True, env=env)


def example_images(lmar_ckpt):
    """Held-out photo 'coffee' (384x576, darkened) enhanced at 1/4 of the area, bicubic, +/- LMAR."""
    sys.path.insert(0, REPO)
    sys.path.insert(0, osp.join(REPO, 'scripts'))
    import torch
    import yaml
    from basicsr.utils.options import ordered_yaml
    from lmar_infer import build_networks  # the inference script's loader (EMA weights when saved)

    from basicsr_lmar.data.skimage_dataset import SkimagePhotoDataset
    from basicsr_lmar.data.image_files import write_image_file

    with open(LMAR_OPT) as handle:
        opt = yaml.load(handle, Loader=ordered_yaml()[0])
    resampler, enhancer = build_networks(LMAR_OPT, lmar_ckpt, ENHANCER_CKPT)
    val = dict(opt['datasets']['val'], phase='val')
    dataset = SkimagePhotoDataset(val)
    sample = next(s for s in (dataset[i] for i in range(len(dataset))) if s['lq_path'].startswith('coffee'))
    x, gt = sample['lq'][None], sample['gt'][None]
    size = (x.shape[-2] // 2, x.shape[-1] // 2)
    outputs = {'input_dark': x, 'gt': gt}
    with torch.no_grad():
        outputs['enhancer_full_size'] = enhancer(x)
        outputs['plain_bicubic_half'] = resampler.enhance(x, enhancer, size, 'bicubic', use_lmar=False)
        outputs['lmar_bicubic_half'] = resampler.enhance(x, enhancer, size, 'bicubic')
    paths = []
    for name, image in outputs.items():
        path = osp.join(RESULTS, f'coffee_{name}.png')
        write_image_file(path, image.clamp(0, 1)[0].permute(1, 2, 0).numpy())
        paths.append(path)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--reuse-enhancer', action='store_true', help='skip stage 1 if its checkpoint exists')
    parser.add_argument('--threads', type=int, default=1,
                        help='intra-op threads of both training stages (1: the documented, reproducible table)')
    args = parser.parse_args()
    if not (args.reuse_enhancer and osp.isfile(ENHANCER_CKPT)):
        train(ENHANCER_OPT, args.threads)
    train(LMAR_OPT, args.threads)
    os.makedirs(RESULTS, exist_ok=True)
    tables = sorted(glob.glob(osp.join(LMAR_DIR, 'visualization', 'lmar_tables', '*')))
    if not tables:
        raise SystemExit(f'no validation table under {LMAR_DIR}/visualization/lmar_tables')
    for path in tables:
        shutil.copy(path, RESULTS)
    lmar_ckpt = osp.join(LMAR_DIR, 'models', 'net_g_latest.pth')
    images = example_images(lmar_ckpt)
    markdown = next(p for p in tables if p.endswith('.md'))
    print('\nLMAR demo: PSNR/SSIM on the held-out photos, without and with LMAR (columns "+LMAR")\n')
    with open(markdown) as handle:
        print(handle.read())
    print(f'saved under {RESULTS}: ' + ', '.join(osp.basename(p) for p in tables + images))


if __name__ == '__main__':
    main()
