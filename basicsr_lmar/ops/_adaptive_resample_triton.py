"""Fused Triton forward and backward of :func:`basicsr_lmar.ops.adaptive_resample.adaptive_resample`.

Imported lazily (so ``TRITON_INTERPRET=1`` can be set before Triton is imported). One program handles a
block of ``BLOCK_P`` LR pixels and a group of up to ``BLOCK_C`` channels (grid axis 1 runs over the
channel groups); it loops over the k*k kernel elements, computes the sample position, reads the four
neighbours of the *unpadded* image through reflected indices and accumulates in float32. The backward
recomputes the same quantities, writes the kernel and offset gradients directly (each pixel belongs to
one program; with several channel groups the groups' partial sums are added atomically) and scatters
the image gradient with atomic adds. Memory: O(input + output); nothing of size k*k x output is stored
besides the inputs themselves.

Compiled variants. Every size, scale and channel count is a *runtime* argument and the kernels are
declared with ``do_not_specialize`` on all of them (and on pointer alignment), so the only compiled
variants are the constexpr configurations of :func:`launch_config` (``BLOCK_C`` in 1, 2, 4 for 1, 2,
3-4 or more channels) times the element types of :data:`SUPPORTED_DTYPES` (times ``NEED_IMAGE_GRAD``
for the backward): a finite set that ``tests/ops/test_triton_compile.py`` compiles ahead of time for
sm_80 and sm_90 with :func:`forward_launch` / :func:`backward_launch`, the functions the autograd
function launches through. Neither the gathers nor the per-pixel map reads can use divisibility or
alignment hints (indices are data-dependent and a block may straddle two images), so nothing is lost.
"""
import inspect

import torch
import triton
import triton.language as tl

# Element types the fused kernels are compiled for: fp32, and what autocast (fp16 / bf16) can produce.
# All four inputs are brought to their common type first (mixed inputs would multiply the variants).
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_BLOCK_C = 4  # channels per program: RGB in one group; more channels run in several groups
BLOCK_P = 128  # LR pixels per program
NUM_WARPS = 4

_SIZES = ('n_pixels', 'channels', 'height', 'width', 'out_h', 'out_w', 'pad', 'scale', 'k', 'elements')
_FORWARD_POINTERS = ('img_ptr', 'kern_ptr', 'offh_ptr', 'offv_ptr', 'out_ptr')
_BACKWARD_POINTERS = ('img_ptr', 'kern_ptr', 'offh_ptr', 'offv_ptr', 'grad_out_ptr', 'grad_img_ptr', 'grad_kern_ptr',
                      'grad_offh_ptr', 'grad_offv_ptr')


def _unspecialized(sizes, pointers):
    """``triton.jit`` options that specialise on neither the sizes' values nor the pointers' alignment.
    Releases with ``do_not_specialize_on_alignment`` take the pointers there; older ones (Triton 2.1 among
    them) have only ``do_not_specialize``, which in them also turns off the alignment specialisation of pointers."""
    if 'do_not_specialize_on_alignment' in inspect.signature(triton.jit).parameters:
        return dict(do_not_specialize=sizes, do_not_specialize_on_alignment=pointers)
    return dict(do_not_specialize=sizes + pointers)


@triton.jit
def _reflect(index, size):
    """Index into the unpadded axis of length ``size`` for a (single) reflection-padded index."""
    index = tl.abs(index)
    return tl.where(index > size - 1, 2 * (size - 1) - index, index)


@triton.jit
def _sample_geometry(kern_ptr, offh_ptr, offv_ptr, map_index, pixel_mask, element, centre_x, centre_y, k, scale,
                     pad, height, width):
    """Kernel weight, bilinear fractions and reflected neighbour indices of one kernel element."""
    weight = tl.load(kern_ptr + map_index, mask=pixel_mask, other=0.).to(tl.float32)
    shift_h = tl.load(offh_ptr + map_index, mask=pixel_mask, other=0.).to(tl.float32)
    shift_v = tl.load(offv_ptr + map_index, mask=pixel_mask, other=0.).to(tl.float32)
    kernel_x = (element % k).to(tl.float32)
    kernel_y = (element // k).to(tl.float32)
    p_x = centre_x + kernel_x + shift_h * scale - 0.5
    p_y = centre_y + kernel_y + shift_v * scale - 0.5
    floor_x = tl.math.floor(p_x)  # Triton 2 has no tl.floor; tl.math.floor is in Triton 2 and 3
    floor_y = tl.math.floor(p_y)
    alpha = p_x - floor_x
    beta = p_y - floor_y
    padded_width = width + 2 * pad
    padded_height = height + 2 * pad
    left = tl.minimum(tl.maximum(floor_x.to(tl.int32), 0), padded_width - 1)
    right = tl.minimum(left + 1, padded_width - 1)
    top = tl.minimum(tl.maximum(floor_y.to(tl.int32), 0), padded_height - 1)
    bottom = tl.minimum(top + 1, padded_height - 1)
    left = _reflect(left - pad, width)
    right = _reflect(right - pad, width)
    top = _reflect(top - pad, height)
    bottom = _reflect(bottom - pad, height)
    return weight, alpha, beta, top * width + left, top * width + right, bottom * width + left, bottom * width + right


@triton.jit
def _bilinear_sample(img_ptr, image_base, mask, alpha, beta, i_tl, i_tr, i_bl, i_br):
    """The four neighbours (float32, channels on axis 1), the fractions broadcast over channels, and
    their bilinear blend."""
    v_tl = tl.load(img_ptr + image_base + i_tl[:, None], mask=mask, other=0.).to(tl.float32)
    v_tr = tl.load(img_ptr + image_base + i_tr[:, None], mask=mask, other=0.).to(tl.float32)
    v_bl = tl.load(img_ptr + image_base + i_bl[:, None], mask=mask, other=0.).to(tl.float32)
    v_br = tl.load(img_ptr + image_base + i_br[:, None], mask=mask, other=0.).to(tl.float32)
    a = alpha[:, None]
    b = beta[:, None]
    sample = (1 - a) * (1 - b) * v_tl + a * (1 - b) * v_tr + (1 - a) * b * v_bl + a * b * v_br
    return v_tl, v_tr, v_bl, v_br, a, b, sample


@triton.jit
def _pixel_layout(n_pixels, channels, out_h, out_w, height, width, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's pixels (axis 0) and channel group (axis 1): masks, centres and flat indices."""
    pixel = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pixel_mask = pixel < n_pixels
    plane = out_h * out_w
    batch = pixel // plane
    within = pixel % plane
    y = within // out_w
    x = within % out_w
    channel = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = pixel_mask[:, None] & (channel < channels)[None, :]
    centre_x = (x.to(tl.float32) + 0.5) / out_w * width
    centre_y = (y.to(tl.float32) + 0.5) / out_h * height
    image_base = (batch[:, None] * channels + channel[None, :]) * (height * width)
    output_index = (batch[:, None] * channels + channel[None, :]) * plane + within[:, None]
    return pixel_mask, mask, batch, within, plane, centre_x, centre_y, image_base, output_index


@triton.jit(**_unspecialized(_SIZES, _FORWARD_POINTERS))
def _car_forward_kernel(img_ptr, kern_ptr, offh_ptr, offv_ptr, out_ptr, n_pixels, channels, height, width, out_h,
                        out_w, pad, scale, k, elements, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    pixel_mask, mask, batch, within, plane, centre_x, centre_y, image_base, output_index = _pixel_layout(
        n_pixels, channels, out_h, out_w, height, width, BLOCK_P, BLOCK_C)
    map_base = batch * elements * plane + within
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for element in range(0, elements):
        weight, alpha, beta, i_tl, i_tr, i_bl, i_br = _sample_geometry(
            kern_ptr, offh_ptr, offv_ptr, map_base + element * plane, pixel_mask, element, centre_x, centre_y, k,
            scale, pad, height, width)
        v_tl, v_tr, v_bl, v_br, a, b, sample = _bilinear_sample(img_ptr, image_base, mask, alpha, beta, i_tl, i_tr,
                                                                i_bl, i_br)
        acc += weight[:, None] * sample
    tl.store(out_ptr + output_index, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _write_map_gradient(pointer, value, pixel_mask, channels, BLOCK_C: tl.constexpr):
    """One channel group owns the pixel's map gradient: store; several groups add their parts."""
    if channels > BLOCK_C:
        tl.atomic_add(pointer, value, mask=pixel_mask)
    else:
        tl.store(pointer, value, mask=pixel_mask)


@triton.jit(**_unspecialized(_SIZES, _BACKWARD_POINTERS))
def _car_backward_kernel(img_ptr, kern_ptr, offh_ptr, offv_ptr, grad_out_ptr, grad_img_ptr, grad_kern_ptr,
                         grad_offh_ptr, grad_offv_ptr, n_pixels, channels, height, width, out_h, out_w, pad, scale, k,
                         elements, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, NEED_IMAGE_GRAD: tl.constexpr):
    pixel_mask, mask, batch, within, plane, centre_x, centre_y, image_base, output_index = _pixel_layout(
        n_pixels, channels, out_h, out_w, height, width, BLOCK_P, BLOCK_C)
    map_base = batch * elements * plane + within
    grad_out = tl.load(grad_out_ptr + output_index, mask=mask, other=0.).to(tl.float32)
    for element in range(0, elements):
        map_index = map_base + element * plane
        weight, alpha, beta, i_tl, i_tr, i_bl, i_br = _sample_geometry(
            kern_ptr, offh_ptr, offv_ptr, map_index, pixel_mask, element, centre_x, centre_y, k, scale, pad, height,
            width)
        v_tl, v_tr, v_bl, v_br, a, b, sample = _bilinear_sample(img_ptr, image_base, mask, alpha, beta, i_tl, i_tr,
                                                                i_bl, i_br)
        d_alpha = (1 - b) * (v_tr - v_tl) + b * (v_br - v_bl)
        d_beta = (1 - a) * (v_bl - v_tl) + a * (v_br - v_tr)
        _write_map_gradient(grad_kern_ptr + map_index, tl.sum(grad_out * sample, axis=1), pixel_mask, channels,
                            BLOCK_C)
        _write_map_gradient(grad_offh_ptr + map_index, weight * scale * tl.sum(grad_out * d_alpha, axis=1),
                            pixel_mask, channels, BLOCK_C)
        _write_map_gradient(grad_offv_ptr + map_index, weight * scale * tl.sum(grad_out * d_beta, axis=1),
                            pixel_mask, channels, BLOCK_C)
        if NEED_IMAGE_GRAD:
            weighted = grad_out * weight[:, None]
            tl.atomic_add(grad_img_ptr + image_base + i_tl[:, None], weighted * ((1 - a) * (1 - b)), mask=mask)
            tl.atomic_add(grad_img_ptr + image_base + i_tr[:, None], weighted * (a * (1 - b)), mask=mask)
            tl.atomic_add(grad_img_ptr + image_base + i_bl[:, None], weighted * ((1 - a) * b), mask=mask)
            tl.atomic_add(grad_img_ptr + image_base + i_br[:, None], weighted * (a * b), mask=mask)


#: whether the kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` when Triton was imported); a Triton
#: without the interpreter compiles them for CUDA whatever the variable says
INTERPRETED = not isinstance(_car_forward_kernel, triton.runtime.JITFunction)


# ------------------------------------------------------------------------------------------------------
# Launch plans: what the autograd function launches, and what the ahead-of-time compile tests compile.
# ------------------------------------------------------------------------------------------------------
def launch_config(channels):
    """The constexpr block shape for ``channels`` image channels: ``{'BLOCK_P': ..., 'BLOCK_C': ...}``."""
    return {'BLOCK_P': BLOCK_P, 'BLOCK_C': triton.next_power_of_2(min(int(channels), MAX_BLOCK_C))}


def common_dtype(*tensors):
    """The element type the kernels run in for these inputs; a clear error for unsupported ones."""
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    if dtype not in SUPPORTED_DTYPES:
        names = ', '.join(str(d).replace('torch.', '') for d in SUPPORTED_DTYPES)
        raise TypeError(f'adaptive_resample (triton): inputs of type {str(dtype).replace("torch.", "")} are not '
                        f'supported by the fused kernels ({names}); use impl="chunked" or convert the inputs')
    return dtype


def _sizes(img, kernels, scale):
    n, channels, height, width = img.shape
    elements, out_h, out_w = kernels.shape[1:]
    k = int(round(elements**0.5))
    if max(img.numel(), kernels.numel()) >= 2**31:
        raise ValueError(f'adaptive_resample (triton): tensors of {img.numel()} / {kernels.numel()} elements '
                         'exceed int32 indexing; split the batch or use impl="chunked"')
    return dict(n_pixels=n * out_h * out_w, channels=channels, height=height, width=width, out_h=out_h, out_w=out_w,
                pad=k // 2, scale=int(scale), k=k, elements=elements)


class Launch:
    """One kernel launch: ``kernel[grid](**args, **constexprs, num_warps=NUM_WARPS)``."""

    def __init__(self, kernel, sizes, pointers, constexprs):
        self.kernel = kernel
        self.args = dict(pointers, **sizes)
        self.constexprs = constexprs
        self.grid = (triton.cdiv(sizes['n_pixels'], constexprs['BLOCK_P']),
                     triton.cdiv(sizes['channels'], constexprs['BLOCK_C']))

    def __call__(self):
        self.kernel[self.grid](**self.args, **self.constexprs, num_warps=NUM_WARPS)


def forward_launch(img, kernels, offsets_h, offsets_v, scale, out):
    """The forward launch for contiguous inputs of one supported dtype and ``out`` (N, C, H/s, W/s)."""
    sizes = _sizes(img, kernels, scale)
    pointers = dict(zip(_FORWARD_POINTERS, (img, kernels, offsets_h, offsets_v, out)))
    return Launch(_car_forward_kernel, sizes, pointers, launch_config(sizes['channels']))


def backward_launch(img, kernels, offsets_h, offsets_v, scale, grad_out, grad_img, grad_maps, need_image_grad):
    """The backward launch; ``grad_maps`` are three float32 tensors shaped like ``kernels`` (zeroed when the
    channels span several groups), ``grad_img`` a zeroed float32 image (unused without ``need_image_grad``)."""
    sizes = _sizes(img, kernels, scale)
    tensors = (img, kernels, offsets_h, offsets_v, grad_out, grad_img, *grad_maps)
    constexprs = dict(launch_config(sizes['channels']), NEED_IMAGE_GRAD=bool(need_image_grad))
    return Launch(_car_backward_kernel, sizes, dict(zip(_BACKWARD_POINTERS, tensors)), constexprs)


class _TritonAdaptiveResample(torch.autograd.Function):

    @staticmethod
    def forward(ctx, img, kernels, offsets_h, offsets_v, scale):
        img, kernels, offsets_h, offsets_v = (t.contiguous() for t in (img, kernels, offsets_h, offsets_v))
        out = img.new_empty(img.shape[0], img.shape[1], *kernels.shape[-2:])
        forward_launch(img, kernels, offsets_h, offsets_v, scale, out)()
        ctx.save_for_backward(img, kernels, offsets_h, offsets_v)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        img, kernels, offsets_h, offsets_v = ctx.saved_tensors
        need_img = ctx.needs_input_grad[0]
        grad_img = torch.zeros(img.shape, device=img.device, dtype=torch.float32) if need_img else img.new_empty(1)
        split = img.shape[1] > launch_config(img.shape[1])['BLOCK_C']  # channel groups add into the map gradients
        allocate = torch.zeros if split else torch.empty
        grad_maps = [allocate(kernels.shape, device=img.device, dtype=torch.float32) for _ in range(3)]
        backward_launch(img, kernels, offsets_h, offsets_v, ctx.scale, grad_out.contiguous(), grad_img, grad_maps,
                        need_img)()
        grads = [g.to(t.dtype) if need else None
                 for g, t, need in zip(grad_maps, (kernels, offsets_h, offsets_v), ctx.needs_input_grad[1:4])]
        return (grad_img.to(img.dtype) if need_img else None, *grads, None)


def adaptive_resample_triton(img, kernels, offsets_h, offsets_v, scale):
    """Fused Triton path (inputs already validated by ``check_inputs``). Inputs of mixed types run in their
    common type (the casts are part of the autograd graph, so each gradient comes back in its input's type)."""
    if img.device.type != 'cuda' and not INTERPRETED:
        raise RuntimeError(f'adaptive_resample: impl="triton" on a {img.device.type} tensor needs Triton\'s '
                           f'interpreter (TRITON_INTERPRET=1), which Triton {triton.__version__} does not have; use '
                           'impl="auto" or "chunked", or a CUDA tensor.')
    dtype = common_dtype(img, kernels, offsets_h, offsets_v)
    img, kernels, offsets_h, offsets_v = (t.to(dtype) for t in (img, kernels, offsets_h, offsets_v))
    return _TritonAdaptiveResample.apply(img, kernels, offsets_h, offsets_v, scale)
