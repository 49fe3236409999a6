import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from basicsr_lmar.ops.adaptive_resample import (adaptive_resample, adaptive_resample_chunked,
                                                adaptive_resample_reference, kernel_size_for_scale,
                                                resize_equivalent_kernel)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def delta_maps(n, scale, out_h, out_w, element=None, shift_h=0.0, shift_v=0.0, dtype=torch.float64):
    """A one-hot kernel at ``element`` (default: the centre) and constant offsets."""
    k = kernel_size_for_scale(scale)
    element = (k * k) // 2 if element is None else element
    kernels = torch.zeros(n, k * k, out_h, out_w, dtype=dtype)
    kernels[:, element] = 1
    return (kernels, torch.full_like(kernels, float(shift_h)), torch.full_like(kernels, float(shift_v)))


def random_maps(n, scale, out_h, out_w, dtype=torch.float64, spread=1.2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    k = kernel_size_for_scale(scale)
    kernels = torch.rand(n, k * k, out_h, out_w, generator=generator, dtype=dtype)
    kernels = kernels / kernels.sum(1, keepdim=True)
    offsets = [(torch.rand(n, k * k, out_h, out_w, generator=generator, dtype=dtype) * 2 - 1) * spread
               for _ in range(2)]
    return kernels, offsets[0], offsets[1]


IMPLS = ('reference', 'chunked')


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('scale', [2, 4])
def test_centre_delta_samples_projected_centre(impl, scale):
    img = torch.rand(1, 3, 4 * scale, 3 * scale, dtype=torch.float64)
    out = adaptive_resample(img, *delta_maps(1, scale, 4, 3), scale, impl=impl)
    # (x + 0.5) * s - 0.5 lies between HR pixels s*x + s/2 - 1 and s*x + s/2: the central 2x2 block mean.
    lo = scale // 2 - 1
    blocks = img.unfold(2, scale, scale).unfold(3, scale, scale)  # (1, 3, 4, 3, s, s)
    expected = blocks[..., lo:lo + 2, lo:lo + 2].mean((-1, -2))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize('impl', IMPLS)
def test_offset_unit_shifts_by_scale_pixels(impl):
    scale = 2
    img = torch.rand(1, 2, 12, 12, dtype=torch.float64)
    out = adaptive_resample(img, *delta_maps(1, scale, 6, 6, shift_h=1.0, shift_v=-1.0), scale, impl=impl)
    # Sample at row 2y + 0.5 - 2, column 2x + 0.5 + 2: the 2x2 block one LR pixel up and right.
    for y in range(1, 6):
        for x in range(0, 5):
            expected = img[0, :, 2 * y - 2:2 * y, 2 * x + 2:2 * x + 4].mean((-1, -2))
            torch.testing.assert_close(out[0, :, y, x], expected)
    # Half a unit is one HR pixel: the sample moves to (2y + 1.5, 2x + 1.5), the block shifted by one pixel.
    out = adaptive_resample(img, *delta_maps(1, scale, 6, 6, shift_h=0.5, shift_v=0.5), scale, impl=impl)
    for y in range(0, 5):
        for x in range(0, 5):
            expected = img[0, :, 2 * y + 1:2 * y + 3, 2 * x + 1:2 * x + 3].mean((-1, -2))
            torch.testing.assert_close(out[0, :, y, x], expected)


@pytest.mark.parametrize('impl', IMPLS)
def test_reflection_at_borders(impl):
    scale, k = 2, 7
    img = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    # Centre element, offset -1 unit at x = 0: column 0.5 - 2 = -1.5 -> columns -2, -1 -> reflected 2, 1.
    out = adaptive_resample(img, *delta_maps(1, scale, 4, 4, shift_h=-1.0), scale, impl=impl)
    expected = img[0, 0, 0:2][:, [1, 2]].mean()
    torch.testing.assert_close(out[0, 0, 0, 0], expected)
    # Element (ky, kx) = (0, 0) samples column (x + 0.5) * 2 - 0.5 - 3: at x = 0 columns -3, -2 -> 3, 2;
    # rows likewise -3, -2 -> 3, 2.
    out = adaptive_resample(img, *delta_maps(1, scale, 4, 4, element=0), scale, impl=impl)
    torch.testing.assert_close(out[0, 0, 0, 0], img[0, 0][[2, 3]][:, [2, 3]].mean())
    # Last element (6, 6) at the bottom-right pixel: column 3.5 * 2 - 0.5 + 6 - 3 = 9.5 -> 9, 10 (W = 8)
    # -> reflected 5, 4; rows likewise.
    out = adaptive_resample(img, *delta_maps(1, scale, 4, 4, element=k * k - 1), scale, impl=impl)
    torch.testing.assert_close(out[0, 0, 3, 3], img[0, 0][[4, 5]][:, [4, 5]].mean())


@pytest.mark.parametrize('impl', IMPLS)
def test_clamping_beyond_padding_follows_authors_kernel(impl):
    scale = 2
    img = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    # Element kx = 0, offset -1 unit, x = 0: padded column 1 + 0 - 2 - 0.5 = -1.5. The authors clamp the left
    # neighbour to 0 and take the right one as left + 1 = 1, keeping alpha = 0.5: padded columns 0 and 1
    # = image columns 3 and 2. Rows: element ky = 3 (centre row) -> padded rows 3.5 -> image rows 0, 1.
    k = kernel_size_for_scale(scale)
    out = adaptive_resample(img, *delta_maps(1, scale, 4, 4, element=3 * k, shift_h=-1.0), scale, impl=impl)
    torch.testing.assert_close(out[0, 0, 0, 0], img[0, 0, 0:2][:, [2, 3]].mean())


def test_kernel_weights_sum_channels_alike():
    img = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    kernels, offsets_h, offsets_v = random_maps(2, 2, 4, 4)
    constant = torch.ones_like(img) * 0.7
    out = adaptive_resample(constant, kernels, offsets_h, offsets_v, 2)
    torch.testing.assert_close(out, torch.full_like(out, 0.7))  # normalised kernels preserve constants
    per_channel = torch.cat([adaptive_resample(img[:, c:c + 1], kernels, offsets_h, offsets_v, 2) for c in range(3)], 1)
    torch.testing.assert_close(adaptive_resample(img, kernels, offsets_h, offsets_v, 2), per_channel)


@pytest.mark.parametrize('impl', IMPLS)
def test_gradcheck_float64(impl):
    img = torch.rand(1, 2, 6, 4, dtype=torch.float64, requires_grad=True)
    maps = [t.requires_grad_() for t in random_maps(1, 2, 3, 2, seed=3)]
    if impl == 'chunked':
        function = lambda *a: adaptive_resample_chunked(*a, 2, chunk_elements=1)  # noqa: E731  one row per chunk
    else:
        function = lambda *a: adaptive_resample_reference(*a, 2)  # noqa: E731
    assert torch.autograd.gradcheck(function, (img, *maps), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize('scale', [2, 4])
def test_chunked_equals_reference(scale):
    img = torch.rand(2, 3, 6 * scale, 5 * scale, requires_grad=True)
    maps = [t.float().requires_grad_() for t in random_maps(2, scale, 6, 5, seed=scale)]
    grad_out = torch.randn(2, 3, 6, 5)
    results = []
    for function in (lambda *a: adaptive_resample_reference(*a, scale),
                     lambda *a: adaptive_resample_chunked(*a, scale, chunk_elements=2 * 3 * maps[0].shape[1] * 5 * 2)):
        out = function(img, *maps)
        results.append((out, *torch.autograd.grad(out, (img, *maps), grad_out)))
    for ref, chunked in zip(*results):
        torch.testing.assert_close(chunked, ref, atol=1e-5, rtol=1e-5)


def test_chunked_partial_gradients():
    img = torch.rand(1, 3, 8, 8)
    kernels, offsets_h, offsets_v = (t.float() for t in random_maps(1, 2, 4, 4))
    img.requires_grad_()
    out = adaptive_resample(img, kernels, offsets_h, offsets_v, 2, impl='chunked')
    grad, = torch.autograd.grad(out.sum(), img)
    ref_img = img.detach().requires_grad_()
    ref, = torch.autograd.grad(adaptive_resample_reference(ref_img, kernels, offsets_h, offsets_v, 2).sum(), ref_img)
    torch.testing.assert_close(grad, ref)


def test_bad_inputs_name_shapes():
    img = torch.rand(1, 3, 9, 8)
    kernels, offsets_h, offsets_v = (t.float() for t in random_maps(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r'9x8.*not divisible by scale 2'):
        adaptive_resample(img, kernels, offsets_h, offsets_v, 2)
    img = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r'not a square'):
        adaptive_resample(img, kernels[:, :48], offsets_h[:, :48], offsets_v[:, :48], 2)
    with pytest.raises(ValueError, match=r'kernels shape \(1, 49, 3, 4\).*expected \(1, 49, 4, 4\)'):
        adaptive_resample(img, kernels[:, :, :3], offsets_h, offsets_v, 2)
    with pytest.raises(ValueError, match=r'offsets_v shape \(1, 49, 4, 3\)'):
        adaptive_resample(img, kernels, offsets_h, offsets_v[..., :3], 2)
    with pytest.raises(ValueError, match='impl must be one of'):
        adaptive_resample(img, kernels, offsets_h, offsets_v, 2, impl='cuda')


@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') == '1' or torch.cuda.is_available(),
                    reason='the fused path can run here')
def test_triton_on_cpu_without_interpreter_is_a_clear_error():
    kernels, offsets_h, offsets_v = (t.float() for t in random_maps(1, 2, 4, 4))
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET'):
        adaptive_resample(torch.rand(1, 3, 8, 8), kernels, offsets_h, offsets_v, 2, impl='triton')


TRITON_SCRIPT = textwrap.dedent('''
    import torch
    from basicsr_lmar.ops.adaptive_resample import adaptive_resample
    torch.manual_seed(0)
    # (scale, LR size, batch, channels, input type, tolerance): channel groups of 1, 2 and 4 (RGB) and
    # several groups (6 channels: the map gradients are added across groups); fp16/bf16 inputs (AMP).
    cases = ((2, (3, 4), 2, 3, torch.float32, 1e-5), (4, (3, 2), 1, 2, torch.float32, 1e-5),
             (2, (3, 3), 2, 1, torch.float32, 1e-5), (2, (2, 3), 2, 6, torch.float32, 1e-5),
             (2, (3, 4), 1, 3, torch.float16, 2e-2), (2, (3, 4), 1, 5, torch.bfloat16, 1e-1))
    for scale, (h, w), n, channels, dtype, tolerance in cases:
        k = 3 * scale + 1
        img = torch.rand(n, channels, h * scale, w * scale, requires_grad=True)
        kernels = torch.rand(n, k * k, h, w)
        kernels = (kernels / kernels.sum(1, keepdim=True)).requires_grad_()
        offsets = [((torch.rand(n, k * k, h, w) * 2 - 1) * 1.3).requires_grad_() for _ in range(2)]
        grad_out = torch.randn(n, channels, h, w)
        results = []
        for impl in ('reference', 'triton'):
            inputs = [t.to(dtype) if impl == 'triton' else t for t in (img, kernels, *offsets)]
            out = adaptive_resample(*inputs, scale, impl=impl)
            assert out.dtype == inputs[0].dtype, (impl, out.dtype)
            results.append((out, *torch.autograd.grad(out, (img, kernels, *offsets), grad_out.to(out.dtype))))
        for name, ref, fused in zip(('out', 'img', 'kernels', 'offsets_h', 'offsets_v'), *results):
            error = float((ref - fused.float()).abs().max())
            assert error < tolerance, (scale, channels, dtype, name, error)
        if scale == 4 or dtype != torch.float32:
            continue
        # without an image gradient (the atomics are skipped)
        out = adaptive_resample(img.detach(), kernels, *offsets, scale, impl='triton')
        grads = torch.autograd.grad(out, (kernels, *offsets), grad_out)
        for ref, fused in zip(results[0][2:], grads):
            assert float((ref - fused).abs().max()) < 1e-5
    print('TRITON_OK')
''')


def _has_triton_interpreter():
    """Triton 3's ``TRITON_INTERPRET=1`` interpreter (``triton.runtime.interpreter``); Triton 2.1 has none."""
    return importlib.util.find_spec('triton.runtime.interpreter') is not None


@pytest.mark.slow
def test_triton_equals_reference_in_interpreter():
    triton = pytest.importorskip('triton')
    if not _has_triton_interpreter():
        pytest.skip(f'Triton {triton.__version__} has no TRITON_INTERPRET interpreter; its kernels are compiled '
                    'ahead of time in test_triton_compile.py and run on CUDA in tests/cuda')
    env = dict(os.environ, TRITON_INTERPRET='1', PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run([sys.executable, '-c', TRITON_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and 'TRITON_OK' in result.stdout, result.stderr[-3000:]


def test_triton_interpret_without_an_interpreter_is_a_clear_error():
    """TRITON_INTERPRET=1 with a Triton that has no interpreter (2.1): the fused path on CPU names that."""
    triton = pytest.importorskip('triton')
    if _has_triton_interpreter() or torch.cuda.is_available():
        pytest.skip(f'Triton {triton.__version__} has the interpreter (or a GPU is here): the fused path runs')
    code = ('import torch\n'
            'from basicsr_lmar.ops.adaptive_resample import adaptive_resample\n'
            'maps = [torch.rand(1, 49, 4, 4) for _ in range(3)]\n'
            'adaptive_resample(torch.rand(1, 3, 8, 8), *maps, 2, impl="triton")\n')
    env = dict(os.environ, TRITON_INTERPRET='1', PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f'RuntimeError: adaptive_resample: impl="triton" on a cpu tensor needs Triton\'s interpreter '
        f'(TRITON_INTERPRET=1), which Triton {triton.__version__} does not have; use impl="auto" or "chunked", or a '
        'CUDA tensor.')


@pytest.mark.parametrize('impl', IMPLS)
def test_full_gradcheck_tiny(impl):
    """Every entry of the Jacobian (fast_mode above checks random projections of larger cases)."""
    img = torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    maps = [t.requires_grad_() for t in random_maps(1, 2, 2, 2, seed=5)]
    if impl == 'chunked':
        function = lambda *a: adaptive_resample_chunked(*a, 2, chunk_elements=1)  # noqa: E731
    else:
        function = lambda *a: adaptive_resample_reference(*a, 2)  # noqa: E731
    assert torch.autograd.gradcheck(function, (img, *maps), eps=1e-6, atol=1e-5)


def _cpu_autocast_enabled():
    """``torch.is_autocast_enabled('cpu')``; older torch (2.1) asks ``torch.is_autocast_cpu_enabled()``."""
    try:
        return torch.is_autocast_enabled('cpu')
    except TypeError:
        return torch.is_autocast_cpu_enabled()


def _cpu_autocast_supports(dtype):
    try:
        with torch.autocast('cpu', dtype=dtype):
            return True
    except RuntimeError:  # torch 2.1: "AutocastCPU only support Bfloat16"
        return False


@pytest.mark.parametrize('amp_dtype', [torch.bfloat16, torch.float16])
def test_car_arch_feeds_the_op_float32_outside_autocast(amp_dtype, monkeypatch):
    """What AMP feeds the op through the CAR chain: the network's maps come out in the autocast type, and
    ``apply_maps`` hands the op float32 tensors with autocast off (so on CUDA the fused kernels run their
    float32 variant; their fp16/bf16 variants serve direct callers and are compiled in test_triton_compile)."""
    from basicsr_lmar.archs import car_arch
    if not _cpu_autocast_supports(amp_dtype):
        pytest.skip(f'torch {torch.__version__} has no CPU autocast to {amp_dtype}')
    seen = []

    def spy(img, kernels, offsets_h, offsets_v, scale, impl='auto'):
        seen.append(([t.dtype for t in (img, kernels, offsets_h, offsets_v)], _cpu_autocast_enabled()))
        return adaptive_resample(img, kernels, offsets_h, offsets_v, scale, impl=impl)

    monkeypatch.setattr(car_arch, 'adaptive_resample', spy)
    torch.manual_seed(0)
    net = car_arch.CARResamplerNet(scale=2, num_feat=4, body_feat=4, top_feat=8, num_block=1)
    hr = torch.rand(1, 3, 16, 16)
    with torch.autocast('cpu', dtype=amp_dtype):
        maps = net(hr)
        lr = net.apply_maps(hr, maps, rounding='ste')
    assert {m.dtype for m in maps} == {amp_dtype}
    assert seen == [([torch.float32] * 4, False)]
    assert lr.dtype == torch.float32


def test_triton_path_names_unsupported_types():
    pytest.importorskip('triton')
    from basicsr_lmar.ops._adaptive_resample_triton import common_dtype
    maps = random_maps(1, 2, 4, 4)  # float64
    with pytest.raises(TypeError, match=r'float64 .*float32, float16, bfloat16.*impl="chunked"'):
        common_dtype(torch.rand(1, 3, 8, 8), *maps)
    assert common_dtype(torch.rand(1, 3, 8, 8).half(), *(m.half() for m in maps)) == torch.float16
    assert common_dtype(torch.rand(1, 3, 8, 8).half(), *(m.float() for m in maps)) == torch.float32


@pytest.mark.parametrize('scale, atol', [(2, 1e-6), (4, 2e-3)])
def test_resize_equivalent_kernel_reproduces_bicubic_downscaling(scale, atol):
    """One kernel everywhere, zero offsets: the op's LR is bicubic downscaling (exact at x2; at x4 the two
    outermost bicubic taps lie beyond the op's reach)."""
    from basicsr_lmar.ops.resize import resize

    torch.manual_seed(0)
    img = torch.rand(1, 3, 12 * scale, 10 * scale, dtype=torch.float64)
    img = resize(resize(img, (6, 5), 'bicubic'), tuple(img.shape[-2:]), 'bicubic')  # smooth, photo-like
    img = img + 0.05 * torch.rand_like(img)
    kernel = resize_equivalent_kernel(scale)
    k = kernel_size_for_scale(scale)
    assert kernel.shape == (k * k, ) and kernel.sum().item() == pytest.approx(1.0)
    assert kernel.min() < 0  # bicubic's negative lobes
    kernels = kernel.view(1, -1, 1, 1).expand(1, k * k, 12, 10).contiguous()
    zeros = torch.zeros_like(kernels)
    out = adaptive_resample_reference(img, kernels, zeros, zeros, scale)
    expected = resize(img, (12, 10), 'bicubic', antialias=True, boundary='reflect')
    torch.testing.assert_close(out, expected, atol=atol, rtol=0)
    if scale == 4:  # and not by accident: the box kernel (as good as bicubic under bicubic upscaling) is 5x further off
        box = torch.zeros(k, k, dtype=torch.float64)
        box[k // 2 - 1:k // 2 + 2, k // 2 - 1:k // 2 + 2] = 1 / 9
        boxed = adaptive_resample_reference(img, box.view(1, -1, 1, 1).expand_as(kernels).contiguous(), zeros,
                                            zeros, scale)
        assert (boxed - expected).abs().max() > 5 * (out - expected).abs().max()
