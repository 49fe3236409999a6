"""Testing entry: ``python basicsr_lmar/test.py -opt options/test_X.yml``."""
import os
import os.path as osp
import sys

import basicsr_lmar  # noqa: F401  (registers archs, models, losses, datasets)
from basicsr_lmar.runtime import pipeline


def main(root_path=None):
    """Results go under ``root_path``: the repository for ``python basicsr_lmar/test.py``, the current
    directory for the console script."""
    _, test_module = pipeline.install(sys.argv[1:])
    test_module.test_pipeline(root_path or os.getcwd())


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
