import pathlib

import pytest
import yaml
from basicsr.archs import build_network

import basicsr_lmar  # noqa: F401
from basicsr_lmar.data.uhd_paired_dataset import OPTION_SCHEMA

OPTIONS = pathlib.Path(__file__).resolve().parents[2] / 'options'
EXPECTED_PARAMETERS = {'cnn_i_uhdlol4k': 264_460, 'cnn_h_4kil': 295_756, 'restormer_4kil': 421_484}


@pytest.mark.parametrize('name', sorted(EXPECTED_PARAMETERS))
@pytest.mark.parametrize('phase', ['train', 'test'])
def test_option_files_build_the_paper_sized_network(name, phase):
    opt = yaml.safe_load((OPTIONS / f'{phase}_{name}.yml').read_text())
    net = build_network(dict(opt['network_g']))
    assert sum(p.numel() for p in net.parameters()) == EXPECTED_PARAMETERS[name]
    assert opt['model_type'] == 'UHDEnhancerModel' and opt['scale'] == 1
    for dataset in opt['datasets'].values():
        OPTION_SCHEMA.validate(dataset, 'datasets')
    if phase == 'train':
        train = opt['train']
        assert train['optim_g']['lr'] == 1e-3 and train['pixel_opt']['type'] == 'L1Loss'
        # StepLR every 20 of 100 epochs, x0.75: four equally spaced milestones at 1/5 of the run
        milestones = train['scheduler']['milestones']
        assert [m * 5 for m in milestones] == [k * train['total_iter'] for k in (1, 2, 3, 4)]
        assert train['scheduler']['gamma'] == 0.75
        assert opt['datasets']['train']['batch_size_per_gpu'] == 2
        assert opt['datasets']['train']['train_size'] == [1024, 1024]
