"""What image sizes a method accepts: one family of rules for the datasets, the models and the folder tools.

A model of the plugin declares :meth:`image_size_rule` (a classmethod reading the option file: the scale,
``network_g``, ``val.target_sizes`` ...) and returns a :class:`SizeRule`: heights and widths must be
multiples of ``multiple`` and at least ``minimum``; LMAR's :class:`WorkingSizeRule` adds that every
working size an image is enhanced at is at least :data:`MIN_WORKING_SIDE` per side. The preflight
(:mod:`basicsr_lmar.preflight`) checks every image of every dataset against it with
:func:`check_dataset_images`, from the image headers (folders), ``meta_info.txt`` (LMDB) or the photos in
memory, adding what the validation metrics need (:func:`metric_minimum`: SSIM's 11x11 window inside the
``crop_border``). The folder tools (:mod:`basicsr_lmar.cli.folders`) check every input against a rule
whose policy is their ``--size-policy`` flag, and fit images to it (:meth:`SizeRule.fit`).

The size policy (``size_policy`` of a dataset section, ``--size-policy`` of a tool) says what happens to an
image whose size is not a multiple:

- ``crop`` (default, what the models do): cropped at the bottom/right; each cropped image is listed;
- ``refuse``: the run stops before computing anything, naming each such image, its size and the multiple;
- ``pad`` (the tools; of the models, those whose rule says ``can_pad``: IRN, whose authors' code does not
  handle sizes that are not multiples, reported upstream): padded at the bottom/right (reflection) to the
  multiple, results cropped back to the image's size, so that every pixel is scored; each padded image is
  listed.

An image smaller than the minimum is refused: cropping cannot make it usable.
"""
import copy
import math
import os.path as osp

from basicsr_lmar.options import Option, OptionError

SIZE_POLICIES = ('crop', 'refuse', 'pad')
#: the ``size_policy`` key of the plugin's datasets
SIZE_POLICY_OPTION = Option('crop', choices=SIZE_POLICIES, doc="an image that is not a multiple of the model's size: "
                            'crop (logged), refuse, or pad (IRN: the model pads it and crops its result back)')

#: side of the window of basicsr's ``calculate_ssim`` (an 11x11 Gaussian, 'valid' borders)
SSIM_WINDOW = 11

#: LMAR: every working size at least this per side. The enhancers pad a smaller input up to 8 pixels (UHDUNet:
#: instance norm at 1/4 resolution; Restormer: three halvings), so below it they would mostly see padding.
MIN_WORKING_SIDE = 8

#: the key of ``opt`` under which the preflight hands its notices (images cropped or padded) to the model,
#: which logs them once basicsr's log exists
NOTICES_KEY = 'image_size_notices'


def format_size(size):
    """``(h, w)`` as ``'HxW'``, the order of the tools' ``--size H W`` flags."""
    return f'{size[0]}x{size[1]}'


def lcm(*factors):
    return math.lcm(*(int(f) for f in factors))


class SizeRule:
    """Heights and widths multiples of ``multiple`` and at least ``minimum``.

    Args:
        multiple: what heights and widths must be multiples of.
        requirement: who needs it, in words, for the messages (``'CARModel x4 (multiples of 8 and of the scale)'``).
        minimum: the smallest size, ``(h, w)`` or one side, that ``pad`` accepts (default: one multiple);
            ``crop`` and ``refuse`` need one multiple at least.
        policy: the policy of :meth:`problem`, :meth:`notice` and :meth:`fit` when they are not given one.
        can_pad: whether ``pad`` is possible (a model's rule: whether the model pads).
        flag: the command-line flag that sets the policy (``--size-policy``), named in messages; None: the
            ``size_policy`` option of a dataset section.
    """

    def __init__(self, multiple, requirement, minimum=None, policy='crop', can_pad=True, flag=None):
        if policy not in SIZE_POLICIES:
            raise ValueError(f'size policy {policy!r} is not one of {SIZE_POLICIES}')
        self.multiple, self.requirement, self.policy, self.can_pad, self.flag = int(multiple), requirement, policy, \
            can_pad, flag
        minimum = self.multiple if minimum is None else minimum
        self.minimum = (minimum, minimum) if isinstance(minimum, int) else tuple(minimum)
        self.extra = []  # (minimum (h, w) of what is scored, why): from the metrics

    def smallest(self, policy=None):
        """The smallest (h, w) an image may have under ``policy``."""
        if (policy or self.policy) == 'pad':
            return self.minimum
        return tuple(max(m, self.multiple) for m in self.minimum)

    def fitted(self, size, policy=None):
        """The size the network works on: cropped (or, ``pad``, padded) at the bottom/right to the multiple."""
        if (policy or self.policy) == 'pad':
            return tuple(max(s + (-s) % self.multiple, m) for s, m in zip(size, self.minimum))
        return tuple(s - s % self.multiple for s in size)

    def problem(self, size, policy=None):
        """Why an image of ``size`` = (h, w) cannot be used, or None."""
        policy = policy or self.policy
        if policy == 'pad' and not self.can_pad:
            return f'size_policy: pad is not supported by {self.requirement}; use crop or refuse'
        least = self.smallest(policy)
        if size[0] < least[0] or size[1] < least[1]:
            return f'{format_size(size)} (HxW) is smaller than the minimum {format_size(least)} of {self.requirement}'
        cropped = self.fitted(size, 'crop')
        if policy == 'refuse' and cropped != tuple(size):
            needs = f'{format_size(size)} (HxW) is not a multiple of {self.multiple}, which {self.requirement} needs'
            if self.flag:
                return f'{needs}; crop it (to {format_size(cropped)}) or pad it, or pass {self.flag} crop or pad'
            return (f'{needs} (size_policy: refuse); crop it to {format_size(cropped)} or set size_policy: crop in the '
                    'dataset section')
        scored = tuple(size) if policy == 'pad' else cropped  # pad: results cropped back
        for minimum, why in self.extra:
            if scored[0] < minimum[0] or scored[1] < minimum[1]:
                shown = f'{format_size(size)} (HxW)' + (f', {format_size(scored)} after the crop to multiples '
                                                        f'of {self.multiple},' if scored != tuple(size) else '')
                return f'{shown} is smaller than the {format_size(minimum)} that {why} needs'
        return None

    def notice(self, size, policy=None):
        """How an image of ``size`` is changed before the network sees it (None when it is not)."""
        policy = policy or self.policy
        fitted = self.fitted(size, policy)
        if fitted == tuple(size) or policy == 'refuse':
            return None
        if policy == 'pad':
            return f'{format_size(size)} padded to {format_size(fitted)}{", outputs cropped back" if self.flag else ""}'
        return f'{format_size(size)} cropped to {format_size(fitted)}'

    def describe(self, policy=None):
        """What happens to the images :meth:`notice` lists, for a heading."""
        policy = policy or self.policy
        verb = {'refuse': 'refused as not', 'crop': 'cropped at the bottom/right to',
                'pad': 'padded at the bottom/right to'}[policy]
        text = f'{verb} multiples of {self.multiple} for {self.requirement}'
        if self.flag:
            return f'{text} ({self.flag} {policy})'
        return text + (', results cropped back (size_policy: pad)' if policy == 'pad' else
                       ' (size_policy: crop; refuse stops instead)')

    def fit(self, x, policy=None):
        """``x`` (N, C, H, W) at the size the network accepts (``refuse``: :meth:`problem` let only multiples by)."""
        from basicsr_lmar.ops.geometry import crop_to_multiple
        from basicsr_lmar.ops.padding import pad_to_multiple

        policy = policy or self.policy
        if policy == 'pad':
            return pad_to_multiple(x, self.multiple, max(self.minimum))[0]
        return crop_to_multiple(x, self.multiple) if policy == 'crop' else x

    def restore(self, y, size, policy=None):
        """An output on the grid of the input cropped back to the input's ``size`` (``pad`` policy)."""
        return y[..., :size[0], :size[1]] if (policy or self.policy) == 'pad' else y


class WorkingSizeRule(SizeRule):
    """LMAR enhances an image at working sizes smaller than itself; each must be at least
    :data:`MIN_WORKING_SIDE` per side. ``working_sizes(image size)`` gives them; ``fix(image size)`` says, in
    words, what would make them large enough (``'--scale 12.8 or less'``)."""

    def __init__(self, working_sizes, requirement, fix, flag=None):
        super().__init__(1, requirement, flag=flag)
        self.working_sizes, self.fix = working_sizes, fix

    def problem(self, size, policy=None):
        side, of = MIN_WORKING_SIDE, f' of {self.requirement}' if self.requirement else ''
        if min(size) < side:
            return (f'{format_size(size)} (HxW) is smaller than the smallest working size {side}x{side}{of}; LMAR '
                    'only downscales')
        small = [s for s in self.working_sizes(size) if min(s) < side]
        if small:
            return (f'{format_size(size)} (HxW) would be enhanced at {format_size(small[0])}, below the smallest '
                    f'working size {side}x{side}{of}; use {self.fix(size)}')
        return super().problem(size, policy)


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
        if best is None or side > best[0][0]:
            what = f"val.metrics.{name} ({kind}, crop_border {border}" + (
                f', its {SSIM_WINDOW}x{SSIM_WINDOW} window)' if inner > 1 else ')')
            best = ((side, side), what)
    return best


def check_dataset_images(rule, dataset, dataset_opt, section, metric=None):
    """Checks a built dataset (its ``image_sizes``, or its training crop) against a model's ``rule`` under the
    section's ``size_policy``; returns the notice line for the run's log (None when no image changes).

    A training crop (``gt_size``, ``train_size``) must meet the rule itself; whole training images need the
    rule's multiple and minimum (LMAR's working sizes are validation's); validation images also need what
    the metrics score (``metric``: :func:`metric_minimum`)."""
    policy, training = dataset_opt.get('size_policy', 'crop'), dataset_opt['phase'] == 'train'
    crop = _training_crop(dataset, dataset_opt) if training else None
    if crop is not None:
        key, (height, width) = crop
        smallest, multiple = max(rule.smallest('crop')), rule.multiple
        if min(height, width) < smallest or height % multiple or width % multiple:
            fixed = [max(s - s % multiple, smallest) for s in (height, width)]
            raise OptionError(f'[{section}] {key} {dataset_opt.get(key)} (the training crop) must be a multiple of '
                              f'{multiple} and at least {smallest} for {rule.requirement}; use {key}: '
                              f'{fixed[0] if key == "gt_size" else fixed}.')
        return None
    if training:
        rule = SizeRule(rule.multiple, rule.requirement, rule.minimum, can_pad=rule.can_pad)
    elif metric is not None:
        rule = copy.copy(rule)
        rule.extra = list(rule.extra) + [metric]
    bad, changed = [], []
    for path, size in getattr(dataset, 'image_sizes', ()):
        problem = rule.problem(size, policy)
        if problem:
            bad.append((path, problem))
        elif rule.notice(size, policy):
            changed.append(f'{osp.basename(path)} {rule.notice(size, policy)}')
    if bad:
        more = f'; and {len(bad) - 1} more: ' + ', '.join(osp.basename(b[0]) for b in bad[1:9]) if bad[1:] else ''
        raise OptionError(f'[{section}] {len(bad)} image(s) the model cannot use: {bad[0][0]}: {bad[0][1]}{more}. '
                          'Remove, replace or resize them.')
    if changed:
        return (f'{section}: {len(changed)} image(s) {rule.describe(policy)}: ' + ', '.join(changed[:8]) +
                (f' and {len(changed) - 8} more' if len(changed) > 8 else ''))
    return None


def _training_crop(dataset, dataset_opt):
    """``(option key, (h, w))`` of the crop (or resize) a training set gives the model, None for whole images."""
    gt_size = dataset_opt.get('gt_size')
    if isinstance(gt_size, int) and not isinstance(gt_size, bool):
        return 'gt_size', (gt_size, gt_size)
    if getattr(dataset, 'train_transform', 'none') != 'none' and getattr(dataset, 'train_size', None):
        return 'train_size', tuple(dataset.train_size)
    return None
