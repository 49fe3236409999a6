"""Pixel-centre coordinates shared by the methods (LIIF / LMAR conventions).

Coordinates live in [-1, 1] with the ``align_corners=False`` convention: the image spans [-1, 1] edge
to edge, and pixel ``i`` of an axis of ``n`` pixels has its centre at ``-1 + (2 i + 1) / n``. Grids are
ordered **(y, x)** in the last dim (row coordinate first), which is the order LMAR feeds its MLP; note
that ``F.grid_sample`` wants (x, y), so flip the last dim before sampling (``grid.flip(-1)``).
"""
import numbers

import torch


def _check_size(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    return int(value)


def _check_pair(name, pair):
    if not isinstance(pair, (tuple, list, torch.Size)) or len(pair) != 2:
        raise ValueError(f'{name} must be a pair (h, w) of positive ints, got {pair!r}')
    return _check_size(f'{name}[0]', pair[0]), _check_size(f'{name}[1]', pair[1])


def pixel_centres(n, device=None, dtype=None):
    """The ``n`` pixel-centre coordinates of one axis in [-1, 1]: ``-1 + (2 i + 1) / n``.

    Evaluated as ``(-1 + 1/n) + (2/n) · i`` in ``dtype`` (default float32), the same arithmetic as the
    LIIF/LMAR ``make_coord``, so float32 values match theirs bit for bit.
    """
    n = _check_size('n', n)
    dtype = dtype or torch.float32
    return (-1 + 1 / n) + (2 / n) * torch.arange(n, device=device, dtype=dtype)


def pixel_centre_grid(h, w, device=None, dtype=None):
    """Pixel-centre coordinates of an ``h × w`` image: tensor (h, w, 2), last dim ordered (y, x).

    ``grid[i, j] = (-1 + (2 i + 1) / h, -1 + (2 j + 1) / w)``; equals LMAR's
    ``make_coord((h, w), flatten=False)``.
    """
    h, w = _check_size('h', h), _check_size('w', w)
    ys = pixel_centres(h, device, dtype)
    xs = pixel_centres(w, device, dtype)
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1)


def cell_size(h, w):
    """Size of one pixel of an ``h × w`` image in [-1, 1] units, ordered (y, x): ``(2 / h, 2 / w)``.

    LMAR (like LIIF) gives its MLP this cell of the HR query pixel, rescaled by the LR size: see
    ``relative_cell``.
    """
    h, w = _check_size('h', h), _check_size('w', w)
    return 2 / h, 2 / w


def relative_cell(hr_size, lr_size, dtype=torch.float32):
    """LMAR's cell input: the HR pixel size measured against the LR image, ``(2 h_lr / H, 2 w_lr / W)``,
    as two 0-d tensors computed the way the released code does (``dtype(2 / H) * h_lr``), so float32
    values match theirs bit for bit."""
    (hr_h, hr_w), (lr_h, lr_w) = _check_pair('hr_size', hr_size), _check_pair('lr_size', lr_size)
    cell_h, cell_w = cell_size(hr_h, hr_w)
    return torch.tensor(cell_h, dtype=dtype) * lr_h, torch.tensor(cell_w, dtype=dtype) * lr_w


def nearest_centre_offset(hr_n, lr_n, device=None, dtype=None):
    """For each of the ``hr_n`` pixel centres of one axis, its offset from the nearest of ``lr_n`` LR
    pixel centres, in units of ``2 / lr_n`` (half an LR pixel): a 1-D tensor in [-1, 1].

    The nearest centre is the one ``F.grid_sample(..., mode='nearest', align_corners=False)`` of the LR
    centre grid picks, as the authors find it: index ``round(((g + 1) * lr_n - 1) / 2)`` with round half
    to even (how grid_sample breaks ties), clamped into range. O(n) per axis.
    """
    hr_n, lr_n = _check_size('hr_n', hr_n), _check_size('lr_n', lr_n)
    hr = pixel_centres(hr_n, device, dtype)
    lr = pixel_centres(lr_n, device, dtype)
    index = torch.round(((hr + 1) * lr_n - 1) / 2).long().clamp_(0, lr_n - 1)
    return (hr - lr[index]) * lr_n


def relative_coords_to_nearest(hr_size, lr_size, device=None, dtype=None):
    """Offset of every HR pixel centre from its nearest LR pixel centre, as LMAR feeds its MLP.

    Returns a tensor (H, W, 2) ordered (y, x): ``(hr_centre - nearest_lr_centre) · (h_lr, w_lr)``, the
    per-axis :func:`nearest_centre_offset` broadcast over the image. Since an LR pixel is ``2 / h_lr``
    wide in [-1, 1] units, the values lie in [-1, 1] (±1 at the LR pixel's edges). The authors clamp HR
    coordinates by 1e-6 first, which changes nothing for images narrower than a million pixels.
    """
    (hr_h, hr_w), (lr_h, lr_w) = _check_pair('hr_size', hr_size), _check_pair('lr_size', lr_size)
    offset_y = nearest_centre_offset(hr_h, lr_h, device, dtype).view(hr_h, 1).expand(hr_h, hr_w)
    offset_x = nearest_centre_offset(hr_w, lr_w, device, dtype).view(1, hr_w).expand(hr_h, hr_w)
    return torch.stack([offset_y, offset_x], dim=-1)
