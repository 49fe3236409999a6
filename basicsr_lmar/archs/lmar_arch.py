"""LMAR resampler (Yu et al., "Empowering Resampling Operation for Ultra-High-Definition Image Enhancement with
Model-Aware Guidance", CVPR 2024).

Given a UHD image ``x`` (H x W) and a working size (h, w), the resampler produces the downscaled image
``x_c`` that a frozen enhancer sees instead of the plain ``x_d = D(x; h, w)``:

1. **Scale features** per UHD pixel (paper eq. 3-5), in this order (the order of the released
   checkpoint's MLP inputs):

   - ``rel_y, rel_x``: offset of the UHD pixel centre from the nearest LR pixel centre, both on the
     [-1, 1] pixel-centre grids (``align_corners=False``), multiplied by h and w (so one LR pixel is
     2 units). The nearest LR centre is the one ``grid_sample(mode='nearest')`` picks (round half to
     even), computed here separably per row and column;
   - ``cell_y, cell_x`` = (2h/H, 2w/W);
   - the back-projection residual ``x - U(x_d; H, W)`` (3 values), raw (released code) or through a
     3x3 conv (paper eq. 6, ``residual_conv: true``).
2. **Content kernel estimation (CKE)**: an MLP maps the 7 features to 81 values, a 3x3 dynamic
   convolution from 3 to 3 channels; ``x_hat = K (*) x`` on the zero-padded 3x3 neighbourhood. The 81
   values are read as a (27, 3) matrix whose rows follow ``F.unfold`` order (input channel major, then
   the window row by row).
3. ``x_c = Conv1x1([x_d ; D(x_hat; h, w)])`` (6 -> 3 channels, with bias), module name ``modulation``.

The MLP is tiny-cuda-nn's ``FullyFusedMLP`` layout (128 neurons, 5 hidden layers, LeakyReLU, no
output activation, no biases). Both backends keep **one flat parameter vector** ``imnet.params``
(79,872 values) in tiny-cuda-nn's layout: inputs padded to 16 with ones (the ones act as biases),
row-major (out, in) matrices 128x16, 4 x 128x128, 96x128 (output padded to a multiple of 16 and sliced
back to 81), LeakyReLU slope 0.01. A checkpoint therefore moves between the ``tcnn`` and ``torch``
backends unchanged. Default trainable parameters: 79,872 + 21 = 79,893 (paper Table 4).

Memory: the per-pixel kernels of a 2160x3840 image alone are 2.7 GB in fp32 (plus the MLP's hidden
activations), so CKE + the dynamic convolution run in tiles of rows with a one-pixel halo whose
working set stays under ``tile_memory_mb``; the result is bit-identical to the untiled computation.
Besides the tile, inference keeps two full-size 3-channel maps (the residual and x_hat, 100 MB each at
2160x3840), so the default 256 MiB budget keeps the extra memory under 512 MB at 4K.
"""
import math
import warnings

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.utils.checkpoint import checkpoint

from basicsr_lmar.ops.coords import nearest_centre_offset, relative_cell
from basicsr_lmar.ops.resize import KERNELS, resize
from basicsr_lmar.options import Option, configurable

try:  # tiny-cuda-nn is optional (CUDA only); the torch backend stores the same parameters.
    import tinycudann as _tcnn
    _TCNN_IMPORT_ERROR = None
except Exception as error:  # ImportError, or a build that fails to load its CUDA library
    _tcnn = None
    _TCNN_IMPORT_ERROR = f'{type(error).__name__}: {error}'

NUM_SCALE_FEATURES = 4  # rel_y, rel_x, cell_y, cell_x
LEAKY_SLOPE = 0.01  # tiny-cuda-nn's LeakyRelu


def tcnn_available():
    """Whether the tiny-cuda-nn Python bindings import and a CUDA device exists."""
    return _tcnn is not None and torch.cuda.is_available()


def tcnn_unavailable_reason():
    """Why the tiny-cuda-nn backend cannot be used here (None when it can)."""
    if _tcnn is None:
        return f'tinycudann does not import ({_TCNN_IMPORT_ERROR})'
    if not torch.cuda.is_available():
        return 'CUDA is not available'
    return None


def _round_up(value, multiple):
    return (value + multiple - 1) // multiple * multiple


# ----------------------------------------------------------------------------------------------
# MLP backends (one flat parameter layout)
# ----------------------------------------------------------------------------------------------
class FusedMLPLayout:
    """Shapes of the matrices inside tiny-cuda-nn's FullyFusedMLP flat parameter vector."""

    def __init__(self, n_inputs, n_outputs, width=128, hidden_layers=5):
        self.n_inputs, self.n_outputs, self.width, self.hidden_layers = n_inputs, n_outputs, width, hidden_layers
        self.padded_inputs = _round_up(n_inputs, 16)
        self.padded_outputs = _round_up(n_outputs, 16)
        shapes = [(width, self.padded_inputs)]
        shapes += [(width, width)] * (hidden_layers - 1)
        shapes.append((self.padded_outputs, width))
        self.shapes = shapes
        self.numel = sum(o * i for o, i in shapes)

    def split(self, params):
        """Views of ``params`` as the row-major (out, in) matrices, first layer first."""
        matrices, offset = [], 0
        for out_dim, in_dim in self.shapes:
            matrices.append(params[offset:offset + out_dim * in_dim].view(out_dim, in_dim))
            offset += out_dim * in_dim
        return matrices


class TorchFusedMLP(nn.Module):
    """Pure-torch twin of tiny-cuda-nn's FullyFusedMLP, storing the same flat ``params`` vector.

    ``forward`` takes the inputs already padded with ones to ``layout.padded_inputs`` columns
    (shape (P, 16)) and returns (P, n_outputs) in fp32: a chain of large ``torch.mm`` calls on
    contiguous fp32 matrices with in-place LeakyReLU, processed ``chunk_rows`` rows at a time.
    """

    def __init__(self, layout, seed=42, chunk_rows=2048, inference_dtype=torch.float32):
        super().__init__()
        self.layout = layout
        self.chunk_rows = chunk_rows
        self.inference_dtype = inference_dtype
        generator = torch.Generator().manual_seed(seed)
        pieces = []
        for out_dim, in_dim in layout.shapes:  # tiny-cuda-nn's initialisation: Xavier-uniform per matrix
            bound = math.sqrt(6.0 / (out_dim + in_dim))
            pieces.append((torch.rand(out_dim * in_dim, generator=generator) * 2 - 1) * bound)
        self.params = nn.Parameter(torch.cat(pieces))

    def forward(self, padded_inputs):
        matrices = self.layout.split(self.params)
        last = matrices[-1][:self.layout.n_outputs]  # only the rows that are not padding
        if not torch.is_grad_enabled() or not (self.params.requires_grad or padded_inputs.requires_grad):
            return self._run_buffered(padded_inputs, matrices[:-1], last)
        if padded_inputs.shape[0] <= self.chunk_rows:
            return self._run(padded_inputs, matrices[:-1], last)
        return torch.cat([self._run(chunk, matrices[:-1], last) for chunk in padded_inputs.split(self.chunk_rows)])

    @staticmethod
    def _run(hidden, hidden_matrices, last):
        for weight in hidden_matrices:
            hidden = F.leaky_relu_(torch.mm(hidden, weight.t()), LEAKY_SLOPE)
        return torch.mm(hidden, last.t())

    def _run_buffered(self, inputs, hidden_matrices, last):
        """Inference: two reused (chunk, width) buffers, results written in place into the output."""
        rows = inputs.shape[0]
        chunk = min(rows, self.chunk_rows)
        dtype = torch.promote_types(inputs.dtype, self.params.dtype)
        if self.inference_dtype != torch.float32 and dtype == torch.float32:
            dtype = self.inference_dtype  # reduced-precision GEMMs (bf16), fp32 output
        inputs = inputs.to(dtype)
        weights = [w.to(dtype) for w in hidden_matrices]
        last = last.to(dtype)
        output = inputs.new_empty(rows, last.shape[0], dtype=torch.promote_types(dtype, torch.float32))
        ping = inputs.new_empty(chunk, self.layout.width)
        pong = inputs.new_empty(chunk, self.layout.width)
        for start in range(0, rows, chunk):
            stop = min(start + chunk, rows)
            source, a, b = inputs[start:stop], ping[:stop - start], pong[:stop - start]
            for weight in weights:
                torch.mm(source, weight.t(), out=a)
                F.leaky_relu_(a, LEAKY_SLOPE)
                source, a, b = a, b, a
            if output.dtype == dtype:
                torch.mm(source, last.t(), out=output[start:stop])
            else:
                output[start:stop] = torch.mm(source, last.t())
        return output


def _build_tcnn_mlp(layout, seed):
    """tiny-cuda-nn ``Network`` with the FullyFusedMLP config of the released checkpoint.

    ``tcnn.Network`` registers its flat parameter vector as ``params``, so the state-dict key
    (``imnet.params``) matches the torch backend's.
    """
    if layout.width not in (16, 32, 64, 128):
        raise ValueError(f'LMARResampler: mlp_width {layout.width} is not supported by tiny-cuda-nn '
                         'FullyFusedMLP (16, 32, 64 or 128); use mlp_backend: torch')
    config = {
        'otype': 'FullyFusedMLP',
        'activation': 'LeakyRelu',
        'output_activation': 'None',
        'n_neurons': layout.width,
        'n_hidden_layers': layout.hidden_layers,
    }
    return _tcnn.Network(layout.n_inputs, layout.n_outputs, config, seed=seed)


# ----------------------------------------------------------------------------------------------
# The resampler
# ----------------------------------------------------------------------------------------------
@ARCH_REGISTRY.register()
@configurable(
    num_channels=Option(type=int, choices=(3, ), doc='image channels (the checkpoint layout is RGB)'),
    kernel_size=Option(type=int, choices=(3, ), doc='size of the per-pixel dynamic convolution'),
    mlp_width=Option(type=int, min=16, doc='neurons per hidden layer of the CKE MLP'),
    mlp_hidden_layers=Option(type=int, min=1, doc='hidden layers of the CKE MLP'),
    mlp_backend=Option(choices=('auto', 'tcnn', 'torch'), doc='auto = tiny-cuda-nn when importable and on CUDA'),
    resize_kernel=Option(choices=KERNELS, doc='kernel of the resizer D/U'),
    antialias=Option(type=bool, doc='antialias the downscaler (released checkpoint: false)'),
    boundary=Option(choices=('constant', 'reflect', 'replicate'), doc='resize boundary handling'),
    residual_conv=Option(type=bool, doc='3x3 conv on the back-projection residual (paper eq. 6)'),
    tile_memory_mb=Option(type=(int, float), min=1, doc='budget of the tiled CKE working set in MiB'),
    tile_in_training=Option(type=bool, doc='tile (with checkpointing) also when gradients are needed'),
    mlp_chunk_rows=Option(type=int, min=256, doc='rows per MLP GEMM chunk (small: cache-resident)'),
    mlp_inference_precision=Option(choices=('fp32', 'bf16'), doc='torch MLP GEMMs without gradients: fp32 '
                                   '(exact) or bf16 (faster on CPUs with bf16 units; tcnn itself runs fp16)'),
    modulation_init=Option(choices=('identity', 'default'), doc='identity: x_c = x_d at initialisation'),
    seed=Option(type=int))
class LMARResampler(nn.Module):
    """Learned model-aware resampler: ``x_c = net(x, (h, w))``.

    Args:
        num_channels: image channels (3).
        kernel_size: dynamic convolution size (3).
        mlp_width, mlp_hidden_layers: CKE MLP shape (128, 5: the released checkpoint).
        mlp_backend: ``auto`` | ``tcnn`` | ``torch``; all store ``imnet.params`` in one layout.
        resize_kernel, antialias, boundary: the resizer D/U (any kernel of
            :func:`basicsr_lmar.ops.resize.resize`). Defaults reproduce the released code:
            resize_right lanczos3 without antialiasing, constant boundary. ``forward`` may override the
            kernel per call (validation sweeps resizers).
        residual_conv: pass the residual through a 3x3 conv (paper eq. 6) instead of raw (code).
        tile_memory_mb: working-set budget of one CKE tile (features, MLP activations, kernels).
        tile_in_training: when gradients are needed, also tile (each tile is checkpointed and
            recomputed in backward) instead of running one untiled pass.
        mlp_chunk_rows: rows per MLP GEMM chunk inside a tile. 2048 rows keep a chunk's 128-wide
            activations (1 MiB) in cache through all six layers (on CPU the MLP ran at 46 % of the
            fp32 GEMM peak with 131,072-row chunks, 83-86 % with 2,048; scripts/benchmarks/bench_lmar_cost.py).
        mlp_inference_precision: ``fp32`` (default, exact) or ``bf16`` GEMMs for the torch MLP when no
            gradients are needed (training always runs fp32).
        modulation_init: ``default`` (PyTorch's conv initialisation, as the released code) or
            ``identity``: the 1x1 conv starts as x_c = x_d, so training starts from the plain resizer and
            the D(x_hat) path grows from zero (the MLP gets gradients from the second step on).
        seed: MLP initialisation seed.
    """

    def __init__(self, num_channels=3, kernel_size=3, mlp_width=128, mlp_hidden_layers=5, mlp_backend='auto',
                 resize_kernel='lanczos3', antialias=False, boundary='constant', residual_conv=False,
                 tile_memory_mb=256, tile_in_training=False, mlp_chunk_rows=2048, mlp_inference_precision='fp32',
                 modulation_init='default', seed=42):
        super().__init__()
        self.num_channels = num_channels
        self.kernel_size = kernel_size
        self.resize_kernel = resize_kernel
        self.antialias = antialias
        self.boundary = boundary
        self.tile_memory_mb = tile_memory_mb
        self.tile_in_training = tile_in_training
        n_inputs = NUM_SCALE_FEATURES + num_channels
        n_outputs = num_channels * kernel_size * kernel_size * num_channels
        self.layout = FusedMLPLayout(n_inputs, n_outputs, mlp_width, mlp_hidden_layers)
        if mlp_backend == 'auto':
            mlp_backend = 'tcnn' if tcnn_available() else 'torch'
            if mlp_backend == 'torch' and torch.cuda.is_available():  # on a CPU-only machine torch is the only choice
                warnings.warn(f'LMARResampler: mlp_backend "auto" uses the torch MLP on this CUDA machine because '
                              f'{tcnn_unavailable_reason()}; the checkpoint layout is the same, but tiny-cuda-nn\'s '
                              'fused MLP is faster (install it, or set mlp_backend: torch to silence this)',
                              RuntimeWarning, stacklevel=2)
        if mlp_backend == 'tcnn' and not tcnn_available():
            raise ValueError('LMARResampler: mlp_backend is "tcnn" but tinycudann is not importable or CUDA is '
                             'unavailable; install tiny-cuda-nn or set mlp_backend: torch (same checkpoint layout)')
        self.mlp_backend = mlp_backend
        if mlp_backend == 'tcnn':
            self.imnet = _build_tcnn_mlp(self.layout, seed)
        else:
            self.imnet = TorchFusedMLP(self.layout, seed=seed, chunk_rows=mlp_chunk_rows,
                                       inference_dtype={'fp32': torch.float32, 'bf16': torch.bfloat16}[
                                           mlp_inference_precision])
        self.residual_conv = nn.Conv2d(num_channels, num_channels, 3, 1, 1) if residual_conv else None
        self.modulation = nn.Conv2d(2 * num_channels, num_channels, 1, 1, 0)
        if modulation_init == 'identity':  # start as the plain resizer: x_c = x_d, the D(x_hat) path at zero
            with torch.no_grad():
                self.modulation.weight.zero_()
                self.modulation.weight[:, :num_channels, 0, 0] = torch.eye(num_channels)
                self.modulation.bias.zero_()

    # -- resizer -------------------------------------------------------------------------------
    def resize(self, x, size, kernel=None):
        """The resizer D/U of this resampler (``kernel`` overrides the configured one)."""
        return resize(x, tuple(int(s) for s in size), kernel or self.resize_kernel, self.antialias, self.boundary)

    # -- per-pixel kernels -----------------------------------------------------------------------
    def _mlp(self, padded_features):
        if self.mlp_backend == 'tcnn':
            out = self.imnet(padded_features[:, :self.layout.n_inputs].contiguous())
            return out.float()
        return self.imnet(padded_features)

    def bytes_per_pixel(self):
        """Working set per UHD pixel of one CKE tile (fp32), used to size the tiles."""
        width = self.layout.width
        floats = (self.layout.padded_inputs + 2 * width + 2 * self.layout.n_outputs  # features, ping-pong, K, product
                  + self.num_channels * (self.kernel_size**2 + 2))  # window values, output, residual slice
        return 4 * floats

    def tile_rows(self, batch, height, width):
        """Rows per CKE tile so that one tile's working set (all images of the batch) fits ``tile_memory_mb``."""
        budget = self.tile_memory_mb * 2**20
        return max(1, min(height, int(budget // (batch * width * self.bytes_per_pixel()))))

    def _cke_rows(self, x, residual, row_offsets, col_offsets, cells, top, bottom):
        """x_hat for rows [top, bottom) of x (N, C, H, W); ``residual`` has the same shape as x."""
        n, c, _, w = x.shape
        rows = bottom - top
        pixels = n * rows * w
        features = x.new_ones(n, rows, w, self.layout.padded_inputs)
        features[..., 0] = row_offsets[top:bottom].view(1, rows, 1)
        features[..., 1] = col_offsets.view(1, 1, w)
        features[..., 2] = cells[0]
        features[..., 3] = cells[1]
        features[..., NUM_SCALE_FEATURES:NUM_SCALE_FEATURES + c] = residual[:, :, top:bottom].permute(0, 2, 3, 1)
        kernels = self._mlp(features.view(pixels, -1)).view(n, rows, w, c * self.kernel_size**2, c)
        # zero-padded 3x3 neighbourhood of the rows (one-pixel halo from the neighbouring rows)
        pad = self.kernel_size // 2
        halo_top, halo_bottom = max(top - pad, 0), min(bottom + pad, x.shape[2])
        window = x[:, :, halo_top:halo_bottom]
        window = F.pad(window, (pad, pad, pad - (top - halo_top), pad - (halo_bottom - bottom)))
        columns = F.unfold(window, self.kernel_size)  # (N, C*k*k, rows*W), unfold order
        taps = c * self.kernel_size**2
        columns = columns.transpose(1, 2).reshape(pixels, 1, taps)
        x_hat = torch.bmm(columns, kernels.view(pixels, taps, c))  # per-pixel (1, 27) x (27, 3)
        return x_hat.view(n, rows, w, c).permute(0, 3, 1, 2).contiguous()

    def content_kernel_conv(self, x, lr_size, x_d=None, kernel=None):
        """x_hat = K (*) x at full resolution, K from the CKE MLP (tiled, see class docstring)."""
        n, c, big_h, big_w = x.shape
        h, w = lr_size
        if x_d is None:
            x_d = self.resize(x, (h, w), kernel)
        residual = x - self.resize(x_d, (big_h, big_w), kernel)
        if self.residual_conv is not None:
            residual = self.residual_conv(residual)
        row_offsets = nearest_centre_offset(big_h, h, x.device, x.dtype)
        col_offsets = nearest_centre_offset(big_w, w, x.device, x.dtype)
        cells = relative_cell((big_h, big_w), (h, w), x.dtype)
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        rows = self.tile_rows(n, big_h, big_w)
        if rows >= big_h or (needs_grad and not self.tile_in_training):
            return self._cke_rows(x, residual, row_offsets, col_offsets, cells, 0, big_h)
        if needs_grad:  # each tile is recomputed in backward instead of keeping its activations
            tiles = [
                checkpoint(self._cke_rows, x, residual, row_offsets, col_offsets, cells, top, min(top + rows, big_h),
                           use_reentrant=False) for top in range(0, big_h, rows)
            ]
            return torch.cat(tiles, dim=2)
        x_hat = torch.empty_like(x)  # tiles are written in place: no second full-size copy
        for top in range(0, big_h, rows):
            bottom = min(top + rows, big_h)
            x_hat[:, :, top:bottom] = self._cke_rows(x, residual, row_offsets, col_offsets, cells, top, bottom)
        return x_hat

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x, size, kernel=None, return_intermediates=False):
        """Resamples ``x`` (N, C, H, W) to ``size`` = (h, w).

        Returns ``x_c``, or with ``return_intermediates`` a dict with ``x_c``, ``x_d`` (plain
        downscale) and ``x_hat`` (the full-resolution dynamic-convolution output).
        """
        h, w = (int(s) for s in size)
        big_h, big_w = x.shape[-2:]
        if x.dim() != 4 or x.shape[1] != self.num_channels:
            raise ValueError(f'LMARResampler: expected an (N, {self.num_channels}, H, W) image, got {tuple(x.shape)}')
        if not (0 < h <= big_h and 0 < w <= big_w):
            raise ValueError(f'LMARResampler: target size {(h, w)} must be positive and not larger than the input '
                             f'{(big_h, big_w)}; LMAR resamples UHD inputs down to a working size')
        x_d = self.resize(x, (h, w), kernel)
        x_hat = self.content_kernel_conv(x, (h, w), x_d=x_d, kernel=kernel)
        x_c = self.modulation(torch.cat([x_d, self.resize(x_hat, (h, w), kernel)], dim=1))
        if return_intermediates:
            return {'x_c': x_c, 'x_d': x_d, 'x_hat': x_hat}
        return x_c

    @torch.no_grad()
    def enhance(self, x, enhancer, size, kernel=None, use_lmar=True):
        """LMAR inference, the one entry that the model's validation, the scripts and the benchmarks call:
        ``U(enhancer(x_c))`` at working size ``size``, clamped to [0, 1], with resizer ``kernel`` for
        both D and U (``None``: ``resize_kernel``). ``use_lmar=False`` gives the plain baseline
        ``U(enhancer(D(x)))``. Call it on the bare modules (no DDP wrapper: no collectives)."""
        low = self(x, size, kernel=kernel) if use_lmar else self.resize(x, size, kernel)
        return self.resize(enhancer(low), tuple(x.shape[-2:]), kernel).clamp_(0, 1)
