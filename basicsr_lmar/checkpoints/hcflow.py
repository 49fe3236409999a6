"""Converts the HCFlow authors' rescaling checkpoint (``Rescaling_DF2K_X4_HCFlow.pth``) to :class:`HCFlowNet`.

The authors' net (``HCFlowNet_Rescaling``) holds a ``flow`` whose ``layers`` list runs, per level, a Haar
squeeze, the flow steps and a (tensor-free) split; each level's conditional flow is ``flow.level<L>_condFlow``.
Key by key (``module.`` prefixes, from DataParallel, are dropped):

==============================================================  ==============================================
authors'                                                        ours
==============================================================  ==============================================
``flow.layers.J.haar_weights`` (J starts level L)               ``levels.L.haar.weight`` (checked: +-1 filters)
``flow.layers.J.actnorm.{bias,logs}`` (K-th step of level L)    ``levels.L.steps.K.actnorm.*``
``flow.layers.J.affine.f.convI.*``                              ``levels.L.steps.K.coupling.net.convs.(I-1).*``
``flow.levelL_condFlow.conv_first.*``                           ``levels.L.prior.conv_first.*``
``...RRDB_trunk0.J.RDBr.convI.*``                               ``levels.L.prior.rrdbs.J.blocks.(r-1).convs.(I-1).*``
``...RRDB_trunk1.J...`` (after the trunk0 blocks)               ``levels.L.prior.rrdbs.(n0 + J)...``
``...trunk_conv1.*``                                            ``levels.L.prior.trunk_conv.*``
``...additional_flow_steps.K.actnorm.*``                        ``levels.L.prior.steps.K.actnorm.*``
``...additional_flow_steps.K.permute.weight``                   ``levels.L.prior.steps.K.invconv.weight``
``...additional_flow_steps.K.affine.f.conv{1,2,3}.*``           ``levels.L.prior.steps.K.coupling.net.conv{1,2,3}.*``
                                                                (``conv{1,2}.weight`` -> ``conv{1,2}.conv.weight``)
``...f.{weight,bias,logs}``                                     ``levels.L.prior.head.*``
==============================================================  ==============================================

The result is BasicSR's ``{'params': state_dict}`` once saved; :func:`convert_official_hcflow_state_dict`
also returns the ``network_g`` options inferred from the tensors.
"""
import re
from collections import OrderedDict

from basicsr_lmar.checkpoints.irn import check_haar_filters
from basicsr_lmar.checkpoints.state_dicts import strip_module_prefix, unwrap_checkpoint

_LAYER = re.compile(r'^flow\.layers\.(\d+)\.(.+)$')
_COND = re.compile(r'^flow\.level(\d+)_condFlow\.(.+)$')
_RRDB = re.compile(r'^RRDB_trunk([01])\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)$')
_STEP = re.compile(r'^additional_flow_steps\.(\d+)\.(.+)$')
_MAIN_STEP = re.compile(r'^(actnorm\.(?:bias|logs))$|^affine\.f\.conv([1-5])\.(weight|bias)$')
_COND_STEP = {
    'actnorm.bias': 'actnorm.bias', 'actnorm.logs': 'actnorm.logs', 'permute.weight': 'invconv.weight',
    'affine.f.conv1.weight': 'coupling.net.conv1.conv.weight',
    'affine.f.conv1.actnorm.bias': 'coupling.net.conv1.actnorm.bias',
    'affine.f.conv1.actnorm.logs': 'coupling.net.conv1.actnorm.logs',
    'affine.f.conv2.weight': 'coupling.net.conv2.conv.weight',
    'affine.f.conv2.actnorm.bias': 'coupling.net.conv2.actnorm.bias',
    'affine.f.conv2.actnorm.logs': 'coupling.net.conv2.actnorm.logs',
    'affine.f.conv3.weight': 'coupling.net.conv3.weight', 'affine.f.conv3.bias': 'coupling.net.conv3.bias',
    'affine.f.conv3.logs': 'coupling.net.conv3.logs',
}
_COND_PLAIN = {'conv_first.weight', 'conv_first.bias', 'trunk_conv1.weight', 'trunk_conv1.bias', 'f.weight', 'f.bias',
               'f.logs'}


def _fail(key, why):
    raise KeyError(f'convert_official_hcflow: {why} ({key!r}); expected the keys of the authors\' '
                   'HCFlowNet_Rescaling (flow.layers.N..., flow.levelL_condFlow...). Is this an HCFlow rescaling '
                   'checkpoint? (HCFlow SR checkpoints are a different network.)')


def convert_official_hcflow_state_dict(checkpoint):
    """Returns ``(state_dict, network_options)`` for :class:`HCFlowNet` from the authors' checkpoint."""
    layers, conds = {}, {}
    for key, tensor in strip_module_prefix(unwrap_checkpoint(checkpoint)).items():
        match = _LAYER.match(key)
        if match:
            layers.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
            continue
        match = _COND.match(key)
        if match:
            conds.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
            continue
        _fail(key, 'unexpected key')
    # the main flow: a Haar layer opens each level; the flow steps follow it
    level, step, flow_steps, converted = -1, 0, [], OrderedDict()
    haar_channels = []
    for index in sorted(layers):
        entries = layers[index]
        if 'haar_weights' in entries:
            if len(entries) != 1:
                _fail(f'flow.layers.{index}', 'a Haar layer with other tensors')
            level, step = level + 1, 0
            flow_steps.append(0)
            weights = entries['haar_weights']
            channels = weights.shape[0] // 4
            check_haar_filters(weights, channels, f'convert_official_hcflow: flow.layers.{index}.haar_weights')
            haar_channels.append(channels)
            converted[f'levels.{level}.haar.weight'] = weights
            continue
        if level < 0:
            _fail(f'flow.layers.{index}', 'a flow step before the first Haar layer')
        for name, tensor in entries.items():
            match = _MAIN_STEP.match(name)
            if not match:
                _fail(f'flow.layers.{index}.{name}', 'unexpected flow-step key')
            target = name if match.group(1) else f'coupling.net.convs.{int(match.group(2)) - 1}.{match.group(3)}'
            converted[f'levels.{level}.steps.{step}.{target}'] = tensor
        flow_steps[level] += 1
        step += 1
    if not flow_steps:
        _fail('flow.layers', 'no Haar layer')
    if sorted(conds) != list(range(len(flow_steps))):
        raise KeyError(f'convert_official_hcflow: conditional flows of levels {sorted(conds)}, expected one per Haar '
                       f'level 0..{len(flow_steps) - 1}')
    prior_steps, rrdb_counts = [], set()
    for level in sorted(conds):
        entries = conds[level]
        trunk0 = {int(m.group(2)) for m in map(_RRDB.match, entries) if m and m.group(1) == '0'}
        steps = set()
        for name, tensor in entries.items():
            prefix = f'levels.{level}.prior.'
            match = _RRDB.match(name)
            if match:
                trunk, block, rdb, conv, kind = match.groups()
                block = int(block) + (len(trunk0) if trunk == '1' else 0)
                converted[f'{prefix}rrdbs.{block}.blocks.{int(rdb) - 1}.convs.{int(conv) - 1}.{kind}'] = tensor
                continue
            match = _STEP.match(name)
            if match and match.group(2) in _COND_STEP:
                steps.add(int(match.group(1)))
                converted[f'{prefix}steps.{match.group(1)}.{_COND_STEP[match.group(2)]}'] = tensor
                continue
            if name in _COND_PLAIN:
                target = name.replace('trunk_conv1', 'trunk_conv').replace('f.', 'head.', 1) if name.startswith(
                    ('trunk_conv1', 'f.')) else name
                converted[prefix + target] = tensor
                continue
            _fail(f'flow.level{level}_condFlow.{name}', 'unexpected conditional-flow key')
        if steps != set(range(len(steps))):
            raise KeyError(f'convert_official_hcflow: level {level} conditional flow steps {sorted(steps)} '
                           'are not 0..N')
        prior_steps.append(len(steps))
        rrdb_counts.add(len({m.group(1, 2) for m in map(_RRDB.match, entries) if m}))
    if len(rrdb_counts) != 1:
        raise KeyError(f'convert_official_hcflow: the levels have different RRDB counts {sorted(rrdb_counts)}')
    first_step = next((k for k in converted if k.endswith('coupling.net.convs.0.weight')), None)
    options = {
        'in_channels': haar_channels[0],
        'scale': 2**len(flow_steps),
        'flow_steps': flow_steps,
        'prior_steps': prior_steps,
        'growth': converted[first_step].shape[0] if first_step else 32,
        'rrdb_nf': converted['levels.0.prior.conv_first.weight'].shape[0],
        'rrdb_gc': next((v.shape[0] for k, v in converted.items() if k.endswith('blocks.0.convs.0.weight')), 16),
        'rrdb_blocks': rrdb_counts.pop(),
        'hidden': next((v.shape[0] for k, v in converted.items() if k.endswith('net.conv1.conv.weight')), 64),
    }
    return converted, options
