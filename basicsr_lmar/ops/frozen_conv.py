"""2-D convolution with frozen weights whose input gradient is computed by a forward convolution.

Test-time optimisation (HCD) differentiates a *frozen* network with respect to its input only, so each
convolution's backward is a single "backward-data" call: the adjoint of the convolution, i.e. a
transposed convolution with the same weights. On CPU (oneDNN) that call is very slow when the
convolution has few output channels, fewer than one SIMD block: in IRN's dense blocks the last conv
(137 -> 3 channels) spends several times longer in its backward-data than in its forward.

The same adjoint is also an ordinary convolution, of the gradient with the spatially flipped and
channel-transposed weights (3 -> 137 channels here), which oneDNN runs through its fast forward kernel
(per-layer times: ``scripts/benchmarks/bench_hcd_cost.py --conv-table``, figures in
docs/benchmarks.md, "HCD / IRN"). :func:`conv2d_frozen` uses that formulation for narrow convolutions whose
weights need no gradient; it equals the autograd path up to float summation order (tested, and with
``gradcheck`` in float64). Everything else — weights that train, strides, dilations, groups, wide
outputs — goes through :func:`torch.nn.functional.conv2d` unchanged (the reference path).
"""
import torch
from torch.nn import functional as F

# Below this many output channels the adjoint is computed as a forward convolution. 16 fp32 values fill
# one AVX-512 register, oneDNN's channel block; on the development machine the forward formulation wins
# for IRN's 3- and 9-channel outputs, and the two are equal within noise at 32 and 45.
NARROW_OUTPUT_CHANNELS = 16


def _adjoint_weight(weight):
    """Weights of the convolution that computes the adjoint (input gradient) of ``weight``'s."""
    return weight.flip(-2, -1).transpose(0, 1)


class _FrozenConvInputGrad(torch.autograd.Function):
    """conv2d(x, weight, bias) with stride 1; backward returns the input gradient only."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad_output):
        (weight, ) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        kernel_h, kernel_w = weight.shape[-2:]
        pad_h, pad_w = ctx.padding
        # Output size of a stride-1 conv is in + 2p - k + 1, so padding k - 1 - p restores the input size.
        grad_input = F.conv2d(grad_output, _adjoint_weight(weight), padding=(kernel_h - 1 - pad_h,
                                                                              kernel_w - 1 - pad_w))
        return grad_input, None, None, None


def conv2d_frozen(x, weight, bias=None, padding=0):
    """``F.conv2d(x, weight, bias, stride=1, padding=padding)`` with a fast input gradient.

    The fast path applies when the weights (and bias) do not require grad, the padding keeps the
    adjoint a plain convolution (``0 <= padding <= kernel - 1`` per axis), and the convolution has
    fewer than :data:`NARROW_OUTPUT_CHANNELS` output channels; otherwise this is ``F.conv2d``.
    """
    padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
    kernel = weight.shape[-2:]
    fast = (x.requires_grad and torch.is_grad_enabled() and not weight.requires_grad
            and (bias is None or not bias.requires_grad) and weight.shape[0] < NARROW_OUTPUT_CHANNELS
            and all(0 <= p <= k - 1 for p, k in zip(padding, kernel)))
    if not fast:
        return F.conv2d(x, weight, bias, padding=padding)
    return _FrozenConvInputGrad.apply(x, weight, bias, padding)
