"""``make demo``: the main job on the embedded default data (scikit-image's bundled photos).

Placeholder until the LMAR demo lands: trains a small stock BasicSR EDSR ×2 for a few hundred
iterations on crops of the training photos through the plugin's train entry, then validates on the
held-out photos. Everything it writes goes under ``experiments/``.
"""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    options = os.path.join(REPO, 'options', 'demo_edsr_skimage.yml')
    command = [sys.executable, os.path.join(REPO, 'basicsr_lmar', 'train.py'), '-opt', options]
    print('running:', ' '.join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)
    print(f'\ndemo done: see {os.path.join(REPO, "experiments", "demo_edsr_x2_skimage")}')


if __name__ == '__main__':
    main()
