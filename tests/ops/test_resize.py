"""The fast ``resize`` against resize_right (``resize_reference``) and F.interpolate('nearest-exact')."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from basicsr_lmar.ops import resize as resize_module
from basicsr_lmar.ops.resize import BOUNDARIES, KERNELS, resize, resize_reference

FILTER_KERNELS = [k for k in KERNELS if k != 'nearest']

# (input h, w) -> (output h, w): down, up, aspect change, non-integer factors, 1-pixel edge cases.
SIZE_PAIRS = [
    ((16, 24), (8, 12)),  # exact 2x down
    ((18, 30), (7, 11)),  # non-integer down, different per axis
    ((9, 11), (20, 31)),  # non-integer up
    ((12, 16), (7, 27)),  # down in h, up in w
    ((27, 48), (15, 20)),  # 2160x3840 -> 1200x1600 in miniature (1.8x / 2.4x)
    ((5, 7), (1, 2)),  # to a single row
    ((1, 6), (4, 6)),  # from a single row, width unchanged
    ((3, 3), (3, 3)),  # identity
]


def _reference_supports(in_size, out_size, kernel, antialias, boundary):
    """resize_right's reflect padding (F.pad) fails when a window reaches further than the input size
    beyond the border; our reflect keeps mirroring there, so such cases have no reference."""
    if boundary != 'reflect':
        return True
    for n_in, n_out in zip(in_size, out_size):
        if n_in != n_out:
            indices, _ = resize_module.axis_taps(n_in, n_out, kernel, antialias)
            if -indices.min() >= n_in or indices.max() - (n_in - 1) >= n_in:
                return False
    return True


@pytest.mark.parametrize('boundary', BOUNDARIES)
@pytest.mark.parametrize('antialias', [True, False])
@pytest.mark.parametrize('kernel', FILTER_KERNELS)
def test_matches_resize_right(kernel, antialias, boundary):
    generator = torch.Generator().manual_seed(0)
    for dtype, (in_size, out_size) in itertools.product([torch.float32, torch.float64], SIZE_PAIRS):
        if not _reference_supports(in_size, out_size, kernel, antialias, boundary):
            continue
        x = torch.rand(2, 3, *in_size, generator=generator, dtype=dtype)
        expected = resize_reference(x, out_size, kernel, antialias, boundary)
        got = resize(x, out_size, kernel, antialias, boundary)
        assert got.shape == expected.shape == (2, 3, *out_size)
        assert got.dtype == dtype
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5,
                                   msg=lambda m: f'{kernel} aa={antialias} {boundary} {in_size}->{out_size} '
                                                 f'{dtype}: {m}')


@pytest.mark.parametrize('kernel', FILTER_KERNELS)
def test_matches_resize_right_on_long_axes(kernel):
    """Long axes (2160 -> 1200, 1080 -> 2160) where the float32 projected grid has coarse rounding: the
    windows must still be the same as resize_right's (the box kernel is sensitive to that)."""
    generator = torch.Generator().manual_seed(1)
    for (in_h, out_h), antialias in itertools.product([(2160, 1201), (1080, 2160)], [True, False]):
        x = torch.rand(1, 1, in_h, 1, generator=generator)
        expected = resize_reference(x, (out_h, 1), kernel, antialias)
        torch.testing.assert_close(resize(x, (out_h, 1), kernel, antialias), expected, rtol=0, atol=1e-5)


def test_constant_boundary_keeps_resize_right_border_darkening():
    """With zero padding the weights are normalised over the whole window, so a constant image gets
    darker at the border when upscaling with bicubic (the negative lobe reads a zero): not renormalised."""
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    out = resize(x, (8, 8), 'bicubic', boundary='constant')
    assert out[0, 0, 4, 4] == pytest.approx(1.0)
    assert out[0, 0, 0, 0] != pytest.approx(1.0)
    for boundary in ('reflect', 'replicate'):
        torch.testing.assert_close(resize(x, (8, 8), 'bicubic', boundary=boundary),
                                   torch.ones(1, 1, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize('kernel,boundary', [('bicubic', 'constant'), ('lanczos3', 'reflect'), ('box', 'replicate'),
                                             ('bilinear', 'reflect')])
def test_gradients_match_autograd_through_resize_right(kernel, boundary):
    generator = torch.Generator().manual_seed(2)
    for antialias, (in_size, out_size) in itertools.product([True, False], [((17, 23), (9, 31)), ((12, 8), (20, 5))]):
        x = torch.rand(2, 2, *in_size, generator=generator, dtype=torch.float64, requires_grad=True)
        upstream = torch.randn(2, 2, *out_size, generator=generator, dtype=torch.float64)
        reference = resize_reference(x, out_size, kernel, antialias, boundary)
        (expected,) = torch.autograd.grad((reference * upstream).sum(), x)
        (got,) = torch.autograd.grad((resize(x, out_size, kernel, antialias, boundary) * upstream).sum(), x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize('kernel', ['bicubic', 'lanczos2', 'nearest'])
def test_gradcheck_float64(kernel):
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    for boundary in ('constant', 'reflect'):
        fn = lambda t: resize(t, (3, 8), kernel, True, boundary)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_nearest_matches_nearest_exact():
    generator = torch.Generator().manual_seed(3)
    for in_size, out_size in [((7, 9), (3, 4)), ((5, 6), (11, 13)), ((16, 16), (8, 24)), ((2160, 40), (1200, 17)),
                              ((1, 3), (4, 1))]:
        x = torch.rand(1, 2, *in_size, generator=generator)
        expected = F.interpolate(x, size=out_size, mode='nearest-exact')
        for antialias, boundary in itertools.product([True, False], BOUNDARIES):  # neither changes point sampling
            assert torch.equal(resize(x, out_size, 'nearest', antialias, boundary), expected)


def test_nearest_exact_tie_goes_to_the_right():
    """14 -> 23: output 11 has its centre at (11 + 1/2) * 14 / 23 = 7 exactly, the border of input
    pixels 6 and 7; it copies pixel 7 (floor), computed in exact integers."""
    x = torch.arange(14.).view(1, 1, 14, 1)
    assert resize(x, (23, 1), 'nearest')[0, 0, 11, 0].item() == 7.0


def test_accepts_chw_hw_and_extra_leading_dims():
    x = torch.rand(2, 3, 4, 10, 12, dtype=torch.float64)
    batched = resize(x.view(24, 10, 12)[None], (7, 5))[0]
    torch.testing.assert_close(resize(x, (7, 5)), batched.view(2, 3, 4, 7, 5))
    torch.testing.assert_close(resize(x[0, 0], (7, 5)), batched[:4])
    torch.testing.assert_close(resize(x[0, 0, 0], (7, 5)), batched[0])


def test_non_contiguous_input_and_identity():
    x = torch.rand(1, 3, 12, 10).transpose(-1, -2)  # (1, 3, 10, 12), non-contiguous
    torch.testing.assert_close(resize(x, (5, 7)), resize_reference(x.contiguous(), (5, 7)), rtol=0, atol=1e-5)
    same = resize(x, (10, 12))
    assert torch.equal(same, x) and same.data_ptr() != x.data_ptr()


def test_operator_is_cached_and_sparse():
    resize_module._axis_operator.cache_clear()
    x = torch.rand(1, 1, 40, 40)
    resize(x, (20, 30))
    resize(x, (20, 30))
    info = resize_module._axis_operator.cache_info()
    assert info.misses == 2 and info.hits == 2
    operator = resize_module._axis_operator(2160, 540, 'bicubic', True, 'constant', torch.device('cpu'), torch.float32)
    assert operator.taps == 16  # bicubic support 4, stretched 4x by antialiasing: a short band, not the axis
    dense = operator.dense()
    torch.testing.assert_close(operator.transposed.dense(), dense.t())
    row_sums = dense.sum(1)
    torch.testing.assert_close(row_sums[2:-2], torch.ones(536), rtol=0, atol=1e-5)  # windows inside the image
    assert row_sums[0] < 0.99 and row_sums[-1] < 0.99  # zero padding: border windows lose the outside weight


def test_both_pass_orders_agree():
    """The fast path picks the cheaper pass order; the result must not depend on it."""
    x = torch.rand(2, 1, 30, 20, dtype=torch.float64)
    h = resize_module._axis_operator(30, 12, 'lanczos3', True, 'reflect', x.device, x.dtype)
    w = resize_module._axis_operator(20, 45, 'lanczos3', True, 'reflect', x.device, x.dtype)
    x3 = x.view(2, 30, 20)
    height_first = resize_module._resample_columns(resize_module._resample_rows(x3, h), w)
    width_first = resize_module._resample_rows(resize_module._resample_columns(x3, w), h)
    torch.testing.assert_close(height_first, width_first, rtol=0, atol=1e-12)
    torch.testing.assert_close(resize(x, (12, 45), 'lanczos3', True, 'reflect').view(2, 12, 45), height_first)


# (n_in, n_out): x1/2, x1/4, x1/3 take the block products (integer downscaling); x2, x2/3, x3/2 and
# 1080 -> 1201 (period 1201; the float32 grid of x3/2 is inexact, so its weights differ between periods)
# take the row kernel on the transposed image.
PERIODIC_PAIRS = [(64, 32), (96, 24), (96, 32), (32, 64), (48, 32), (32, 48), (1080, 1201)]


@pytest.mark.parametrize('boundary', BOUNDARIES)
@pytest.mark.parametrize('kernel', FILTER_KERNELS)
def test_width_pass_without_transposes_equals_the_row_kernel(kernel, boundary):
    """The width pass's block GEMMs (periodic operators) give the operator's own result: the row kernel on
    the transposed image, to float64 rounding, borders included."""
    generator = torch.Generator().manual_seed(4)
    for (n_in, n_out), antialias in itertools.product(PERIODIC_PAIRS, [True, False]):
        operator = resize_module._axis_operator(n_in, n_out, kernel, antialias, boundary, torch.device('cpu'),
                                                torch.float64)
        if (n_in, n_out) in PERIODIC_PAIRS[:3]:
            assert operator.periodic is not None, (n_in, n_out, antialias)
        else:
            assert operator.periodic is None, (n_in, n_out, antialias)
        x = torch.rand(2, 3, n_in, generator=generator, dtype=torch.float64)
        expected = operator.apply_rows(x.transpose(1, 2).contiguous()).transpose(1, 2)
        torch.testing.assert_close(operator.apply_columns(x), expected, rtol=0, atol=1e-12,
                                   msg=lambda m: f'{n_in}->{n_out} aa={antialias}: {m}')


@pytest.mark.parametrize('kernel', ['bicubic', 'lanczos3'])
def test_long_width_axes_match_resize_right(kernel):
    """2160x3840 -> 1080x1920 along the width (the released LMAR resizer: no antialiasing), and back up."""
    generator = torch.Generator().manual_seed(5)
    for (in_w, out_w), antialias in itertools.product([(3840, 1920), (1920, 3840)], [False, True]):
        x = torch.rand(1, 2, 3, in_w, generator=generator)
        periodic = resize_module._axis_operator(in_w, out_w, kernel, antialias, 'constant', x.device,
                                                x.dtype).periodic
        assert (periodic is not None) == (out_w < in_w)
        expected = resize_reference(x, (3, out_w), kernel, antialias)
        torch.testing.assert_close(resize(x, (3, out_w), kernel, antialias), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize('boundary', ['constant', 'reflect'])
def test_gradcheck_float64_through_the_periodic_width_pass(boundary):
    x = torch.rand(1, 2, 8, 16, dtype=torch.float64, requires_grad=True)
    for size in ((4, 8), (16, 32)):
        fn = lambda t: resize(t, size, 'bicubic', False, boundary)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize('size,match', [
    ((0, 4), 'size must be a pair'),
    ((3, -1), 'size must be a pair'),
    ((2.5, 4), 'size must be a pair'),
    ((4,), 'size must be a pair'),
    ((True, 4), 'size must be a pair'),
])
def test_rejects_bad_sizes(size, match):
    with pytest.raises(ValueError, match=match) as info:
        resize(torch.rand(1, 1, 8, 8), size)
    assert repr(size) in str(info.value)


def test_rejects_bad_arguments():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"unknown kernel 'cubic2'; allowed: nearest, bilinear, bicubic"):
        resize(x, (4, 4), kernel='cubic2')
    with pytest.raises(ValueError, match=r"unknown boundary 'wrap'; allowed: constant, reflect, replicate"):
        resize(x, (4, 4), boundary='wrap')
    with pytest.raises(TypeError, match='size must be a pair'):
        resize(x, 4)
    with pytest.raises(ValueError, match=r'at least 2 dims .* got shape \(8,\)'):
        resize(torch.rand(8), (4, 4))
    with pytest.raises(TypeError, match='floating-point tensor, got dtype torch.uint8'):
        resize(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), (4, 4))


def test_kernel_aliases():
    x = torch.rand(1, 1, 9, 9)
    for alias, name in resize_module.KERNEL_ALIASES.items():
        assert torch.equal(resize(x, (4, 5), alias), resize(x, (4, 5), name))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 37, 53, dtype=torch.float64)
    for kernel, boundary in itertools.product(KERNELS, BOUNDARIES):
        torch.testing.assert_close(resize(x.cuda(), (20, 90), kernel, True, boundary).cpu(),
                                   resize(x, (20, 90), kernel, True, boundary), rtol=0, atol=1e-10)
    xg = x.cuda().requires_grad_()
    resize(xg, (20, 90)).square().sum().backward()
    xc = x.clone().requires_grad_()
    resize(xc, (20, 90)).square().sum().backward()
    torch.testing.assert_close(xg.grad.cpu(), xc.grad, rtol=0, atol=1e-10)


def test_fold_boundary_by_hand():
    """n = 3, pixels [a, b, c]: reflect continues ... c b | a b c | b a b c ..., replicate clamps,
    constant marks outside positions as reading zero."""
    indices = torch.arange(-4, 7)
    folded, inside = resize_module.fold_boundary(indices, 3, 'reflect')
    assert folded.tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2] and inside.all()
    folded, inside = resize_module.fold_boundary(indices, 3, 'replicate')
    assert folded.tolist() == [0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2] and inside.all()
    _, inside = resize_module.fold_boundary(indices, 3, 'constant')
    assert inside.tolist() == [False] * 4 + [True] * 3 + [False] * 4
    folded, _ = resize_module.fold_boundary(indices, 1, 'reflect')
    assert folded.tolist() == [0] * 11


def test_nearest_gradient_matches_nearest_exact():
    x = torch.rand(1, 2, 9, 7, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(1, 2, 4, 12, dtype=torch.float64)
    (expected,) = torch.autograd.grad((F.interpolate(x, size=(4, 12), mode='nearest-exact') * upstream).sum(), x)
    (got,) = torch.autograd.grad((resize(x, (4, 12), 'nearest') * upstream).sum(), x)
    torch.testing.assert_close(got, expected)
