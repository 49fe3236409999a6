"""LMAR on CUDA: the torch MLP equals CPU; tiny-cuda-nn (when importable) holds the 79,872 parameters of the
layout and gives the torch backend's output for the same flat vector; without it ``auto`` warns why."""
import warnings

import pytest
import torch

from basicsr_lmar.archs import lmar_arch
from basicsr_lmar.archs.lmar_arch import LMARResampler
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet
from tests.cuda import CUDA_ONLY

pytestmark = CUDA_ONLY


def _image(h=48, w=64, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_torch_mlp_resampler_on_cuda_equals_cpu_forward_and_backward():
    torch.manual_seed(0)
    cpu = LMARResampler(mlp_backend='torch', tile_memory_mb=1)  # small tiles: the tiled path runs too
    gpu = LMARResampler(mlp_backend='torch', tile_memory_mb=1).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(gpu(x.cuda(), (24, 32)).cpu(), cpu(x, (24, 32)), rtol=1e-4, atol=1e-5)
    for net, device in ((cpu, 'cpu'), (gpu, 'cuda')):
        net.zero_grad()
        net(x.to(device), (20, 27)).square().mean().backward()
    for (name, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters()):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-3, atol=1e-6, msg=lambda m, n=name: f'{n}: {m}')


def test_enhance_pipeline_on_cuda_equals_cpu():
    torch.manual_seed(1)
    resampler, enhancer = LMARResampler(mlp_backend='torch').eval(), UHDUNet(model_channel=4).eval()
    x = _image(64, 96, seed=2)
    expected = resampler.enhance(x, enhancer, (32, 48))
    got = resampler.cuda().enhance(x.cuda(), enhancer.cuda(), (32, 48))
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-4)


def test_tcnn_backend_matches_the_torch_layout():
    if not lmar_arch.tcnn_available():
        pytest.skip(f'tiny-cuda-nn backend unavailable: {lmar_arch.tcnn_unavailable_reason()}')
    tcnn = LMARResampler(mlp_backend='tcnn').cuda()
    assert tcnn.imnet.params.numel() == 79_872 == tcnn.layout.numel
    reference = LMARResampler(mlp_backend='torch').cuda()
    reference.load_state_dict(tcnn.state_dict(), strict=True)  # the same flat vector, unchanged
    x = _image().cuda()
    with torch.no_grad():
        got, expected = tcnn(x, (24, 32)), reference(x, (24, 32))
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=5e-3)  # tcnn runs the MLP in fp16


def test_auto_backend_falls_back_with_a_reason_when_tcnn_is_missing():
    if lmar_arch.tcnn_available():
        assert LMARResampler(mlp_backend='auto').mlp_backend == 'tcnn'
        return
    with pytest.warns(RuntimeWarning, match='torch MLP on this CUDA machine because'):
        resampler = LMARResampler(mlp_backend='auto')
    assert resampler.mlp_backend == 'torch'
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        LMARResampler(mlp_backend='torch')
