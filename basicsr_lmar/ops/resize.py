"""Differentiable image resizing at any output size: ``resize(x, size, kernel, antialias, boundary)``.

Reference semantics are those of the ``resize-right`` package (Shocher et al.): pixel-centre aligned
projection, MATLAB-style antialiasing (the kernel is stretched by 1/scale when downscaling) and
``pad_mode='constant'`` boundaries by default, which is what the LMAR authors trained with.

This is the reference path (it calls ``resize_right``); a fast path with the same signature is tested
against it.
"""
import torch
from resize_right import interp_methods
from resize_right import resize as _resize_right

KERNELS = ('nearest', 'bilinear', 'bicubic', 'lanczos2', 'lanczos3', 'box')
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


def resize_reference(x: torch.Tensor, size, kernel='bicubic', antialias=True, boundary='constant'):
    """Resizes the last two dims of ``x`` (N, C, H, W) to ``size`` = (h, w) with resize_right."""
    if kernel not in _RESIZE_RIGHT_KERNELS:
        raise ValueError(f'resize: kernel {kernel!r} has no resize_right reference; '
                         f'choose one of {sorted(_RESIZE_RIGHT_KERNELS)}')
    out_shape = tuple(x.shape[:-2]) + tuple(int(s) for s in size)
    return _resize_right(x, out_shape=out_shape, interp_method=_RESIZE_RIGHT_KERNELS[kernel],
                         antialiasing=antialias, pad_mode=boundary)


def resize(x: torch.Tensor, size, kernel='bicubic', antialias=True, boundary='constant'):
    """Resizes the last two dims of ``x`` to ``size`` = (h, w). Differentiable w.r.t. ``x``."""
    return resize_reference(x, size, kernel, antialias, boundary)
