"""Tile-by-tile inference for fully convolutional image-to-image networks (memory-bounded validation).

:func:`tiled_forward` runs ``net`` on overlapping tiles and blends the outputs: in each overlap the
outer quarter next to a tile border is discarded and the middle half cross-fades linearly, so seams
fade instead of cutting. Peak memory is that of one tile's forward pass instead of the whole image's.

It is exact for networks whose output at a pixel depends only on inputs within ``overlap // 4``
pixels (plain conv nets with a small receptive field). The UHD enhancers are not such networks: their
instance norms (and Restormer's transposed attention) use statistics of the *whole* input, which
change from tile to tile, so tiled outputs differ from the full-image output (see
``docs/enhancers.md`` for the measured PSNR difference). Use it when full-resolution inference does
not fit in memory, and report it.
"""
import torch


def _pair(value, name):
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f'{name} must be an int or (h, w), got {value!r}')
    return tuple(int(v) for v in value)


def _starts(length, tile, stride):
    """Tile start offsets covering ``[0, length)``; the last tile ends at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _edge_weight(length, overlap, blend_start, blend_end, device, dtype):
    """1-D tile weight. At an interior tile edge (``blend_*``) the outer ``overlap // 4`` samples get 0
    (they carry the zero-padding artefacts of the tile border), the next ``overlap - 2 * (overlap // 4)``
    rise linearly, the rest is 1. Edges on the image border keep weight 1. Where two tiles overlap by
    ``overlap`` samples, at least one weight is positive everywhere."""
    margin = overlap // 4
    ramp_length = overlap - 2 * margin
    distance = torch.arange(length, device=device, dtype=dtype)
    weight = torch.ones(length, device=device, dtype=dtype)
    for blend, dist in ((blend_start, distance), (blend_end, length - 1 - distance)):
        if blend and overlap > 0:
            weight = torch.minimum(weight, ((dist - margin + 1) / (ramp_length + 1)).clamp(0, 1))
    return weight


def tiled_forward(net, x, tile, overlap=32, scale=1):
    """Applies ``net`` to ``x`` (N, C, H, W) tile by tile and blends the tiles into one output.

    Args:
        net: a callable mapping an (N, C, h, w) tile to (N, C', h * scale, w * scale).
        x: the input batch.
        tile: tile size, int or (h, w); images smaller than a tile are processed whole in that dim.
            Multiples of the network's size multiple (4 for UHDUNet, 8 for Restormer) avoid padding.
        overlap: pixels (input resolution) shared by neighbouring tiles; must be smaller than the tile.
            Exact for receptive radii up to ``overlap // 4``.
        scale: output/input size ratio of ``net`` (1 for enhancers).

    Returns:
        The (N, C', H * scale, W * scale) output. Gradients flow if enabled (wrap in ``torch.no_grad()``
        for inference).
    """
    tile_h, tile_w = _pair(tile, 'tile')
    overlap_h, overlap_w = _pair(overlap, 'overlap')
    if min(tile_h, tile_w) < 1 or overlap_h < 0 or overlap_w < 0:
        raise ValueError(f'tile must be >= 1 and overlap >= 0, got tile={tile!r}, overlap={overlap!r}')
    if overlap_h >= tile_h or overlap_w >= tile_w:
        raise ValueError(f'overlap {overlap!r} must be smaller than tile {tile!r}')
    n, _, h, w = x.shape
    tile_h, tile_w = min(tile_h, h), min(tile_w, w)
    ys = _starts(h, tile_h, tile_h - min(overlap_h, tile_h - 1))
    xs = _starts(w, tile_w, tile_w - min(overlap_w, tile_w - 1))

    output = weight_sum = None
    for top in ys:
        for left in xs:
            patch = net(x[..., top:top + tile_h, left:left + tile_w])
            if output is None:
                if patch.shape[-2:] != (tile_h * scale, tile_w * scale):
                    raise ValueError(f'net turned a {tile_h}x{tile_w} tile into {tuple(patch.shape[-2:])}; '
                                     f'expected {tile_h * scale}x{tile_w * scale} (scale={scale})')
                output = x.new_zeros(n, patch.shape[1], h * scale, w * scale, dtype=patch.dtype)
                weight_sum = x.new_zeros(1, 1, h * scale, w * scale, dtype=patch.dtype)
            weight_y = _edge_weight(tile_h * scale, overlap_h * scale, top > 0, top + tile_h < h, x.device,
                                    patch.dtype)
            weight_x = _edge_weight(tile_w * scale, overlap_w * scale, left > 0, left + tile_w < w, x.device,
                                    patch.dtype)
            window = weight_y[:, None] * weight_x[None, :]
            rows = slice(top * scale, (top + tile_h) * scale)
            cols = slice(left * scale, (left + tile_w) * scale)
            output[..., rows, cols] += patch * window
            weight_sum[..., rows, cols] += window
    return output / weight_sum
