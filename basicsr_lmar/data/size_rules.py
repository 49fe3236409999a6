"""What image sizes a method accepts, declared by its model and checked when the data is built.

A model of the plugin declares :meth:`image_size_rule` (a classmethod reading the option file: the scale,
``network_g``, ``val.target_sizes`` ...) and returns an :class:`ImageSizeRule`: heights and widths must
be multiples of ``multiple`` and at least ``minimum``. The preflight (:mod:`basicsr_lmar.preflight`) adds
what the configured validation metrics need (:func:`metric_minimum`: SSIM's 11x11 window inside the
``crop_border``) and checks every image of every dataset against it, from the image headers (folders),
``meta_info.txt`` (LMDB) or the photos in memory, before anything is trained.

``size_policy`` in a dataset section says what happens to an image whose size is not a multiple:

- ``crop`` (default, what the models do): the model crops it at the bottom/right; the run logs which
  images are cropped and to what size;
- ``refuse``: the run stops before training, naming each such image, its size and the multiple;
- ``pad`` (models whose rule says ``can_pad``: IRN, as upstream IRN users asked, issue #46): the model
  pads it at the bottom/right (reflection) to the multiple and crops its result back to the image's
  size, so that every pixel is scored; the log lists each padded image.

An image smaller than the minimum is refused under ``crop`` and ``refuse``: cropping cannot make it usable.
"""
import math

SIZE_POLICIES = ('crop', 'refuse', 'pad')

#: side of the window of basicsr's ``calculate_ssim`` (an 11x11 Gaussian, 'valid' borders)
SSIM_WINDOW = 11

#: LMAR: every working size at least this per side (``scripts/lmar_infer.py`` refuses the same sizes)
LMAR_MIN_WORKING_SIDE = 8


def format_size(size):
    return f'{size[0]}x{size[1]}'


class ImageSizeRule:
    """Heights and widths multiples of ``multiple`` and at least ``minimum`` = (h, w); ``requirement``
    names who needs it (``'CARModel x4 (CARResamplerNet: multiples of 8 and of the scale)'``)."""

    def __init__(self, multiple=1, minimum=1, requirement='', can_pad=False):
        self.multiple = int(multiple)
        self.can_pad = can_pad
        minimum = (minimum, minimum) if isinstance(minimum, int) else tuple(minimum)
        self.minimum = tuple(max(int(m), self.multiple) for m in minimum)
        self.requirement = requirement
        self.extra = []  # (minimum (h, w) after the crop, why): from the metrics

    def require_minimum(self, minimum, why):
        """Adds a minimum (h, w) that the image must meet *after* the crop to the multiple."""
        self.extra.append((tuple(minimum), why))
        return self

    def fitted(self, size, policy='crop'):
        """The size the model works on: cropped (or, ``pad``, padded) at the bottom/right to the multiple."""
        if policy == 'pad':
            return tuple(s + (-s) % self.multiple for s in size)
        return tuple(s - s % self.multiple for s in size)

    def problem(self, size, policy='crop'):
        """Why an image of ``size`` = (h, w) cannot be used, or None."""
        if policy == 'pad' and not self.can_pad:
            return f'size_policy: pad is not supported by {self.requirement}; use crop or refuse'
        if policy != 'pad' and (size[0] < self.minimum[0] or size[1] < self.minimum[1]):
            return (f'{format_size(size)} (HxW) is smaller than the minimum {format_size(self.minimum)} of '
                    f'{self.requirement}')
        if policy == 'refuse' and self.fitted(size) != tuple(size):
            return (f'{format_size(size)} (HxW) is not a multiple of {self.multiple}, which {self.requirement} '
                    f'needs (size_policy: refuse); crop it to {format_size(self.fitted(size))} or set '
                    'size_policy: crop in the dataset section')
        scored = tuple(size) if policy == 'pad' else self.fitted(size)  # pad: results cropped back
        for minimum, why in self.extra:
            if scored[0] < minimum[0] or scored[1] < minimum[1]:
                shown = f'{format_size(size)} (HxW)' + (f', {format_size(scored)} after the crop to multiples '
                                                        f'of {self.multiple},' if scored != tuple(size) else '')
                return f'{shown} is smaller than the {format_size(minimum)} that {why} needs'
        return None

    def notice(self, size, policy='crop'):
        fitted = self.fitted(size, policy)
        if fitted == tuple(size):
            return None
        if policy == 'pad':
            return f'{format_size(size)} padded to {format_size(fitted)}'
        return f'{format_size(size)} cropped to {format_size(fitted)}'


def metric_minimum(metrics):
    """The smallest (h, w) the configured validation metrics can score, with the reason, or None.

    basicsr's metrics crop ``crop_border`` pixels from every side first; SSIM then needs its 11x11
    window inside what is left, the other metrics at least one pixel."""
    best = None
    for name, metric in (metrics or {}).items():
        if not isinstance(metric, dict):
            continue
        border = metric.get('crop_border', 0)
        border = border if isinstance(border, int) and not isinstance(border, bool) else 0
        kind = str(metric.get('type', name))
        inner = SSIM_WINDOW if 'ssim' in kind.lower() else 1
        side = inner + 2 * border
        if best is None or side > best[0]:
            what = f"val.metrics.{name} ({kind}, crop_border {border}" + (
                f', its {SSIM_WINDOW}x{SSIM_WINDOW} window)' if inner > 1 else ')')
            best = (side, what)
    return best


def lcm(*factors):
    return math.lcm(*(int(f) for f in factors))


class WorkingSizeRule(ImageSizeRule):
    """LMAR: an image is enhanced at working sizes smaller than itself (``target_sizes`` given for
    ``reference_size``, scaled to the image); each must be at least :data:`LMAR_MIN_WORKING_SIDE` per side."""

    def __init__(self, target_sizes, reference_size, requirement):
        super().__init__(1, 1, requirement)
        self.target_sizes, self.reference_size = target_sizes, reference_size

    def problem(self, size, policy='crop'):
        from basicsr_lmar.ops.geometry import scaled_target_sizes

        smallest = LMAR_MIN_WORKING_SIDE
        sizes = scaled_target_sizes(size, self.target_sizes, self.reference_size)
        small = [s for s in sizes if min(s) < smallest]
        if small:
            return (f'{format_size(size)} (HxW) would be enhanced at {format_size(small[0])}, below the smallest '
                    f'working size {smallest}x{smallest} of {self.requirement}; use larger images or larger '
                    'val.target_sizes')
        return super().problem(size, policy)


#: lines the preflight found worth logging (images cropped); the model logs them once the run's log exists
PENDING_NOTICES = []


def take_notices():
    notices = list(PENDING_NOTICES)
    PENDING_NOTICES.clear()
    return notices
