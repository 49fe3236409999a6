"""Option schemas stop bad YAML before anything is built, naming section, key, allowed keys and value."""
import pytest
import torch.nn as nn
import yaml

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY
from basicsr_lmar.options import Option, OptionError, OptionSchema, closest_first, configurable, validate_registered


@configurable(scale=Option(choices=(2, 4)), width=Option(min=1), lr=Option(min=0.0, exclusive_min=True),
              mode=Option(choices=('a', 'b')))
class _TinyNet(nn.Module):

    def __init__(self, scale=4, width=16, lr=1e-3, mode='a', use_bias=True, sizes=(1, 2), extra=None):
        super().__init__()
        self.kwargs = dict(scale=scale, width=width, lr=lr, mode=mode, use_bias=use_bias, sizes=sizes, extra=extra)


def test_defaults_come_from_signature_and_are_a_yacs_node():
    from yacs.config import CfgNode
    defaults = _TinyNet.option_schema.defaults()
    assert isinstance(defaults, CfgNode)
    assert defaults.scale == 4 and defaults.width == 16 and defaults.mode == 'a' and defaults.use_bias is True


def test_valid_construction_passes_values_through():
    net = _TinyNet(scale=2, width=3, lr=1, sizes=[3, 4])  # an int for a float option is fine (YAML `1`)
    assert net.kwargs['scale'] == 2 and net.kwargs['lr'] == 1


def test_unknown_key_names_key_value_and_closest_allowed_first():
    with pytest.raises(OptionError) as err:
        _TinyNet(widht=8)
    message = str(err.value)
    assert "'widht'" in message and '8' in message and '_TinyNet' in message
    allowed = message.split('closest first: ')[1]
    assert allowed.startswith('width'), message


@pytest.mark.parametrize('kwargs, expected', [
    ({'scale': 3}, 'one of [2, 4]'),
    ({'width': 0}, '>= 1'),
    ({'width': 2.5}, 'type int'),
    ({'width': True}, 'type int'),  # YAML `true` is not a number
    ({'lr': 0.0}, '> 0.0'),
    ({'mode': 'c'}, "one of ['a', 'b']"),
    ({'use_bias': 'yes'}, 'type bool'),
    ({'sizes': 3}, 'type list or tuple'),
    ({'scale': None}, 'not ~/None'),
])
def test_wrong_type_or_range_names_the_key_and_received_value(kwargs, expected):
    with pytest.raises(OptionError) as err:
        _TinyNet(**kwargs)
    key, value = next(iter(kwargs.items()))
    assert f"'{key}'" in str(err.value) and expected in str(err.value) and repr(value) in str(err.value)


def test_none_default_accepts_anything():
    assert _TinyNet(extra={'a': 1}).kwargs['extra'] == {'a': 1}


def test_registered_section_validation_names_the_yaml_section():
    ARCH_REGISTRY._obj_map.setdefault('_TinyNet', _TinyNet)
    try:
        with pytest.raises(OptionError, match=r'\[network_g\].*unknown option .scael.'):
            validate_registered({'type': '_TinyNet', 'scael': 2}, 'network_g', ARCH_REGISTRY)
        merged = validate_registered({'type': '_TinyNet', 'scale': 2}, 'network_g', ARCH_REGISTRY)
        assert merged.scale == 2 and merged.width == 16
        with pytest.raises(OptionError, match=r"\[network_g\] type '_TinyNett' is not registered.*_TinyNet"):
            validate_registered({'type': '_TinyNett'}, 'network_g', ARCH_REGISTRY)
    finally:
        ARCH_REGISTRY._obj_map.pop('_TinyNet', None)


def test_nested_schema_and_required_keys():
    schema = OptionSchema('Model', {
        'optim_g': OptionSchema('optimizer', {'type': Option('Adam', choices=('Adam', 'AdamW')), 'lr': Option(min=0.0)}),
        'total_iter': Option(type=int, min=1),
    })
    with pytest.raises(OptionError, match=r"\[train.optim_g\].*'type'.*one of \['Adam', 'AdamW'\].*'SGD'"):
        schema.validate({'optim_g': {'type': 'SGD', 'lr': 1e-3}, 'total_iter': 5}, 'train')
    with pytest.raises(OptionError, match=r"\[train\].*missing required option 'total_iter'"):
        schema.validate({'optim_g': {'lr': 1e-3}}, 'train')
    with pytest.raises(OptionError, match=r"\[train.optim_g\].*missing required option 'lr'"):
        schema.validate({'optim_g': {}, 'total_iter': 1}, 'train')


def test_closest_first_orders_by_similarity():
    assert closest_first('lerning_rate', ['beta', 'learning_rate', 'lr'])[0] == 'learning_rate'


def test_dataset_yaml_error_names_datasets_section(tmp_path):
    opt = yaml.safe_load('{name: photos, phase: train, type: SkimagePhotoDataset, gt_size: 32, num_smaples: 4}')
    with pytest.raises(OptionError) as err:
        DATASET_REGISTRY.get('SkimagePhotoDataset')(opt)
    assert '[datasets.train (photos)]' in str(err.value)
    assert str(err.value).split('closest first: ')[1].startswith('num_samples')


def test_validate_merges_strictly_over_the_defaults_and_freezes():
    from yacs.config import CfgNode
    schema = OptionSchema('Model', {
        'optim_g': Option({'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999]}, type=dict),
        'tile': OptionSchema('tile', {'size': Option(64, min=8), 'overlap': Option(8, min=0)}),
        'gamma': Option(0.5),
        'total_iter': Option(type=int, min=1),
    }, passthrough=('phase', ))
    merged = schema.validate({'optim_g': {'type': 'SGD', 'lr': 0.1}, 'tile': {'size': 32}, 'gamma': 1,
                              'total_iter': 4, 'phase': 'train'}, 'train')
    assert isinstance(merged, CfgNode) and merged.is_frozen()
    assert dict(merged.optim_g) == {'type': 'SGD', 'lr': 0.1}  # a section replaces its default whole: no Adam betas
    assert dict(merged.tile) == {'size': 32, 'overlap': 8}  # a nested schema merges key by key
    assert merged.gamma == 1 and merged.total_iter == 4 and merged.phase == 'train'
    assert schema.validate({'total_iter': 1}).optim_g.betas == [0.9, 0.999]  # the defaults
    with pytest.raises(AttributeError, match='immutable'):
        merged.gamma = 2


def test_registered_and_nested_sections_are_validated_where_they_are_declared():
    ARCH_REGISTRY._obj_map.setdefault('_TinyNet', _TinyNet)
    try:
        schema = OptionSchema('Model', {
            'net_opt': Option(None, type=dict, registry=ARCH_REGISTRY),
            'tile': Option(None, schema=OptionSchema('tile', {'size': Option(type=int, min=8)})),
        })
        with pytest.raises(OptionError, match=r"\[train.net_opt\] \(_TinyNet\) unknown option 'widht'"):
            schema.validate({'net_opt': {'type': '_TinyNet', 'widht': 3}}, 'train')
        with pytest.raises(OptionError, match=r"\[train.net_opt\] type '_TinyNett' is not registered"):
            schema.validate({'net_opt': {'type': '_TinyNett'}}, 'train')
        with pytest.raises(OptionError, match=r"\[train.tile\] \(tile\) option 'size' must be a value >= 8; got 4"):
            schema.validate({'tile': {'size': 4}}, 'train')
        merged = schema.validate({'tile': {'size': 16}}, 'train')
        assert merged.tile.size == 16 and merged.net_opt is None
        assert schema.validate({}, 'train').tile is None  # optional: absent unless given
    finally:
        ARCH_REGISTRY._obj_map.pop('_TinyNet', None)


def test_strings_stay_strings_through_the_merge():
    """yacs would literal_eval strings when merging ('{}' -> {}, '12' -> 12); the values come from YAML."""
    schema = OptionSchema('Dataset', {'filename_tmpl': Option('{}', type=str), 'name': Option('a', type=str)})
    merged = schema.validate({'filename_tmpl': '{}', 'name': '12'})
    assert merged.filename_tmpl == '{}' and merged.name == '12'
