"""Training entry (Real-ESRGAN style): ``python basicsr_lmar/train.py -opt options/X.yml``.

Importing :mod:`basicsr_lmar` registers the plugin; BasicSR's own pipeline does the rest.
"""
import os
import os.path as osp

import basicsr_lmar  # noqa: F401  (registers archs, models, losses, datasets)
from basicsr.train import train_pipeline


def main(root_path=None):
    """``experiments/``, ``results/`` and ``tb_logger/`` go under ``root_path``: the repository for
    ``python basicsr_lmar/train.py`` (as in BasicSR), the current directory for the console script."""
    train_pipeline(root_path or os.getcwd())


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
