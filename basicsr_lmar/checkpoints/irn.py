"""Converts the IRN authors' checkpoints (``IRN_x2.pth``, ``IRN_x4.pth``) to :class:`InvRescaleNet`.

The authors' state dict is a flat ``operations`` list, in the same order as our ``steps``:

- a Haar step ``operations.N.haar_weights`` (4C x 1 x 2 x 2, fixed +-1 filters): our Haar step has no
  tensors; the filters are checked and dropped;
- a coupling block ``operations.N.{F,G,H}.conv{1..5}.{weight,bias}``: F (rest -> LR-part update) is our
  ``lr_update``, G (LR part -> shift of the rest) ``rest_shift``, H (LR part -> log-scale) ``rest_log_scale``;
  ``convK`` is ``convs.(K-1)``.

Keys may carry a ``module.`` prefix (DataParallel). The result is BasicSR's ``{'params': state_dict}``.
"""
import re
from collections import OrderedDict

import torch

from basicsr_lmar.checkpoints.state_dicts import strip_module_prefix, unwrap_checkpoint

_SUBNETS = {'F': 'lr_update', 'G': 'rest_shift', 'H': 'rest_log_scale'}
_BLOCK_KEY = re.compile(r'^operations\.(\d+)\.([FGH])\.conv([1-5])\.(weight|bias)$')
_HAAR_KEY = re.compile(r'^operations\.(\d+)\.haar_weights$')


def haar_filters(channels, dtype=torch.float32):
    """The authors' fixed Haar filters for ``channels`` input channels: (4 * channels, 1, 2, 2)."""
    filters = torch.ones(4, 1, 2, 2, dtype=dtype)
    filters[1, 0, 0, 1] = filters[1, 0, 1, 1] = -1
    filters[2, 0, 1, 0] = filters[2, 0, 1, 1] = -1
    filters[3, 0, 1, 0] = filters[3, 0, 0, 1] = -1
    return filters.repeat(channels, 1, 1, 1)


def check_haar_filters(weights, channels, where):
    """A ``ValueError`` naming ``where`` unless ``weights`` are :func:`haar_filters` for ``channels`` channels."""
    expected = haar_filters(channels, weights.dtype)
    if weights.shape != expected.shape or not torch.equal(weights, expected):
        raise ValueError(f'{where} are not the Haar filters for {channels} channels')


def convert_official_irn_state_dict(checkpoint):
    """Returns ``(state_dict, network_options)`` for :class:`InvRescaleNet` from the authors' checkpoint.

    ``network_options`` holds ``in_channels``, ``scale``, ``block_num`` and ``growth`` inferred from the
    tensors, ready for the ``network_g`` YAML section.
    """
    converted = OrderedDict()
    haar_steps, block_steps = {}, set()
    for key, tensor in strip_module_prefix(unwrap_checkpoint(checkpoint)).items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, subnet, conv, kind = match.groups()
            converted[f'steps.{index}.{_SUBNETS[subnet]}.convs.{int(conv) - 1}.{kind}'] = tensor
            block_steps.add(int(index))
            continue
        match = _HAAR_KEY.match(key)
        if match:
            haar_steps[int(match.group(1))] = tensor
            continue
        raise KeyError(f'convert_official_irn: unexpected key {key!r}; expected operations.N.haar_weights or '
                       'operations.N.{F,G,H}.convK.{weight,bias} (is this an IRN checkpoint?)')
    if not haar_steps:
        raise KeyError('convert_official_irn: no operations.N.haar_weights key; not an IRN checkpoint')
    order = sorted(set(haar_steps) | block_steps)
    if order != list(range(len(order))) or order[0] not in haar_steps:
        raise KeyError(f'convert_official_irn: operation indices {order} are not 0..N starting with a Haar step')
    in_channels = haar_steps[0].shape[0] // 4
    channels = in_channels
    block_num = []
    for index in order:
        if index in haar_steps:
            check_haar_filters(haar_steps[index], channels, f'convert_official_irn: operations.{index}.haar_weights')
            channels *= 4
            block_num.append(0)
        else:
            block_num[-1] += 1
    growth = converted['steps.1.lr_update.convs.0.weight'].shape[0] if 'steps.1.lr_update.convs.0.weight' in converted \
        else 32
    options = {'in_channels': in_channels, 'scale': 2**len(block_num), 'block_num': block_num, 'growth': growth}
    return converted, options
