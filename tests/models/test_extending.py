"""docs/extending.md runs as written: its code blocks are executed here and the classes they define are
trained, validated and refused bad options the way the page says."""
import copy
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils.registry import MODEL_REGISTRY
from skimage import data
from torch.utils.data import DataLoader

from basicsr_lmar import preflight
from basicsr_lmar.options import OptionError
from tests.conftest import REPO_ROOT

PAGE = (REPO_ROOT / 'docs' / 'extending.md').read_text()
BLOCKS = dict(re.findall(r'<!-- tested: (\w+) -->\n```python\n(.*?)```', PAGE, re.S))
DOC = types.ModuleType('extending_doc')  # the page's classes, as a user's module would hold them
for _name in ('archs', 'subclass', 'rescaler'):
    exec(compile(BLOCKS[_name], f'docs/extending.md ({_name})', 'exec'), DOC.__dict__)
CAR_TINY = REPO_ROOT / 'tests' / 'data_files' / 'train_car_tiny.yml'


def _hr_batch(size=32):
    photos = [data.astronaut()[100:100 + size, 200:200 + size], data.coffee()[100:100 + size, 200:200 + size]]
    return {'gt': torch.from_numpy(np.stack(photos).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()}


class _Photos(torch.utils.data.Dataset):
    opt = {'name': 'photos'}

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return {'gt': _hr_batch()['gt'][index], 'gt_path': f'photo{index}.png'}


def _my_car_options(tmp_path, **train):
    opt = yaml.safe_load(CAR_TINY.read_text())
    opt.update(model_type='MyCARModel', name=f'my_car_{os.getpid()}')
    opt['train'].update(train)
    return opt


def _runtime(opt, tmp_path):
    opt = copy.deepcopy(opt)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'),
                       visualization=str(tmp_path / 'visualization'))
    return opt


def test_every_block_of_the_page_is_tested():
    assert sorted(BLOCKS) == ['archs', 'entry', 'rescaler', 'subclass']


def test_plugin_archs_in_a_users_basicsr_model(tmp_path):
    torch.manual_seed(0)
    opt = {'name': 'car_degraded', 'model_type': 'CARDegradedSRModel', 'num_gpu': 0, 'dist': False, 'rank': 0,
           'world_size': 1, 'is_train': True,
           'network_g': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4},
           'network_car': {'type': 'CARResamplerNet', 'scale': 4, 'num_feat': 8, 'body_feat': 8, 'top_feat': 16,
                           'num_block': 1},
           'path': {}, 'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'pixel_opt': {'type': 'L1Loss'},
                                 'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}}}
    model = build_model(opt)
    assert type(model) is DOC.CARDegradedSRModel and not hasattr(model, 'options')  # basicsr's, not the plugin's
    losses = []
    for it in range(1, 9):
        model.feed_data(_hr_batch())
        model.optimize_parameters(it)
        losses.append(model.log_dict['l_pix'])
    assert model.lq.shape == (2, 3, 8, 8) and torch.equal(model.lq * 255, (model.lq * 255).round())
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    assert not any(p.requires_grad for p in model.net_car.parameters())


def test_a_subclass_declares_its_key_in_one_line_and_trains_with_it(tmp_path):
    opt = _my_car_options(tmp_path, my_weight=0.5)
    checked = preflight.check_options(copy.deepcopy(opt), True)  # the plugin's checks apply to the subclass
    assert checked
    torch.manual_seed(0)
    model = build_model(_runtime(opt, tmp_path))
    assert type(model) is DOC.MyCARModel and model.options.train.my_weight == 0.5
    assert model.options.train.optim_sr is None and model.options.train.loss_crop_border == 0  # CAR's keys too
    for it in range(1, 4):
        model.feed_data(_hr_batch())
        model.optimize_parameters(it)
    assert {'l_pix', 'l_offset', 'l_tv', 'l_my', 'l_total'} <= set(model.log_dict)
    parts = [value for key, value in model.log_dict.items() if key.startswith('l_') and key != 'l_total']
    assert model.log_dict['l_total'] == pytest.approx(sum(parts), rel=1e-5)
    assert DOC.MyCARModel.option_schemas['train'].options['my_weight'].doc == 'weight of the LR-to-bicubic L1 loss'
    assert 'my_weight' not in MODEL_REGISTRY.get('CARModel').option_schemas['train'].options  # the base is unchanged


def test_a_misspelt_or_wrong_key_of_the_subclass_is_named(tmp_path):
    with pytest.raises(OptionError) as info:
        preflight.check_options(_my_car_options(tmp_path, my_wieght=0.5), True)
    message = str(info.value)
    assert message.startswith("[train] (MyCARModel) unknown option 'my_wieght' (value 0.5). Allowed keys, closest "
                              'first: my_weight, ')
    with pytest.raises(OptionError, match=r"\[train\] \(MyCARModel\) option 'my_weight' \(weight of the LR-to-bicubic "
                                          r"L1 loss\) must be a value >= 0; got -1"):
        build_model(_runtime(_my_car_options(tmp_path, my_weight=-1), tmp_path))


def test_the_users_mistake_ends_the_entry_with_one_line_and_no_folder(tmp_path, monkeypatch, capsys):
    from basicsr_lmar import train
    path = tmp_path / 'my_car.yml'
    path.write_text(yaml.safe_dump(_my_car_options(tmp_path, my_wieght=0.5)))
    monkeypatch.setattr(sys, 'argv', ['my_project/train.py', '-opt', str(path)])
    with pytest.raises(SystemExit) as info:
        train.main(str(tmp_path))
    err = capsys.readouterr().err
    assert info.value.code == 2 and 'Traceback' not in err and err.count('\n') == 1
    assert err.startswith("train.py: error: [train] (MyCARModel) unknown option 'my_wieght'") and 'my_weight' in err
    assert sorted(os.listdir(tmp_path)) == ['my_car.yml']  # no experiments/, no tb_logger/


@pytest.mark.slow
def test_the_pages_entry_trains_the_subclass_and_refuses_a_misspelt_key(tmp_path):
    """The user's project as the page lays it out: my_project/models.py (the subclass) and my_project/train.py
    (the page's entry), run as a script in a fresh interpreter."""
    project = tmp_path / 'my_project'
    project.mkdir()
    (project / '__init__.py').write_text('')
    (project / 'models.py').write_text(BLOCKS['subclass'])
    (project / 'train.py').write_text(BLOCKS['entry'])
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT)]))
    for key, code in (('my_wieght', 2), ('my_weight', 0)):
        opt = _my_car_options(tmp_path, **{key: 0.5})
        opt['name'] = f'debug_my_car_{key}'
        (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
        result = subprocess.run([sys.executable, str(project / 'train.py'), '-opt', str(tmp_path / 'opt.yml')],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == code, result.stderr[-3000:]
        if code:
            assert result.stderr.strip().splitlines()[-1].startswith(
                "train.py: error: [train] (MyCARModel) unknown option 'my_wieght'")
            assert 'Traceback' not in result.stderr and not (tmp_path / 'experiments').exists()
    output = result.stdout + result.stderr
    assert 'l_my' in output and (tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth').is_file()


def test_a_registered_rescaler_is_refined_by_hcd(tmp_path):
    opt = {'name': 'hcd_box', 'model_type': 'HCDModel', 'num_gpu': 0, 'dist': False, 'rank': 0, 'is_train': False,
           'path': {'visualization': str(tmp_path / 'vis')},
           'val': {'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2}}}}
    opt.update(yaml.safe_load(re.search(r'```yaml\n(model_type: HCDModel.*?)```', PAGE, re.S).group(1)))
    model = build_model(opt)
    assert isinstance(model.rescaler, DOC.BoxRescaler) and model.scale == 2
    model.validation(DataLoader(_Photos(), batch_size=1), current_iter=0, tb_logger=None, save_img=False)
    assert model.metric_results['psnr_gain_hcd5'] > 0  # HCD improves on the plain box/bilinear rescaler
    with pytest.raises(OptionError, match=r"\[rescaler\].*unknown option 'scael'.*closest first: scale"):
        build_model(dict(opt, rescaler={'type': 'BoxRescaler', 'scael': 2}))
    with pytest.raises(OptionError, match=r'\[rescaler\] scale 3 differs from the top-level \[scale\] 2'):
        build_model(dict(opt, rescaler={'type': 'BoxRescaler', 'scale': 3}))
