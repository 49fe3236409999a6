"""The CUDA tier: what only a GPU shows (``pytest -m cuda``; every test here skips without a device).

``scripts/gpu_check.sh`` runs it on a GPU machine together with the GPU benchmarks.
"""
import pytest
import torch

CUDA_ONLY = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]
