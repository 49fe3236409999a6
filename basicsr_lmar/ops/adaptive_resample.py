"""Content-adaptive resampling (CAR, Sun & Chen, TIP 2020): ``adaptive_resample(img, kernels, ...)``.

Every low-resolution (LR) pixel is a weighted sum of ``k x k`` bilinear samples of the high-resolution
(HR) image, with its own kernel weights and its own sample offsets. The semantics are those of the
authors' CUDA forward (``sunwj/CAR``, ``adaptive_gridsampler_kernel.cu``), for an integer scale ``s``:

* the HR image (H, W) is reflection-padded by ``k // 2`` on every side;
* LR pixel (x, y) of the (H/s, W/s) output and kernel element (ky, kx) sample the padded image at
  ``p_x = (x + 0.5) / (W/s) * W + kx + dh * s - 0.5`` and
  ``p_y = (y + 0.5) / (H/s) * H + ky + dv * s - 0.5``, where ``dh = offsets_h[b, ky*k + kx, y, x]``
  and ``dv = offsets_v[...]`` are in units of ``s`` HR pixels;
* bilinear interpolation between the four neighbours: ``left = clamp(floor(p_x), 0, Wp - 1)``,
  ``right = clamp(left + 1, 0, Wp - 1)`` (and likewise rows), with the fractional weight
  ``p_x - floor(p_x)`` taken from the unclamped position. This is exactly the authors' clamping: a
  sample left of the padded image reads columns 0 and 1, not column 0 twice;
* ``out[b, c, y, x] = sum_e kernels[b, e, y, x] * sample_e[b, c]``: one kernel for all channels.

With a centre delta kernel and zero offsets, LR pixel x samples HR position ``(x + 0.5) * s - 0.5``
(the projected pixel centre; for even ``s`` the mean of the central 2x2 HR block). The CAR networks
use ``k = 3 s + 1``; the op accepts any square kernel.

Three implementations behind one signature, tested against each other:

* ``'reference'``: readable pure-torch autograd (gather + weights). Memory O(k^2 x output) for the
  backward; supports higher-order gradients.
* ``'chunked'``: the same arithmetic over chunks of output rows inside a custom autograd function that
  recomputes each chunk in the backward pass, reading only the band of HR rows it needs. Memory
  O(input + output) plus one chunk: a 2K image at x4 fits in a few hundred MB. First-order gradients.
* ``'triton'``: a fused Triton kernel for the forward and another for the backward (the image gradient
  is accumulated with atomics). Reads the unpadded image through reflected indices, so nothing of size
  k^2 x output is ever stored. First-order gradients; float32 accumulation; inputs in float32, float16
  or bfloat16 (mixed inputs run in their common type; the output has that type). Sizes and channel
  counts are runtime arguments, so the compiled variants are a small fixed set, all compiled ahead of
  time for sm_80 / sm_90 in the test suite (``tests/ops/test_triton_compile.py``).

``impl='auto'`` picks Triton for CUDA tensors (float32/16/bf16) when Triton is installed, else chunked.
Through the CAR arch (``CARResamplerNet.apply_maps``) the op always receives float32 tensors outside
autocast, also under ``train.amp``.
All paths give gradients w.r.t. the image, the kernels and both offset maps.
"""
import os

import torch
import torch.nn.functional as F

IMPLEMENTATIONS = ('auto', 'reference', 'chunked', 'triton')

# Elements (batch x channels x kernel elements x output pixels) of one chunk of the chunked path.
CHUNK_ELEMENTS = 1 << 21


def kernel_size_for_scale(scale):
    """The CAR kernel size for a downscaling factor: ``3 * scale + 1``."""
    return 3 * int(scale) + 1


def resize_equivalent_kernel(scale, kernel='bicubic', dtype=torch.float64):
    """The (k*k,) kernel, k = 3s + 1, with which ``adaptive_resample`` (zero offsets) best reproduces
    ``ops.resize.resize(img, (H/s, W/s), kernel, antialias=True)``: a start for a learned resampler that is
    exactly the classical downscaler.

    Each kernel element samples bilinearly between two HR pixels (the LR centre of an even scale lies between
    pixels), so one axis of the op is a fixed (HR pixels x k) matrix; the 1-D kernel is the least-squares
    solution against the resize weights of one interior LR pixel, normalised to sum 1, and the 2-D kernel its
    outer product (both operators are separable). Exact at x2 (the antialiased bicubic support, 4s pixels, fits
    in the k + 1 pixels the op reaches); at x4 the two outermost bicubic taps (-0.0017 each) fall outside, and
    on photos the op's LR equals bicubic downscaling to about 63 dB PSNR, below 8-bit rounding.
    """
    from basicsr_lmar.ops.resize import resize

    k = kernel_size_for_scale(scale)
    n = 8 * scale  # HR width; LR pixel 4 is interior for the op's reach (k // 2 + 1) and the resize support
    column = 4
    # the op's 1-D matrix: channel i is a vertical line at HR column i, element j a one-hot kernel in row k // 2
    lines = torch.eye(n, dtype=dtype).view(1, n, 1, n).expand(1, n, 4 * scale, n)
    samples = torch.zeros(n, k, dtype=dtype)
    for j in range(k):
        one_hot = torch.zeros(1, k * k, 4, n // scale, dtype=dtype)
        one_hot[:, (k // 2) * k + j] = 1
        zeros = torch.zeros_like(one_hot)
        samples[:, j] = adaptive_resample_reference(lines, one_hot, zeros, zeros, scale)[0, :, 0, column]
    weights = resize(torch.eye(n, dtype=dtype)[None, None], (n, n // scale), kernel, antialias=True,
                     boundary='reflect')[0, 0, :, column]
    profile = torch.linalg.lstsq(samples, weights[:, None]).solution[:, 0]
    profile = profile / profile.sum()
    return torch.outer(profile, profile).flatten()


def check_inputs(img, kernels, offsets_h, offsets_v, scale):
    """Validates shapes and returns the kernel size ``k``; errors name the offending shapes."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f'adaptive_resample: scale must be a positive int, got {scale!r}')
    for name, tensor in (('img', img), ('kernels', kernels), ('offsets_h', offsets_h), ('offsets_v', offsets_v)):
        if not torch.is_tensor(tensor) or tensor.dim() != 4:
            shape = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
            raise ValueError(f'adaptive_resample: {name} must be a 4-D tensor (N, C, H, W), got {shape}')
        if not tensor.is_floating_point():
            raise TypeError(f'adaptive_resample: {name} must be floating point, got {tensor.dtype}')
    n, _, height, width = img.shape
    if height % scale or width % scale:
        raise ValueError(f'adaptive_resample: image size {height}x{width} (img shape {tuple(img.shape)}) is not '
                         f'divisible by scale {scale}; crop or pad the image to a multiple of {scale}')
    elements = kernels.shape[1]
    k = int(round(elements**0.5))
    if k * k != elements:
        raise ValueError(f'adaptive_resample: kernels shape {tuple(kernels.shape)} has {elements} channels, '
                         f'which is not a square k*k (CAR uses k = 3*scale+1 = {kernel_size_for_scale(scale)}, '
                         f'i.e. {kernel_size_for_scale(scale)**2} channels)')
    expected = (n, elements, height // scale, width // scale)
    if tuple(kernels.shape) != expected:
        raise ValueError(f'adaptive_resample: kernels shape {tuple(kernels.shape)} does not match image shape '
                         f'{tuple(img.shape)} at scale {scale}; expected {expected} (N, k*k, H/s, W/s)')
    for name, offsets in (('offsets_h', offsets_h), ('offsets_v', offsets_v)):
        if tuple(offsets.shape) != expected:
            raise ValueError(f'adaptive_resample: {name} shape {tuple(offsets.shape)} must equal the kernels shape '
                             f'{expected} (N, k*k, H/s, W/s)')
    pad = k // 2
    if pad >= height or pad >= width:
        raise ValueError(f'adaptive_resample: reflection padding {pad} (k={k}) needs an image larger than '
                         f'{pad}x{pad}; got {height}x{width}')
    devices = {t.device for t in (img, kernels, offsets_h, offsets_v)}
    if len(devices) != 1:
        raise ValueError(f'adaptive_resample: all inputs must be on one device, got {sorted(map(str, devices))}')
    return k


def _lr_centres(lr_size, hr_size, dtype, device):
    """HR coordinate of each LR pixel centre, ``(i + 0.5) / lr_size * hr_size`` (authors' formula)."""
    return (torch.arange(lr_size, dtype=dtype, device=device) + 0.5) / lr_size * hr_size


def _sample_positions(hr_size, lr_size, k, scale, offsets_h, offsets_v, row_start=0):
    """Sample positions (p_x, p_y) in padded-image coordinates for LR rows ``row_start...``.

    ``offsets_*``: (N, k*k, rows, w). Returns two tensors of the same shape.
    """
    (height, width), (lr_h, lr_w) = hr_size, lr_size
    dtype, device = offsets_h.dtype, offsets_h.device
    rows = offsets_h.shape[2]
    element = torch.arange(k * k, device=device)
    kernel_x = (element % k).to(dtype).view(1, -1, 1, 1)
    kernel_y = (element // k).to(dtype).view(1, -1, 1, 1)
    centre_x = _lr_centres(lr_w, width, dtype, device).view(1, 1, 1, lr_w)
    centre_y = _lr_centres(lr_h, height, dtype, device)[row_start:row_start + rows].view(1, 1, rows, 1)
    p_x = centre_x + kernel_x + offsets_h * scale - 0.5
    p_y = centre_y + kernel_y + offsets_v * scale - 0.5
    return p_x, p_y


def _neighbours(position, size):
    """Bilinear neighbour indices (clamped as in the authors' kernel) and the fractional weight."""
    lower = torch.floor(position)
    fraction = position - lower  # d fraction / d position = 1
    first = lower.long().clamp(0, size - 1)
    second = (first + 1).clamp(max=size - 1)
    return first, second, fraction


def _bilinear_weighted_sum(padded, p_x, p_y, kernels, padded_height, row_base=0):
    """``sum_e kernels[:, e] * bilinear(padded, p_x[:, e], p_y[:, e])`` for every channel.

    ``padded``: (N, C, rows, Wp), the rows ``row_base...`` of a padded image of height ``padded_height``.
    ``p_x, p_y, kernels``: (N, E, h, w). Returns (N, C, h, w).
    """
    n, channels, _, padded_width = padded.shape
    _, elements, out_h, out_w = kernels.shape
    left, right, alpha = _neighbours(p_x, padded_width)
    top, bottom, beta = _neighbours(p_y, padded_height)
    top, bottom = top - row_base, bottom - row_base
    flat = padded.reshape(n, channels, -1)

    def gather(rows, cols):
        index = (rows * padded_width + cols).reshape(n, 1, -1).expand(n, channels, -1)
        return flat.gather(2, index).view(n, channels, elements, out_h, out_w)

    alpha, beta = alpha.unsqueeze(1), beta.unsqueeze(1)
    samples = ((1 - alpha) * (1 - beta) * gather(top, left) + alpha * (1 - beta) * gather(top, right) +
               (1 - alpha) * beta * gather(bottom, left) + alpha * beta * gather(bottom, right))
    return (samples * kernels.unsqueeze(1)).sum(2)


def adaptive_resample_reference(img, kernels, offsets_h, offsets_v, scale):
    """Readable autograd implementation (see the module docstring for the semantics)."""
    k = check_inputs(img, kernels, offsets_h, offsets_v, scale)
    height, width = img.shape[-2:]
    pad = k // 2
    padded = F.pad(img, (pad, pad, pad, pad), mode='reflect')
    p_x, p_y = _sample_positions((height, width), (height // scale, width // scale), k, scale, offsets_h, offsets_v)
    return _bilinear_weighted_sum(padded, p_x, p_y, kernels, padded.shape[2])


# ------------------------------------------------------------------------------------------------------
# Chunked path: bounded memory on CPU (and on GPUs without Triton).
# ------------------------------------------------------------------------------------------------------
def _rows_per_chunk(img, elements, out_w, chunk_elements):
    per_row = img.shape[0] * img.shape[1] * elements * out_w
    return max(1, chunk_elements // max(per_row, 1))


def _band_of_rows(offsets_v, k, scale, hr_size, padded_height, row_start):
    """The padded-image rows [start, stop) read by LR rows ``row_start...`` with these vertical offsets."""
    with torch.no_grad():
        lr_size = (hr_size[0] // scale, hr_size[1] // scale)
        _, p_y = _sample_positions(hr_size, lr_size, k, scale, offsets_v, offsets_v, row_start)
        top, bottom, _ = _neighbours(p_y, padded_height)
        return int(top.min()), int(bottom.max()) + 1


def _chunk(band, band_start, padded_height, kernels, offsets_h, offsets_v, scale, hr_size, row_start):
    """Output rows ``row_start...`` from ``band``, the padded rows [band_start, ...) they read."""
    k = int(round(kernels.shape[1]**0.5))
    lr_size = (hr_size[0] // scale, hr_size[1] // scale)
    p_x, p_y = _sample_positions(hr_size, lr_size, k, scale, offsets_h, offsets_v, row_start)
    return _bilinear_weighted_sum(band, p_x, p_y, kernels, padded_height, row_base=band_start)


class _ChunkedAdaptiveResample(torch.autograd.Function):
    """Forward and backward over chunks of output rows; the backward recomputes each chunk."""

    @staticmethod
    def forward(ctx, img, kernels, offsets_h, offsets_v, scale, chunk_elements):
        k = int(round(kernels.shape[1]**0.5))
        pad = k // 2
        hr_size = tuple(img.shape[-2:])
        padded = F.pad(img, (pad, pad, pad, pad), mode='reflect')
        n, channels = img.shape[:2]
        out_h, out_w = kernels.shape[-2:]
        out = img.new_empty(n, channels, out_h, out_w)
        step = _rows_per_chunk(img, kernels.shape[1], out_w, chunk_elements)
        for start in range(0, out_h, step):
            rows = slice(start, min(start + step, out_h))
            band_start, band_stop = _band_of_rows(offsets_v[:, :, rows], k, scale, hr_size, padded.shape[2], start)
            out[:, :, rows] = _chunk(padded[:, :, band_start:band_stop], band_start, padded.shape[2],
                                     kernels[:, :, rows], offsets_h[:, :, rows], offsets_v[:, :, rows], scale,
                                     hr_size, start)
        ctx.save_for_backward(img, kernels, offsets_h, offsets_v)
        ctx.scale, ctx.step = scale, step
        return out

    @staticmethod
    def backward(ctx, grad_out):
        img, kernels, offsets_h, offsets_v = ctx.saved_tensors
        need_img = ctx.needs_input_grad[0]
        needs = ctx.needs_input_grad[1:4]
        maps = (kernels, offsets_h, offsets_v)
        k = int(round(kernels.shape[1]**0.5))
        pad = k // 2
        hr_size = tuple(img.shape[-2:])
        out_h = kernels.shape[2]
        padded = F.pad(img.detach(), (pad, pad, pad, pad), mode='reflect')
        padded_height = padded.shape[2]
        grad_padded = torch.zeros_like(padded) if need_img else None
        grads = [torch.zeros_like(t) if need else None for t, need in zip(maps, needs)]
        if need_img or any(needs):
            for start in range(0, out_h, ctx.step):
                rows = slice(start, min(start + ctx.step, out_h))
                band_start, band_stop = _band_of_rows(offsets_v[:, :, rows], k, ctx.scale, hr_size, padded_height,
                                                      start)
                with torch.enable_grad():
                    band = padded[:, :, band_start:band_stop].detach().requires_grad_(need_img)
                    pieces = [t[:, :, rows].detach().requires_grad_(need) for t, need in zip(maps, needs)]
                    out = _chunk(band, band_start, padded_height, *pieces, ctx.scale, hr_size, start)
                    wanted = ([band] if need_img else []) + [p for p in pieces if p.requires_grad]
                    results = list(torch.autograd.grad(out, wanted, grad_out[:, :, rows]))
                if need_img:
                    grad_padded[:, :, band_start:band_stop] += results.pop(0)
                for grad in grads:
                    if grad is not None:
                        grad[:, :, rows] = results.pop(0)
        grad_img = None
        if need_img:  # fold the padded gradient back onto the image (reflection padding's adjoint)
            with torch.enable_grad():
                source = img.detach().requires_grad_(True)
                repadded = F.pad(source, (pad, pad, pad, pad), mode='reflect')
                grad_img, = torch.autograd.grad(repadded, source, grad_padded)
        return (grad_img, *grads, None, None)


def adaptive_resample_chunked(img, kernels, offsets_h, offsets_v, scale, chunk_elements=CHUNK_ELEMENTS):
    """Memory-bounded implementation: output rows in chunks, recomputed per chunk in the backward pass."""
    check_inputs(img, kernels, offsets_h, offsets_v, scale)
    return _ChunkedAdaptiveResample.apply(img, kernels, offsets_h, offsets_v, scale, int(chunk_elements))


# ------------------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------------------
def triton_available(device=None):
    """Whether the fused Triton path can run on ``device`` (CUDA, or CPU under ``TRITON_INTERPRET=1``)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if device is None or torch.device(device).type == 'cuda':
        return torch.cuda.is_available()
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def adaptive_resample(img, kernels, offsets_h, offsets_v, scale, impl='auto'):
    """Downscales ``img`` (N, C, H, W) by the integer ``scale`` with per-pixel kernels and offsets.

    Args:
        img: HR image, (N, C, H, W), H and W divisible by ``scale``.
        kernels: (N, k*k, H/s, W/s) kernel weights (CAR normalises them to sum 1), element ``ky*k + kx``.
        offsets_h, offsets_v: (N, k*k, H/s, W/s) horizontal / vertical sample offsets in units of
            ``scale`` HR pixels (CAR bounds them to [-1, 1] with tanh).
        scale: integer downscaling factor ``s``.
        impl: 'auto' | 'reference' | 'chunked' | 'triton' (see the module docstring).

    Returns:
        (N, C, H/s, W/s), differentiable w.r.t. all four tensors.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f'adaptive_resample: impl must be one of {IMPLEMENTATIONS}, got {impl!r}')
    if impl == 'reference':
        return adaptive_resample_reference(img, kernels, offsets_h, offsets_v, scale)
    check_inputs(img, kernels, offsets_h, offsets_v, scale)
    if impl == 'auto':
        fused = (img.is_cuda and img.dtype in (torch.float32, torch.float16, torch.bfloat16)
                 and triton_available(img.device))
        impl = 'triton' if fused else 'chunked'
    if impl == 'triton':
        if not triton_available(img.device):
            raise RuntimeError('adaptive_resample: impl="triton" needs Triton and a CUDA tensor '
                               f'(or TRITON_INTERPRET=1 on CPU); got a {img.device.type} tensor. Use impl="auto".')
        from basicsr_lmar.ops._adaptive_resample_triton import adaptive_resample_triton
        return adaptive_resample_triton(img, kernels, offsets_h, offsets_v, scale)
    return adaptive_resample_chunked(img, kernels, offsets_h, offsets_v, scale)
