"""Fused Triton forward and backward of :func:`basicsr_lmar.ops.adaptive_resample.adaptive_resample`.

Imported lazily (so ``TRITON_INTERPRET=1`` can be set before Triton is imported). One program handles a
block of LR pixels and all channels; it loops over the k*k kernel elements, computes the sample
position, reads the four neighbours of the *unpadded* image through reflected indices and accumulates
in float32. The backward recomputes the same quantities, writes the kernel and offset gradients
directly (each pixel belongs to one program) and scatters the image gradient with atomic adds.
Memory: O(input + output); nothing of size k*k x output is stored besides the inputs themselves.
"""
import torch
import triton
import triton.language as tl


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
    floor_x = tl.floor(p_x)
    floor_y = tl.floor(p_y)
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
def _pixel_layout(n_pixels, out_h, out_w, height, width, CHANNELS: tl.constexpr, BLOCK_P: tl.constexpr,
                  BLOCK_C: tl.constexpr):
    pixel = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pixel_mask = pixel < n_pixels
    plane = out_h * out_w
    batch = pixel // plane
    within = pixel % plane
    y = within // out_w
    x = within % out_w
    channel = tl.arange(0, BLOCK_C)
    mask = pixel_mask[:, None] & (channel < CHANNELS)[None, :]
    centre_x = (x.to(tl.float32) + 0.5) / out_w * width
    centre_y = (y.to(tl.float32) + 0.5) / out_h * height
    image_base = (batch[:, None] * CHANNELS + channel[None, :]) * (height * width)
    output_index = (batch[:, None] * CHANNELS + channel[None, :]) * plane + within[:, None]
    return pixel_mask, mask, batch, within, plane, centre_x, centre_y, image_base, output_index


@triton.jit
def _car_forward_kernel(img_ptr, kern_ptr, offh_ptr, offv_ptr, out_ptr, n_pixels, height, width, out_h, out_w, pad,
                        scale, k, elements, CHANNELS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    pixel_mask, mask, batch, within, plane, centre_x, centre_y, image_base, output_index = _pixel_layout(
        n_pixels, out_h, out_w, height, width, CHANNELS, BLOCK_P, BLOCK_C)
    map_base = batch * elements * plane + within
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for element in range(0, elements):
        weight, alpha, beta, i_tl, i_tr, i_bl, i_br = _sample_geometry(
            kern_ptr, offh_ptr, offv_ptr, map_base + element * plane, pixel_mask, element, centre_x, centre_y, k,
            scale, pad, height, width)
        v_tl = tl.load(img_ptr + image_base + i_tl[:, None], mask=mask, other=0.).to(tl.float32)
        v_tr = tl.load(img_ptr + image_base + i_tr[:, None], mask=mask, other=0.).to(tl.float32)
        v_bl = tl.load(img_ptr + image_base + i_bl[:, None], mask=mask, other=0.).to(tl.float32)
        v_br = tl.load(img_ptr + image_base + i_br[:, None], mask=mask, other=0.).to(tl.float32)
        a = alpha[:, None]
        b = beta[:, None]
        sample = (1 - a) * (1 - b) * v_tl + a * (1 - b) * v_tr + (1 - a) * b * v_bl + a * b * v_br
        acc += weight[:, None] * sample
    tl.store(out_ptr + output_index, acc, mask=mask)


@triton.jit
def _car_backward_kernel(img_ptr, kern_ptr, offh_ptr, offv_ptr, grad_out_ptr, grad_img_ptr, grad_kern_ptr,
                         grad_offh_ptr, grad_offv_ptr, n_pixels, height, width, out_h, out_w, pad, scale, k, elements,
                         CHANNELS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
                         NEED_IMAGE_GRAD: tl.constexpr):
    pixel_mask, mask, batch, within, plane, centre_x, centre_y, image_base, output_index = _pixel_layout(
        n_pixels, out_h, out_w, height, width, CHANNELS, BLOCK_P, BLOCK_C)
    map_base = batch * elements * plane + within
    grad_out = tl.load(grad_out_ptr + output_index, mask=mask, other=0.).to(tl.float32)
    for element in range(0, elements):
        map_index = map_base + element * plane
        weight, alpha, beta, i_tl, i_tr, i_bl, i_br = _sample_geometry(
            kern_ptr, offh_ptr, offv_ptr, map_index, pixel_mask, element, centre_x, centre_y, k, scale, pad, height,
            width)
        v_tl = tl.load(img_ptr + image_base + i_tl[:, None], mask=mask, other=0.).to(tl.float32)
        v_tr = tl.load(img_ptr + image_base + i_tr[:, None], mask=mask, other=0.).to(tl.float32)
        v_bl = tl.load(img_ptr + image_base + i_bl[:, None], mask=mask, other=0.).to(tl.float32)
        v_br = tl.load(img_ptr + image_base + i_br[:, None], mask=mask, other=0.).to(tl.float32)
        a = alpha[:, None]
        b = beta[:, None]
        sample = (1 - a) * (1 - b) * v_tl + a * (1 - b) * v_tr + (1 - a) * b * v_bl + a * b * v_br
        d_alpha = (1 - b) * (v_tr - v_tl) + b * (v_br - v_bl)
        d_beta = (1 - a) * (v_bl - v_tl) + a * (v_br - v_tr)
        tl.store(grad_kern_ptr + map_index, tl.sum(grad_out * sample, axis=1), mask=pixel_mask)
        tl.store(grad_offh_ptr + map_index, weight * scale * tl.sum(grad_out * d_alpha, axis=1), mask=pixel_mask)
        tl.store(grad_offv_ptr + map_index, weight * scale * tl.sum(grad_out * d_beta, axis=1), mask=pixel_mask)
        if NEED_IMAGE_GRAD:
            weighted = grad_out * weight[:, None]
            tl.atomic_add(grad_img_ptr + image_base + i_tl[:, None], weighted * ((1 - a) * (1 - b)), mask=mask)
            tl.atomic_add(grad_img_ptr + image_base + i_tr[:, None], weighted * (a * (1 - b)), mask=mask)
            tl.atomic_add(grad_img_ptr + image_base + i_bl[:, None], weighted * ((1 - a) * b), mask=mask)
            tl.atomic_add(grad_img_ptr + image_base + i_br[:, None], weighted * (a * b), mask=mask)


def _launch_config(channels):
    block_c = triton.next_power_of_2(channels)
    block_p = max(16, min(128, 2048 // block_c))
    return block_p, block_c


def _geometry(img, kernels, scale):
    n, channels, height, width = img.shape
    elements, out_h, out_w = kernels.shape[1:]
    k = int(round(elements**0.5))
    if max(img.numel(), kernels.numel()) >= 2**31:
        raise ValueError(f'adaptive_resample (triton): tensors of {img.numel()} / {kernels.numel()} elements '
                         'exceed int32 indexing; split the batch or use impl="chunked"')
    return dict(n_pixels=n * out_h * out_w, height=height, width=width, out_h=out_h, out_w=out_w, pad=k // 2,
                scale=scale, k=k, elements=elements), channels


class _TritonAdaptiveResample(torch.autograd.Function):

    @staticmethod
    def forward(ctx, img, kernels, offsets_h, offsets_v, scale):
        img, kernels, offsets_h, offsets_v = (t.contiguous() for t in (img, kernels, offsets_h, offsets_v))
        geometry, channels = _geometry(img, kernels, scale)
        block_p, block_c = _launch_config(channels)
        out = torch.empty(img.shape[0], channels, geometry['out_h'], geometry['out_w'], device=img.device,
                          dtype=torch.float32)
        grid = (triton.cdiv(geometry['n_pixels'], block_p), )
        _car_forward_kernel[grid](img, kernels, offsets_h, offsets_v, out, **geometry, CHANNELS=channels,
                                  BLOCK_P=block_p, BLOCK_C=block_c)
        ctx.save_for_backward(img, kernels, offsets_h, offsets_v)
        ctx.scale = scale
        return out.to(img.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        img, kernels, offsets_h, offsets_v = ctx.saved_tensors
        geometry, channels = _geometry(img, kernels, ctx.scale)
        block_p, block_c = _launch_config(channels)
        need_img = ctx.needs_input_grad[0]
        grad_img = torch.zeros(img.shape, device=img.device, dtype=torch.float32) if need_img else img.new_empty(1)
        grad_maps = [torch.empty(kernels.shape, device=img.device, dtype=torch.float32) for _ in range(3)]
        grid = (triton.cdiv(geometry['n_pixels'], block_p), )
        _car_backward_kernel[grid](img, kernels, offsets_h, offsets_v, grad_out.contiguous(), grad_img, *grad_maps,
                                   **geometry, CHANNELS=channels, BLOCK_P=block_p, BLOCK_C=block_c,
                                   NEED_IMAGE_GRAD=bool(need_img))
        grads = [g.to(t.dtype) if need else None
                 for g, t, need in zip(grad_maps, (kernels, offsets_h, offsets_v), ctx.needs_input_grad[1:4])]
        return (grad_img.to(img.dtype) if need_img else None, *grads, None)


def adaptive_resample_triton(img, kernels, offsets_h, offsets_v, scale):
    """Fused Triton path (inputs already validated by ``check_inputs``)."""
    return _TritonAdaptiveResample.apply(img, kernels, offsets_h, offsets_v, scale)
