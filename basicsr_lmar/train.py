"""Training entry (Real-ESRGAN style): ``python basicsr_lmar/train.py -opt options/X.yml``.

Importing :mod:`basicsr_lmar` registers the plugin; basicsr's own ``train_pipeline`` does the rest,
with the plugin's distributed (gloo/NCCL) and exact-resume fixes installed (:mod:`basicsr_lmar.runtime.pipeline`).
Also ``torchrun --nproc_per_node=N basicsr_lmar/train.py -opt X.yml --launcher pytorch``.
"""
import os
import os.path as osp
import sys

import basicsr_lmar  # noqa: F401  (registers archs, models, losses, datasets)
from basicsr_lmar.runtime import pipeline


def main(root_path=None):
    """``experiments/`` and ``tb_logger/`` go under ``root_path``: the repository for
    ``python basicsr_lmar/train.py`` (as in BasicSR), the current directory for the console script."""
    train_module, _ = pipeline.install(sys.argv[1:])
    train_module.train_pipeline(root_path or os.getcwd())


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
