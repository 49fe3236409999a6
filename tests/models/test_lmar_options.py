"""The shipped LMAR option files parse and pass every schema they will meet."""
import pathlib

import pytest
import yaml
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY

import basicsr_lmar  # noqa: F401
from basicsr_lmar.models.lmar_model import LMARModel, working_sizes
from basicsr_lmar.ops.resize import KERNELS
from basicsr_lmar.options import validate_registered

OPTIONS = pathlib.Path(__file__).resolve().parents[2] / 'options'
TRAIN_SCHEMA, VAL_SCHEMA = LMARModel.option_schemas['train'], LMARModel.option_schemas['val']
FILES = sorted(p.name for p in OPTIONS.glob('*lmar_*.yml') if 'enhancer' not in p.name)


def test_all_six_files_exist():
    assert {'lmar_uhdlol4k.yml', 'lmar_4kil.yml', 'lmar_restormer_4kil.yml', 'test_lmar_uhdlol4k.yml',
            'test_lmar_4kil.yml', 'test_lmar_restormer_4kil.yml'} <= set(FILES)


@pytest.mark.parametrize('name', FILES)
def test_option_file_validates(name):
    with open(OPTIONS / name) as handle:
        opt = yaml.load(handle, Loader=ordered_yaml()[0])
    assert opt['model_type'] == 'LMARModel'
    validate_registered(opt['network_g'], 'network_g', ARCH_REGISTRY)
    validate_registered(opt['network_enhancer'], 'network_enhancer', ARCH_REGISTRY, extra_keys=('feature_layer', ))
    enhancer = ARCH_REGISTRY.get(opt['network_enhancer']['type'])
    assert getattr(enhancer, 'BOTTLENECK_LAYER', None) or 'feature_layer' in opt['network_enhancer']
    val = VAL_SCHEMA.validate(opt['val'], 'val')
    assert len(working_sizes((2160, 3840), val.target_sizes, val.reference_size)) == 7
    for dataset in opt['datasets'].values():
        assert dataset['type'] in DATASET_REGISTRY
    if 'train' in opt:
        train = TRAIN_SCHEMA.validate(opt['train'], 'train')
        validate_registered(train['rc_opt'], 'train.rc_opt', LOSS_REGISTRY)
        assert train.fa_opt is not None and train.gan_opt is not None  # the paper's losses
        for key in ('fa_opt', 'gan_opt', 'edge_opt'):
            if train[key] is not None:
                validate_registered(train[key], f'train.{key}', LOSS_REGISTRY)
        if train.gan_opt is not None:
            validate_registered(opt['network_d'], 'network_d', ARCH_REGISTRY)
        if opt['network_enhancer'].get('feature_layer'):
            enhancer_opt = {k: v for k, v in opt['network_enhancer'].items() if k != 'feature_layer'}
            network = ARCH_REGISTRY.get(enhancer_opt.pop('type'))(**enhancer_opt)
            assert opt['network_enhancer']['feature_layer'] in dict(network.named_modules())
        for kernel in train.resizers or ():
            assert kernel in KERNELS
        if not name.startswith('demo'):  # the paper's recipe (the demo trains shorter, with a higher lr)
            assert train.optim_g['lr'] == 4e-4 and train.optim_d['lr'] == 2e-4
        assert max(train.scheduler['milestones']) < train.total_iter
