"""Ops on CUDA: the fused Triton CAR kernels equal the reference (forward and backward), resize equals CPU."""
import itertools

import pytest
import torch

from basicsr_lmar.ops.adaptive_resample import adaptive_resample, kernel_size_for_scale
from basicsr_lmar.ops.resize import BOUNDARIES, KERNELS, resize
from tests.cuda import CUDA_ONLY

pytestmark = CUDA_ONLY


def _inputs(n, channels, out_h, out_w, scale, seed, spread=1.3):
    generator = torch.Generator().manual_seed(seed)
    k2 = kernel_size_for_scale(scale)**2
    img = torch.rand(n, channels, out_h * scale, out_w * scale, generator=generator, dtype=torch.float64)
    kernels = torch.rand(n, k2, out_h, out_w, generator=generator, dtype=torch.float64)
    kernels = kernels / kernels.sum(1, keepdim=True)
    offsets = [(torch.rand(n, k2, out_h, out_w, generator=generator, dtype=torch.float64) * 2 - 1) * spread
               for _ in range(2)]
    grad_out = torch.randn(n, channels, out_h, out_w, generator=generator, dtype=torch.float64)
    return [img, kernels, *offsets], grad_out


def _run(impl, inputs, grad_out, scale, dtype, device='cuda'):
    leaves = [t.to(device=device, dtype=dtype).requires_grad_() for t in inputs]
    out = adaptive_resample(*leaves, scale, impl=impl)
    grads = torch.autograd.grad(out, leaves, grad_out.to(device=device, dtype=out.dtype))
    return [out, *grads]


# (batch, channels, LR h, LR w, scale): tiny, odd sizes, several channel groups, a 2K-like frame at x4
CASES = [(1, 3, 5, 7, 2), (2, 3, 16, 24, 2), (1, 1, 9, 4, 4), (2, 6, 8, 8, 2), (1, 3, 64, 96, 4), (1, 3, 339, 510, 4)]


@pytest.mark.parametrize('case', CASES, ids=lambda c: 'x'.join(map(str, c)))
def test_triton_equals_reference_forward_and_backward(case):
    n, channels, out_h, out_w, scale = case
    inputs, grad_out = _inputs(n, channels, out_h, out_w, scale, seed=sum(case))
    reference = _run('reference', inputs, grad_out, scale, torch.float64)
    fused = _run('triton', inputs, grad_out, scale, torch.float32)
    for name, ref, got in zip(('out', 'img', 'kernels', 'offsets_h', 'offsets_v'), reference, fused):
        scale_of = ref.abs().max().clamp(min=1)
        error = float((got.double() - ref).abs().max() / scale_of)
        assert error < 2e-5, (case, name, error)


@pytest.mark.parametrize('dtype,tolerance', [(torch.float16, 1e-2), (torch.bfloat16, 6e-2)])
def test_triton_reduced_precision_inputs(dtype, tolerance):
    inputs, grad_out = _inputs(2, 3, 12, 20, 2, seed=7)
    reference = _run('reference', inputs, grad_out, 2, torch.float64)
    fused = _run('triton', inputs, grad_out, 2, dtype)
    assert fused[0].dtype == dtype
    for name, ref, got in zip(('out', 'img', 'kernels', 'offsets_h', 'offsets_v'), reference, fused):
        error = float((got.double() - ref).abs().max() / ref.abs().max().clamp(min=1))
        assert error < tolerance, (name, error)


def test_auto_picks_triton_and_chunked_equals_reference_on_cuda(monkeypatch):
    from basicsr_lmar.ops import _adaptive_resample_triton as fused
    calls = []
    original = fused.Launch.__call__
    monkeypatch.setattr(fused.Launch, '__call__', lambda self: calls.append(self.kernel.__name__) or original(self))
    inputs, grad_out = _inputs(1, 3, 10, 12, 4, seed=3)
    auto = _run('auto', inputs, grad_out, 4, torch.float32)
    assert calls == ['_car_forward_kernel', '_car_backward_kernel']
    chunked = _run('chunked', inputs, grad_out, 4, torch.float32)
    reference = _run('reference', inputs, grad_out, 4, torch.float32)
    for ref, a, c in zip(reference, auto, chunked):
        torch.testing.assert_close(a, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c, ref, rtol=1e-4, atol=1e-5)


def test_triton_memory_is_o_of_input_and_output():
    """Forward + backward of a 2040x1356 frame at x4 allocates the inputs, the output and the gradients, not
    the k^2 x output samples that the reference keeps (169 x 3 x 339 x 510 floats = 350 MB for one copy)."""
    inputs, grad_out = _inputs(1, 3, 339, 510, 4, seed=1)
    leaves = [t.float().cuda().requires_grad_() for t in inputs]
    grad_out = grad_out.float().cuda()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = adaptive_resample(*leaves, 4, impl='triton')
    grads = torch.autograd.grad(out, leaves, grad_out)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    result_bytes = out.numel() * 4 + sum(g.numel() * 4 for g in grads)
    assert peak <= 1.5 * result_bytes + 8 * 2**20, (peak / 2**20, result_bytes / 2**20)


def test_resize_on_cuda_equals_cpu_including_the_periodic_width_pass():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 96, generator=generator, dtype=torch.float64)
    for kernel, boundary, size in itertools.product(KERNELS, BOUNDARIES, [(32, 48), (128, 192), (20, 90)]):
        torch.testing.assert_close(resize(x.cuda(), size, kernel, False, boundary).cpu(),
                                   resize(x, size, kernel, False, boundary), rtol=0, atol=1e-10)
    xg = x.cuda().requires_grad_()
    resize(xg, (32, 48), 'lanczos3', False).square().sum().backward()
    xc = x.clone().requires_grad_()
    resize(xc, (32, 48), 'lanczos3', False).square().sum().backward()
    torch.testing.assert_close(xg.grad.cpu(), xc.grad, rtol=0, atol=1e-10)
