"""Image geometry shared by the models and the scripts: crops to size multiples, sizes scaled to an input."""
import math


def crop_to_multiple(x, *factors, what='image', label=None):
    """``x`` (..., H, W) cropped at the bottom/right so that H and W are multiples of every factor (of
    their least common multiple), as BasicSR's ``GTmod`` folders are. An image smaller than that multiple
    is a ``ValueError`` naming ``what``, its size and ``label`` (what the multiple is, e.g. 'the scale 4')."""
    multiple = math.lcm(*(int(f) for f in factors))
    height, width = x.shape[-2:]
    if height < multiple or width < multiple:
        label = label or (f'{multiple}' if len(factors) == 1 else
                          f'{multiple}, the least common multiple of {", ".join(str(f) for f in factors)}')
        raise ValueError(f'{what} is {width}x{height} pixels, smaller than {label}; leave it out of the input')
    return x[..., :height - height % multiple, :width - width % multiple]


def scaled_target_sizes(input_size, target_sizes, reference_size):
    """``target_sizes`` ([h, w] pairs given for an input of ``reference_size``) scaled per axis to an
    input of ``input_size`` (rounded, at least 1 pixel), duplicates dropped, order kept. A size that is
    not a positive pair or exceeds ``reference_size`` is a ``ValueError`` naming it."""
    sizes = []
    for size in target_sizes:
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise ValueError(f'target size {size!r} must be a pair [h, w]')
        h, w = size
        if h <= 0 or w <= 0:
            raise ValueError(f'target size {list(size)} must be positive')
        if h > reference_size[0] or w > reference_size[1]:
            raise ValueError(f'target size {list(size)} is larger than reference_size {list(reference_size)}; '
                             'only downscaling is supported: use sizes <= the reference')
        scaled = (max(1, round(h * input_size[0] / reference_size[0])),
                  max(1, round(w * input_size[1] / reference_size[1])))
        if scaled not in sizes:
            sizes.append(scaled)
    return sizes
