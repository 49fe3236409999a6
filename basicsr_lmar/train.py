"""Training entry (Real-ESRGAN style): ``python basicsr_lmar/train.py -opt options/X.yml``.

Importing :mod:`basicsr_lmar` registers the plugin; the option file is checked first
(:mod:`basicsr_lmar.preflight`: before any folder is created or anything is built, a mistake ends with
one message and exit code 2; ``BASICSR_LMAR_DEBUG=1`` shows its traceback); then basicsr's own
``train_pipeline`` does the rest, with the plugin's distributed (gloo/NCCL) and exact-resume fixes
installed (:mod:`basicsr_lmar.runtime.pipeline`).
Also ``torchrun --nproc_per_node=N basicsr_lmar/train.py -opt X.yml --launcher pytorch``.
"""
import os
import os.path as osp
import sys

import basicsr_lmar  # noqa: F401  (registers archs, models, losses, datasets)
from basicsr_lmar import preflight
from basicsr_lmar.cli.errors import run_main
from basicsr_lmar.runtime import pipeline
from basicsr_lmar.runtime.dist import destroy_process_group


def run(argv, root_path=None, is_train=True):
    """The preflight of ``-opt``, then basicsr's pipeline (``argv`` is what basicsr's parser reads), which
    hands the preflight's notices to the model."""
    checked = preflight.check_option_file(argv, is_train)
    train_module, test_module = pipeline.install(argv)
    module = train_module if is_train else test_module
    module.parse_options = preflight.checked_parse_options(module.parse_options, checked)
    (module.train_pipeline if is_train else module.test_pipeline)(root_path or os.getcwd())
    destroy_process_group()


def main(root_path=None):
    """``experiments/`` and ``tb_logger/`` go under ``root_path``: the repository for
    ``python basicsr_lmar/train.py`` (as in BasicSR), the current directory for the console script."""
    # basicsr's --debug is its debug mode (a debug_ run name): tracebacks of input errors only with
    # BASICSR_LMAR_DEBUG=1 here
    run_main(lambda argv: run(sys.argv[1:], root_path), argv=[])


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
