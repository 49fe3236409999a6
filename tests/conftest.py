import os
import pathlib

import pytest
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The authors' released files live beside the project, never inside it (see ../shared/reference/README.md).
REFERENCE_DIR = pathlib.Path(os.environ.get('BASICSR_LMAR_REFERENCE', REPO_ROOT.parent / 'shared' / 'reference'))


@pytest.fixture
def reference_file():
    """Returns a function that gives the path of a reference file or skips the test with the reason."""

    def get(relative):
        path = REFERENCE_DIR / relative
        if not path.is_file():
            pytest.skip(f'reference file {path} is absent (set BASICSR_LMAR_REFERENCE to its folder)')
        return path

    return get


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Test tensors are tiny: intra-op threads only add overhead (and contend on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
