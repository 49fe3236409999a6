"""8-bit quantisation of images in [0, 1] with a straight-through gradient.

``quantize_ste(x)`` clamps to [0, 1] and rounds to ``levels`` steps (255 for 8-bit PNGs) in the
forward pass; the backward pass is the identity (straight-through estimator), as IRN trains its LR
output and as HCD optimises through the stored LR. ``quantize(x)`` is the same forward pass without a
graph, for images that will be written to disk: ``quantize(x) * 255`` holds exact integers.

``basicsr_lmar.ops.rounding.round_ste`` rounds without clamping; this module adds the clamp to the
image range that a stored image needs (the gradient also passes straight through the clamp, as in the
IRN and HCD authors' ``Quantization``).
"""
import torch


def quantize(x: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """Clamps to [0, 1] and rounds to multiples of 1/levels. Not differentiable (zero gradient)."""
    return torch.round(x.clamp(0, 1) * levels) / levels


def quantize_ste(x: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """:func:`quantize` in the forward pass, identity gradient in the backward pass."""
    if levels < 1:
        raise ValueError(f'quantize_ste: levels must be >= 1, got {levels}')
    return x + (quantize(x, levels) - x).detach()
