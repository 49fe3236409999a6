"""Differentiable image resizing at any output size: ``resize(x, size, kernel, antialias, boundary)``.

Semantics are those of the ``resize-right`` package (Shocher et al.), which the LMAR authors trained
with; ``resize_reference`` calls that package and the fast path below is tested against it.

How one axis of size ``n_in`` is resampled to ``n_out`` (scale ``s = n_out / n_in``):

* **Projected grid.** Output pixel ``o`` sits at input coordinate
  ``p(o) = o / s + (n_in - 1) / 2 - (n_out - 1) / (2 s)`` (pixel centres are aligned, i.e. the
  ``align_corners=False`` convention).
* **Antialiasing.** When downscaling with ``antialias=True`` the kernel ``k`` becomes
  ``s · k(s · d)`` and its support grows to ``support / s`` (MATLAB ``imresize`` style low-pass).
  Upscaling never changes the kernel.
* **Field of view.** Output ``o`` reads the ``ceil(support - eps)`` consecutive input pixels starting at
  ``ceil(p(o) - support / 2 - eps)`` (``eps`` = float32 machine epsilon). Some of them may lie outside
  the image.
* **Weights.** ``k(p(o) - i)`` for every pixel ``i`` of the field of view, divided by their sum
  (a zero sum is left alone). The sum includes the positions outside the image.
* **Boundary.** Positions outside the image read zeros for ``'constant'`` (resize_right's default
  ``pad_mode``; the border is therefore slightly darkened, exactly as resize_right does), the mirrored
  pixel for ``'reflect'`` (edge not repeated, like ``F.pad(mode='reflect')``) or the edge pixel for
  ``'replicate'``.
* Axes whose size does not change are left untouched; the axis with the smaller scale is resampled
  first.

The grid, field of view and weights are computed with the same float32 arithmetic as resize_right, so
the chosen windows are identical to the last bit (this matters for the ``box`` kernel, whose weight
does not vanish at the window edge).

``'nearest'`` is not a resize_right method. Here it is pixel-centre aligned point sampling, the same
as ``F.interpolate(mode='nearest-exact')``: output pixel ``o`` copies input pixel
``floor((o + 1/2) · n_in / n_out)`` (computed exactly in integers). It never reads outside the image and
has no low-pass filter, so ``antialias`` and ``boundary`` do not change its result.

Fast path. Each axis becomes a sparse linear operator ``M`` (``n_out × n_in``, ``taps`` non-zeros per
row) with the boundary folded in (mirrored or clamped indices; positions that read zeros are dropped),
so no padded copy of the image is ever made. A pass is one call of ``F.embedding_bag(mode='sum',
per_sample_weights=...)``, which computes every output row as the weighted sum of its input rows in a
single fused, parallel kernel: work and extra memory are O(output × taps), and there are only a few
kernel launches per call (many small matmuls were as fast on an idle CPU but stalled badly when the
machine was oversubscribed). The width pass would have to transpose the image around that kernel
(two copies that cost more than the pass itself); where the operator is *periodic* with one output per
block (the same weights for every output, ``p`` inputs apart: integer downscaling such as ×1/2 or ×1/4;
:class:`PeriodicBlocks`, checked exactly on the weights) it is instead a few matrix-vector products over
the image viewed as (rows · g, p), which read it contiguously, with the border outputs overwritten by the
exact operator rows; other factors keep the transposes. The pass order (height or width first) is picked to move the
fewest values. The backward pass applies ``Mᵀ`` the same way, so gradients (of any order) are exact.
Operators are cached per (sizes, kernel, antialias, boundary, device, dtype).
"""
import functools
import math
import numbers

import torch
import torch.nn.functional as F
from resize_right import interp_methods
from resize_right import resize as _resize_right

KERNELS = ('nearest', 'bilinear', 'bicubic', 'lanczos2', 'lanczos3', 'box')
KERNEL_ALIASES = {'linear': 'bilinear', 'cubic': 'bicubic', 'area': 'box'}
BOUNDARIES = ('constant', 'reflect', 'replicate')

_RESIZE_RIGHT_KERNELS = {
    'bilinear': interp_methods.linear,
    'linear': interp_methods.linear,
    'bicubic': interp_methods.cubic,
    'cubic': interp_methods.cubic,
    'lanczos2': interp_methods.lanczos2,
    'lanczos3': interp_methods.lanczos3,
    'box': interp_methods.box,
    'area': interp_methods.box,
}

# Width of each kernel's window in input pixels (before antialias stretching), as in resize_right.
_KERNEL_SUPPORT = {'bilinear': 2, 'bicubic': 4, 'lanczos2': 4, 'lanczos3': 6, 'box': 1}
_FLOAT32_EPS = torch.finfo(torch.float32).eps


def resize_reference(x: torch.Tensor, size, kernel='bicubic', antialias=True, boundary='constant'):
    """Resizes the last two dims of ``x`` (N, C, H, W) to ``size`` = (h, w) with resize_right."""
    if kernel not in _RESIZE_RIGHT_KERNELS:
        raise ValueError(f'resize: kernel {kernel!r} has no resize_right reference; '
                         f'choose one of {sorted(_RESIZE_RIGHT_KERNELS)}')
    out_shape = tuple(x.shape[:-2]) + tuple(int(s) for s in size)
    return _resize_right(x, out_shape=out_shape, interp_method=_RESIZE_RIGHT_KERNELS[kernel],
                         antialiasing=antialias, pad_mode=boundary)


# ----------------------------------------------------------------------------------------------------
# Kernels (float32, same formulas as resize_right; Keys a = -0.5 for the cubic).

def _kernel_values(kernel, d):
    """Evaluates the interpolation kernel at float32 distances ``d``."""
    if kernel == 'bicubic':
        a = d.abs()
        a2, a3 = a**2, a**3
        near = (1.5 * a3 - 2.5 * a2 + 1.) * (a <= 1.).to(d.dtype)
        far = (-0.5 * a3 + 2.5 * a2 - 4. * a + 2.) * ((1. < a) & (a <= 2.)).to(d.dtype)
        return near + far
    if kernel in ('lanczos2', 'lanczos3'):
        lobes = 2 if kernel == 'lanczos2' else 3
        numerator = torch.sin(math.pi * d) * torch.sin(math.pi * d / lobes) + _FLOAT32_EPS
        denominator = (math.pi**2 * d**2 / lobes) + _FLOAT32_EPS
        return numerator / denominator * (d.abs() < lobes).to(d.dtype)
    if kernel == 'bilinear':
        rising = (d + 1) * ((-1 <= d) & (d < 0)).to(d.dtype)
        falling = (1 - d) * ((0 <= d) & (d <= 1)).to(d.dtype)
        return rising + falling
    if kernel == 'box':  # closed interval [-1, 1], as resize_right's box
        return ((-1 <= d) & (d < 0)).to(d.dtype) + ((0 <= d) & (d <= 1)).to(d.dtype)
    raise AssertionError(kernel)


def axis_taps(n_in, n_out, kernel, antialias):
    """Input indices (may fall outside ``[0, n_in)``) and weights of each output pixel along one axis.

    Returns ``(indices, weights)``, both ``(n_out, taps)``; ``indices`` int64, ``weights`` float32.
    """
    if kernel == 'nearest':
        o = torch.arange(n_out, dtype=torch.int64)
        indices = torch.div((2 * o + 1) * n_in, 2 * n_out, rounding_mode='floor').clamp_(max=n_in - 1)
        return indices[:, None], torch.ones(n_out, 1, dtype=torch.float32)
    scale = n_out / n_in
    support = _KERNEL_SUPPORT[kernel]
    stretch = 1.0
    if antialias and scale < 1.0:
        stretch, support = scale, support / scale
    # Same operation order as resize_right so that the float32 grid (and hence every window) is equal.
    grid = torch.arange(n_out) / scale + (n_in - 1) / 2 - (n_out - 1) / (2 * scale)
    first = (grid - support / 2 - _FLOAT32_EPS).ceil().long()
    indices = first[:, None] + torch.arange(math.ceil(support - _FLOAT32_EPS))
    # resize_right measures distances after shifting both grid and window by its left padding.
    shift = -int(indices[0, 0])
    distances = (grid + shift)[:, None] - (indices + shift)
    if stretch == 1.0:
        weights = _kernel_values(kernel, distances)
    else:
        weights = stretch * _kernel_values(kernel, stretch * distances)
    total = weights.sum(1, keepdim=True)
    total[total == 0] = 1
    return indices, weights / total


def fold_boundary(indices, n, boundary):
    """Maps indices outside ``[0, n)`` into the image. Returns ``(indices, inside)``, where ``inside``
    is False for positions that read zeros (``'constant'``)."""
    if boundary == 'constant':
        inside = (indices >= 0) & (indices < n)
        return indices.clamp(0, n - 1), inside
    if boundary == 'replicate':
        return indices.clamp(0, n - 1), torch.ones_like(indices, dtype=torch.bool)
    if boundary == 'reflect':
        if n == 1:
            return torch.zeros_like(indices), torch.ones_like(indices, dtype=torch.bool)
        period = 2 * (n - 1)
        folded = torch.remainder(indices, period)
        folded = torch.where(folded >= n, period - folded, folded)
        return folded, torch.ones_like(indices, dtype=torch.bool)
    raise AssertionError(boundary)


# ----------------------------------------------------------------------------------------------------
# Sparse axis operators applied with one fused gather-multiply-sum kernel.

class AxisOperator:
    """A sparse ``n_out × n_in`` matrix in compressed-row form: output ``o`` is the weighted sum of the
    input rows ``columns[offsets[o]:offsets[o + 1]]``. ``apply_rows(x)`` multiplies it into dim 1 of a
    contiguous (B, n_in, D) tensor with ``F.embedding_bag(mode='sum', per_sample_weights=...)``: a single
    parallel kernel that gathers the taps of each output row and writes only the output, so work and
    memory are O(output × taps) and no padded copy of the image is made."""

    def __init__(self, rows, cols, values, shape, device, dtype):
        order = torch.argsort(rows, stable=True)
        rows, cols, values = rows[order], cols[order], values[order]
        self.shape = shape
        self.device, self.dtype = device, dtype
        self._coo = (rows, cols, values)
        self._transposed = None
        counts = torch.bincount(rows, minlength=shape[0])
        self.columns = cols.to(device)
        self.offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(device)
        self.weights = values.to(device=device, dtype=dtype)
        self.taps = int(counts.max()) if len(counts) else 0
        self._batched = {}
        self._periodic = False  # not built yet

    @property
    def transposed(self):
        if self._transposed is None:
            rows, cols, values = self._coo
            self._transposed = AxisOperator(cols, rows, values, self.shape[::-1], self.device, self.dtype)
            self._transposed._transposed = self
        return self._transposed

    def dense(self):
        """The operator as a dense matrix (for tests and inspection)."""
        rows, cols, values = self._coo
        matrix = torch.zeros(self.shape, dtype=torch.float64)
        matrix.index_put_((rows, cols), values.double(), accumulate=True)
        return matrix.to(device=self.device, dtype=self.dtype)

    def _batched_bags(self, batch):
        """Bags for ``batch`` stacked images: image ``b`` reads table rows ``b · n_in + column``."""
        if batch not in self._batched:
            n_out, n_in = self.shape
            nnz = self.columns.numel()
            shift = torch.arange(batch, device=self.device)
            columns = (self.columns[None] + shift[:, None] * n_in).reshape(-1)
            offsets = (self.offsets[None, :-1] + shift[:, None] * nnz).reshape(-1)
            weights = self.weights.repeat(batch)
            if len(self._batched) > 8:
                self._batched.clear()
            self._batched[batch] = (columns, offsets, weights)
        return self._batched[batch]

    def apply_rows(self, x):
        """``x`` contiguous (B, n_in, D) -> (B, n_out, D)."""
        batch, n_in, depth = x.shape
        if self.columns.numel() == 0 or batch == 0 or depth == 0:
            return x.new_zeros(batch, self.shape[0], depth)
        columns, offsets, weights = self._batched_bags(batch)
        out = F.embedding_bag(columns, x.view(batch * n_in, depth), offsets, mode='sum',
                              per_sample_weights=weights.to(x.dtype), include_last_offset=False)
        return out.view(batch, self.shape[0], depth)

    @property
    def periodic(self):
        """The :class:`PeriodicBlocks` form of this operator, or None where it has none (built once)."""
        if self._periodic is False:
            self._periodic = PeriodicBlocks.of(self)
        return self._periodic

    def apply_columns(self, x):
        """``x`` contiguous (B, R, n_in) -> (B, R, n_out), along the last dim: block GEMMs where the operator
        is periodic, else the row kernel on the transposed image."""
        batch, rows, _ = x.shape
        if self.periodic is not None and batch * rows > 0:
            return self.periodic.apply(x)
        return self.apply_rows(x.transpose(1, 2).contiguous()).transpose(1, 2).contiguous()


class PeriodicBlocks:
    """A periodic axis operator applied along the last dim without transposing the image.

    With ``g = gcd(n_in, n_out)``, ``p = n_in / g`` and ``q = n_out / g``, an operator is periodic when
    output block ``k`` (outputs ``q·k ... q·k + q - 1``) reads input blocks ``k + j`` (inputs ``p·(k + j)
    ...``) with the same weights ``W_j`` (p × q) for every ``k`` away from the borders. Then, with the image
    viewed as (rows · g, p) and the output as (rows · g, q), ``out = Σ_j X[shifted by j] @ W_j``: a few
    GEMMs over the whole image that read it contiguously (the width pass does not transpose the image
    around a row kernel). Used for q = 1 (see ``MAX_OUTPUTS_PER_BLOCK``). Border blocks, whose
    windows are folded by the boundary (and whose
    shifted rows straddle two image rows), are then overwritten with the exact operator rows (a small dense
    product each). Periodicity is checked *exactly* on the operator's own weights, so the result is the
    operator's (summed in another order). It holds where the float32 projected grid is exact (factors such
    as ×1/2, ×1/4 on even sizes); elsewhere :meth:`of` returns None and the row kernel is used.
    """
    MAX_PERIOD = 8  # inputs per block
    MIN_BLOCKS = 8
    # Only q = 1 (integer downscaling factors: ×1/2, ×1/3, ×1/4, ...), where the products are matrix-vector
    # products. Upscaling ×2 (p = 1, q = 2) measured slower this way than the transposes around the row
    # kernel (5 one-column GEMMs over the image: CPU time 1.03× F.interpolate against 0.93×, 2 threads).
    MAX_OUTPUTS_PER_BLOCK = 1

    def __init__(self, p, q, shifts, left, right, device, dtype):
        self.p, self.q = p, q
        self.shifts = [(j, w[:, 0].to(device=device, dtype=dtype)) for j, w in shifts]  # (p,) vectors (q = 1)
        self.left = None if left is None else (left[0].to(device=device, dtype=dtype), left[1])
        self.right = None if right is None else (right[0].to(device=device, dtype=dtype), right[1])

    @classmethod
    def of(cls, operator):
        n_out, n_in = operator.shape
        g = math.gcd(n_out, n_in)
        p, q = n_in // g, n_out // g
        if p > cls.MAX_PERIOD or q > cls.MAX_OUTPUTS_PER_BLOCK or g < cls.MIN_BLOCKS:
            return None
        rows, cols, values = operator._coo
        values = values.float()
        block, phase = torch.div(rows, q, rounding_mode='floor'), rows % q
        relative = cols - p * block  # input position relative to the block's first input
        middle = block == g // 2
        if not middle.any():
            return None
        low = int(relative[middle].min()) // p  # floor division: shifts j of the input blocks read
        high = int(relative[middle].max()) // p
        width = (high - low + 1) * p
        template = torch.zeros(q, width)
        template.index_put_((phase[middle], relative[middle] - low * p), values[middle], accumulate=True)
        position = relative - low * p
        inside = (position >= 0) & (position < width)
        matches = inside & (values == template[phase, position.clamp(0, width - 1)])
        mismatched = torch.bincount(rows[~matches], minlength=n_out) > 0
        complete = torch.bincount(rows, minlength=n_out) == (template != 0).sum(1).repeat(g)
        blocks = torch.arange(g)
        good = ((~mismatched & complete).view(g, q).all(1) & (blocks + low >= 0) & (blocks + high <= g - 1))
        interior = torch.nonzero(good).flatten()
        if len(interior) == 0:
            return None
        first, stop = int(interior[0]), int(interior[-1]) + 1
        if not bool(good[first:stop].all()) or stop - first < g // 2:
            return None
        shifts = [(j, template[:, (j - low) * p:(j - low + 1) * p].t().contiguous()) for j in range(low, high + 1)]
        shifts.sort(key=lambda item: item[0] != 0)  # the unshifted product first: it initialises the output
        if shifts[0][0] != 0:
            shifts.insert(0, (0, torch.zeros(p, q)))

        def border(out_start, out_stop):
            """(dense matrix (inputs, outputs), first input) of the exact operator rows [out_start, out_stop)."""
            if out_start == out_stop:
                return None
            selected = (rows >= out_start) & (rows < out_stop)
            in_start, in_stop = int(cols[selected].min()), int(cols[selected].max()) + 1
            matrix = torch.zeros(in_stop - in_start, out_stop - out_start, dtype=torch.float64)
            matrix.index_put_((cols[selected] - in_start, rows[selected] - out_start), values[selected].double(),
                              accumulate=True)
            return matrix, (in_start, out_start)

        return cls(p, q, shifts, border(0, q * first), border(q * stop, n_out), operator.device, operator.dtype)

    def apply(self, x):
        batch, rows, n_in = x.shape
        n_out = n_in // self.p * self.q
        blocks = x.reshape(-1, self.p)
        out = torch.mv(blocks, self.shifts[0][1])  # q = 1: matrix-vector products (faster than 1-column GEMMs)
        for j, weights in self.shifts[1:]:
            if j > 0:
                out[:-j].addmv_(blocks[j:], weights)
            else:
                out[-j:].addmv_(blocks[:j], weights)
        out = out.view(batch * rows, n_out)
        flat = x.view(batch * rows, n_in)
        for part in (self.left, self.right):
            if part is not None:
                matrix, (in_start, out_start) = part
                out[:, out_start:out_start + matrix.shape[1]] = flat[:, in_start:in_start + matrix.shape[0]] @ matrix
        return out.view(batch, rows, n_out)


@functools.lru_cache(maxsize=64)
def _axis_taps_folded(n_in, n_out, kernel, antialias, boundary):
    """The axis operator in coordinate form (rows, cols, values), boundary folded in, zeros dropped."""
    indices, weights = axis_taps(n_in, n_out, kernel, antialias)
    indices, inside = fold_boundary(indices, n_in, boundary)
    weights = weights * inside
    keep = weights != 0
    rows = torch.arange(n_out)[:, None].expand_as(indices)[keep]
    return rows, indices[keep], weights[keep]


@functools.lru_cache(maxsize=128)
def _axis_operator(n_in, n_out, kernel, antialias, boundary, device, dtype):
    """Cached operator for one axis on one device and dtype."""
    rows, cols, values = _axis_taps_folded(n_in, n_out, kernel, antialias, boundary)
    return AxisOperator(rows, cols, values, (n_out, n_in), device, dtype)


class _Resample(torch.autograd.Function):
    """Applies an operator along dim 1 (``'rows'``) or dim 2 (``'columns'``) of a (B, n1, n2) tensor; the
    backward applies its transpose with this same function, so higher-order gradients work too."""

    @staticmethod
    def forward(ctx, x, operator, axis):
        ctx.operator, ctx.axis = operator, axis
        return operator.apply_rows(x) if axis == 'rows' else operator.apply_columns(x)

    @staticmethod
    def backward(ctx, grad):
        return _Resample.apply(grad.contiguous(), ctx.operator.transposed, ctx.axis), None, None


def _resample_rows(x, operator):
    return _Resample.apply(x, operator, 'rows')


def _resample_columns(x, operator):
    """Along dim 2: block GEMMs for periodic operators, else the row kernel on the transposed image."""
    return _Resample.apply(x, operator, 'columns')


def _pass_order(in_h, in_w, out_h, out_w, taps_h, taps_w, width_transposes=True):
    """'hw' (height first) or 'wh', whichever moves fewer values: each pass costs output × taps, and the
    width pass also transposes its input and output unless its operator is periodic."""
    transposes = 2 if width_transposes else 0
    height_first = out_h * in_w * taps_h + out_h * (in_w + out_w) * transposes + out_h * out_w * taps_w
    width_first = in_h * out_w * taps_w + in_h * (in_w + out_w) * transposes + out_h * out_w * taps_h
    return 'hw' if height_first <= width_first else 'wh'


# ----------------------------------------------------------------------------------------------------
# Public entry point.

def _check_arguments(x, size, kernel, boundary):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'resize: x must be a torch.Tensor, got {type(x).__name__}')
    if x.dim() < 2:
        raise ValueError(f'resize: x must have shape (..., H, W) with at least 2 dims '
                         f'(e.g. (N, C, H, W), (C, H, W) or (H, W)); got shape {tuple(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(f'resize: x must be a floating-point tensor, got dtype {x.dtype}; '
                        f'convert it first, e.g. x.float() / 255')
    if isinstance(size, torch.Size) or isinstance(size, (tuple, list)):
        size = tuple(size)
    else:
        raise TypeError(f'resize: size must be a pair (h, w) of positive ints, got {size!r}')
    if len(size) != 2 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
                                 for s in size):
        raise ValueError(f'resize: size must be a pair (h, w) of positive ints, got {size!r}')
    canonical = KERNEL_ALIASES.get(kernel, kernel)
    if canonical not in KERNELS:
        raise ValueError(f'resize: unknown kernel {kernel!r}; allowed: {", ".join(KERNELS)} '
                         f'(aliases: {", ".join(f"{a}={c}" for a, c in KERNEL_ALIASES.items())})')
    if boundary not in BOUNDARIES:
        raise ValueError(f'resize: unknown boundary {boundary!r}; allowed: {", ".join(BOUNDARIES)}')
    return (int(size[0]), int(size[1])), canonical


def resize(x: torch.Tensor, size, kernel='bicubic', antialias=True, boundary='constant'):
    """Resizes the last two dims of ``x`` to ``size`` = (h, w). Differentiable w.r.t. ``x``.

    Args:
        x: floating tensor (N, C, H, W), (C, H, W), (H, W) or any (..., H, W); CPU or CUDA.
        size: output (h, w), positive ints; any aspect ratio, up or down, non-integer factors.
        kernel: one of ``KERNELS`` (``'linear'``, ``'cubic'``, ``'area'`` are accepted aliases).
        antialias: stretch the kernel when downscaling (MATLAB / resize_right style).
        boundary: ``'constant'`` (zeros, resize_right's default), ``'reflect'`` or ``'replicate'``.

    Equals ``resize_reference`` (resize_right) for every kernel but ``'nearest'``, which equals
    ``F.interpolate(mode='nearest-exact')``; see the module docstring.
    """
    (out_h, out_w), kernel = _check_arguments(x, size, kernel, boundary)
    *lead, in_h, in_w = x.shape
    antialias = bool(antialias)
    out = x.reshape(-1, in_h, in_w).contiguous()
    operators = {}
    if in_h != out_h:
        operators['h'] = _axis_operator(in_h, out_h, kernel, antialias, boundary, x.device, x.dtype)
    if in_w != out_w:
        operators['w'] = _axis_operator(in_w, out_w, kernel, antialias, boundary, x.device, x.dtype)
    if not operators:
        return x.clone()
    order = 'hw'
    if len(operators) == 2:
        order = _pass_order(in_h, in_w, out_h, out_w, operators['h'].taps, operators['w'].taps,
                            width_transposes=operators['w'].periodic is None)
    for axis in order:
        if axis in operators:
            resample = _resample_rows if axis == 'h' else _resample_columns
            out = resample(out, operators[axis])
    return out.reshape(*lead, out_h, out_w)
