"""Padding an image batch to sizes a network accepts, and cropping back."""
import torch.nn.functional as F


def pad_to_multiple(x, multiple, min_size=0):
    """Pads the bottom/right of ``x`` (N, C, H, W) so that height and width are multiples of ``multiple``
    and at least ``min_size``; returns the padded tensor and the original ``(H, W)`` for cropping back
    with ``y[..., :H, :W]``.

    Reflection padding where the image is large enough (no new edge is created), replication otherwise.
    """
    h, w = x.shape[-2:]
    pad_h = max(h + (-h) % multiple, min_size) - h
    pad_w = max(w + (-w) % multiple, min_size) - w
    if pad_h or pad_w:
        mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (h, w)
