"""``mlp_backend: auto`` on a CUDA machine without tiny-cuda-nn falls back to the torch MLP and says why."""
import warnings

import pytest
import torch

from basicsr_lmar.archs import lmar_arch
from basicsr_lmar.archs.lmar_arch import LMARResampler


def test_auto_on_cuda_without_tcnn_warns_with_the_reason(monkeypatch):
    monkeypatch.setattr(lmar_arch, '_tcnn', None)
    monkeypatch.setattr(lmar_arch, '_TCNN_IMPORT_ERROR', "ModuleNotFoundError: No module named 'tinycudann'")
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    with pytest.warns(RuntimeWarning, match=r"torch MLP on this CUDA machine because tinycudann does not import "
                      r"\(ModuleNotFoundError: No module named 'tinycudann'\)"):
        resampler = LMARResampler(mlp_backend='auto')
    assert resampler.mlp_backend == 'torch'
    assert resampler.imnet.params.numel() == 79_872


def test_explicit_torch_and_cpu_only_machines_stay_silent(monkeypatch):
    monkeypatch.setattr(lmar_arch, '_tcnn', None)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        assert LMARResampler(mlp_backend='torch').mlp_backend == 'torch'
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
        assert LMARResampler(mlp_backend='auto').mlp_backend == 'torch'  # CPU: torch is the only backend


def test_reason_names_a_missing_device(monkeypatch):
    monkeypatch.setattr(lmar_arch, '_tcnn', object())
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert lmar_arch.tcnn_unavailable_reason() == 'CUDA is not available'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert lmar_arch.tcnn_unavailable_reason() is None
