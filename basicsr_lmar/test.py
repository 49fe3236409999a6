"""Testing entry: ``python basicsr_lmar/test.py -opt options/test_X.yml``.

The option file is checked first (:mod:`basicsr_lmar.preflight`): a mistake ends with one message and
exit code 2, before ``results/`` is created or anything is built.
"""
import os.path as osp
import sys

import basicsr_lmar  # noqa: F401  (registers archs, models, losses, datasets)
from basicsr_lmar.cli.errors import run_main
from basicsr_lmar.train import run


def main(root_path=None):
    """Results go under ``root_path``: the repository for ``python basicsr_lmar/test.py``, the current
    directory for the console script."""
    run_main(lambda argv: run(sys.argv[1:], root_path, is_train=False), argv=[])


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
