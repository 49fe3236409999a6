"""The preflight (basicsr_lmar/preflight.py): a table of user mistakes in option files and training/validation
data (numbers as strings, misspelt and missing keys, unknown registered names, wrong types and ranges, missing
or unusable images), each named before anything is built, through the plugin's entry (exit 2, one line, no
experiments/ folder) and through the stock ``python -m basicsr.train`` (the same line, last)."""
import copy
import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

import basicsr_lmar  # noqa: F401  (registration)
from basicsr_lmar import preflight
from basicsr_lmar.data.size_rules import NOTICES_KEY
from basicsr_lmar.errors import UserError
from basicsr_lmar.options import OptionError
from tests.conftest import REPO_ROOT

DATA_FILES = REPO_ROOT / 'tests' / 'data_files'


def tiny(name):
    return yaml.safe_load((DATA_FILES / f'train_{name}_tiny.yml').read_text())


def hr_folder(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    for index, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f'img{index}_{h}x{w}.png'), np.full((h, w, 3), 128, np.uint8))
    return str(folder)


def hr_val(folder, sizes, **extra):
    return {'name': 'hr_val', 'type': 'HROnlyDataset', 'dataroot_gt': hr_folder(folder, sizes), **extra}


def refused(opt, is_train=True):
    with pytest.raises(OptionError) as info:
        preflight.check_options(opt, is_train)
    return str(info.value)


def lmar_opt(folder):
    opt = tiny('lmar')
    checkpoint = folder / 'enhancer.pth'
    from basicsr.archs import build_network
    network = build_network({k: v for k, v in opt['network_enhancer'].items() if k != 'feature_layer'})
    torch.save({'params': network.state_dict()}, checkpoint)  # the preflight reads it and checks that it fits
    opt['path']['pretrain_network_enhancer'] = str(checkpoint)
    return opt


# ------------------------------------------------------------------------- the table's rows (in-process)
def case_options(tmp_path):
    """name -> (options, the message's expected text): the table's mistakes, one per case."""
    cases = {}

    opt = tiny('car')
    opt['train']['optim_g']['lr'] = '4e-4'  # what PyYAML makes of `lr: 4e-4`
    cases['lr_string'] = (opt, "[train.optim_g] lr is the string '4e-4', not a number: PyYAML reads an exponent "
                          'without a decimal point as text. Write `lr: !!float 4e-4` or `lr: 4.0e-4`.')
    opt = tiny('irn')
    opt['datasets']['train']['batch_size_per_gpu'] = '2'
    cases['batch_string'] = (opt, "[datasets.train] batch_size_per_gpu is the string '2', not a number: it is "
                             'quoted in the YAML. Write `batch_size_per_gpu: 2` without quotes.')
    opt = tiny('car')
    opt['train']['total_iters'] = opt['train'].pop('total_iter')
    cases['total_iters'] = (opt, "[train] total_iter is missing: the number of iterations of basicsr's training "
                            "loop. The file has 'total_iters': did you mean 'total_iter'?")
    opt = tiny('car')
    opt['datasets']['val']['type'] = 'SkimagePhotoDatset'
    cases['dataset_type'] = (opt, "[datasets.val] type 'SkimagePhotoDatset' is not a registered dataset. Closest: "
                             "SkimagePhotoDataset")
    opt = tiny('irn')
    opt['model_type'] = 'IRNModle'
    cases['model_type'] = (opt, "[model_type] 'IRNModle' is not a registered model. Closest: IRNModel")
    opt = tiny('car')
    opt['network_g']['type'] = 'CARResamplerNte'
    cases['arch_type'] = (opt, "[network_g] type 'CARResamplerNte' is not registered in arch. Closest: "
                          "CARResamplerNet")
    opt = tiny('car')
    opt['train']['pixel_opt']['type'] = 'L1Los'
    cases['loss_type'] = (opt, "[train.pixel_opt] type 'L1Los' is not registered in loss. Closest: L1Loss")
    opt = lmar_opt(tmp_path)
    del opt['network_enhancer']
    cases['missing_enhancer'] = (opt, '[network_enhancer] section is missing: LMARModel needs the pretrained '
                                 'enhancer the resampler feeds')
    opt = tiny('car')
    opt['datasets']['val'] = hr_val(tmp_path / 'car_val', [(16, 16), (5, 5)])
    cases['car_5x5'] = (opt, 'img1_5x5.png: 5x5 (HxW) is smaller than the minimum 8x8 of CARModel x4')
    opt = tiny('irn')
    opt['datasets']['val'] = hr_val(tmp_path / 'irn_val', [(32, 32), (5, 5)])
    opt['val']['metrics'] = {'ssim': {'type': 'calculate_ssim', 'crop_border': 2}}
    cases['irn_5x5'] = (opt, 'img1_5x5.png: 5x5 (HxW), 4x4 after the crop to multiples of 2, is smaller than the '
                        '15x15 that val.metrics.ssim (calculate_ssim, crop_border 2, its 11x11 window) needs')
    opt = tiny('car')
    opt['manual_seed'] = '2'
    cases['seed_string'] = (opt, "[manual_seed] is the string '2', not a number: it is quoted in the YAML. Write "
                            '`manual_seed: 2` without quotes.')
    return cases


def test_every_row_is_named_before_anything_is_built(tmp_path):
    for name, (opt, expected) in case_options(tmp_path).items():
        message = refused(opt)
        assert expected in message, (name, message)


@pytest.mark.parametrize('edit, expected', [
    (lambda o: o['train']['optim_g'].update(type='Adma'), "[train.optim_g] type 'Adma' is not a torch.optim "
     'optimizer. Closest: Adam'),
    (lambda o: o['train']['optim_g'].update(lr=-1.0), '[train.optim_g] lr must be positive; got -1.0.'),
    (lambda o: o['train']['scheduler'].update(type='MultiStepLr'), "[train.scheduler] type 'MultiStepLr' is not a "
     'scheduler basicsr builds. Closest: MultiStepLR'),
    (lambda o: o['datasets']['train'].update(num_worker_per_gpu=-1), '[datasets.train] num_worker_per_gpu must be '
     'at least 0; got -1.'),
    (lambda o: o['datasets']['train'].pop('batch_size_per_gpu'), '[datasets.train] batch_size_per_gpu is missing'),
    (lambda o: o.update(scale=0), '[scale] must be at least 1; got 0.'),
    (lambda o: o['train'].update(total_iter=2.5), '[train] total_iter must be a whole number; got 2.5 (float).'),
    (lambda o: o['logger'].pop('print_freq'), "[logger] print_freq is missing: basicsr's training loop reads it"),
    (lambda o: o.pop('num_gpu'), '[num_gpu] is missing'),
    pytest.param(lambda o: o.update(num_gpu=1), '[num_gpu] is 1 but torch sees no CUDA device: set num_gpu: 0',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device is present')),
    (lambda o: o['datasets']['train'].update(gt_size=36), '[datasets.train (skimage_train)] gt_size 36 (the training '
     'crop) must be a multiple of 8 and at least 8 for CARModel x4 (multiples of 8 and of the scale); use '
     'gt_size: 32.'),
    (lambda o: o['train'].update(offset_opt='1e-5'), "[train] offset_opt is the string '1e-5'"),
    (lambda o: o['train'].update(total_iter='1e5'), "[train] total_iter is the string '1e5', not a number: PyYAML "
     'reads an exponent without a decimal point as text. Write `total_iter: 100000`.'),
    (lambda o: o['datasets'].update(vall=o['datasets'].pop('val')), '[datasets.vall] is not a phase basicsr trains '
     'with: name it train, val or val_<n>.'),
    (lambda o: o['path'].update(pretrain_network_sr='nowhere/edsr.pth'), '[path] pretrain_network_sr: nowhere/edsr.pth '
     'does not exist; point it at the checkpoint (.pth) of network_sr'),
    (lambda o: o['path'].update(resume_state='nowhere/10.state'), '[path] resume_state: nowhere/10.state does not '
     'exist'),
])
def test_basicsr_keys_the_plugin_consumes(edit, expected):
    opt = tiny('car')
    edit(opt)
    assert expected in refused(opt)


def test_text_that_looks_like_a_number_is_text_where_basicsr_reads_text():
    opt = tiny('car')
    opt['name'], opt['dist_params']['port'] = '2024', '29500'
    opt['datasets']['val']['photos'] = ['chelsea']
    assert preflight.check_options(opt, True)


def test_size_policy_crop_is_logged_and_refuse_names_the_image(tmp_path):
    opt = tiny('car')
    opt['datasets']['val'] = hr_val(tmp_path / 'val', [(16, 16), (21, 29)])
    checked = preflight.check_options(copy.deepcopy(opt), True)
    assert checked
    notices = checked.notices
    assert notices == ['datasets.val (hr_val): 1 image(s) cropped at the bottom/right to multiples of 8 for CARModel '
                       'x4 (multiples of 8 and of the scale) (size_policy: crop; refuse stops instead): '
                       'img1_21x29.png 21x29 cropped to 16x24']
    opt['datasets']['val']['size_policy'] = 'refuse'
    assert ('img1_21x29.png: 21x29 (HxW) is not a multiple of 8, which CARModel x4 (multiples of 8 and of the scale) '
            'needs (size_policy: refuse); crop it to 16x24 or set size_policy: crop in the dataset '
            'section') in refused(opt)


def test_lmar_images_smaller_than_the_working_sizes(tmp_path):
    opt = lmar_opt(tmp_path)
    opt['datasets']['val'] = {'name': 'uhd', 'type': 'UHDPairedImageDataset', 'io_backend': {'type': 'disk'},
                              'dataroot_lq': hr_folder(tmp_path / 'lq', [(64, 64), (20, 30)]),
                              'dataroot_gt': hr_folder(tmp_path / 'gt', [(64, 64), (20, 30)])}
    opt['val'] = {'val_freq': 2, 'target_sizes': [[32, 32], [16, 16]], 'reference_size': [64, 64]}
    assert ('img1_20x30.png: 20x30 (HxW) would be enhanced at 5x8, below the smallest working size 8x8 of LMARModel '
            'validation; use larger images or larger val.target_sizes') in refused(opt)


def test_every_plugin_model_declares_its_image_sizes():
    from basicsr.utils.registry import MODEL_REGISTRY
    undeclared = {name for name in preflight.plugin_model_names()
                  if MODEL_REGISTRY.get(name).image_size_rule.__qualname__.startswith('ModelOptionsMixin')}
    assert undeclared == {'UHDEnhancerModel'}  # enhancement takes any size (its archs pad)


def test_other_projects_option_files_are_not_checked():
    opt = tiny('edsr')  # basicsr's SRModel
    opt['train']['optim_g']['lr'] = '4e-4'
    assert preflight.check_options(opt, True) is False


def test_test_runs_are_checked_too(tmp_path):
    opt = tiny('irn')
    del opt['train']
    opt['datasets'] = {'test': hr_val(tmp_path / 'test', [(1, 1)])}
    assert '[datasets.test (hr_val)] 1 image(s) smaller than the scale 2' in refused(opt, is_train=False)


def test_plugin_errors_are_user_errors():
    from basicsr_lmar.checkpoints.state_dicts import CheckpointMismatchError
    from basicsr_lmar.data.image_io import DataError
    assert all(issubclass(error, UserError) for error in (OptionError, CheckpointMismatchError, DataError))
    assert issubclass(OptionError, ValueError) and issubclass(DataError, RuntimeError)


# ------------------------------------------------------------------------------------------- the routes
def write_cases(tmp_path):
    """The table's cases as option files (YAML as a user writes it: `lr: 4e-4`), each with its run name."""
    files = {}
    for name, (opt, expected) in case_options(tmp_path).items():
        opt['name'] = f'preflight_{name}_{os.getpid()}'
        path = tmp_path / f'{name}.yml'
        path.write_text(yaml.safe_dump(opt).replace("'4e-4'", '4e-4'))  # unquoted, as a user writes it
        files[name] = (path, opt['name'], expected)
    return files


def test_plugin_entry_exits_2_with_one_line_and_no_folder(tmp_path, monkeypatch, capsys):
    from basicsr_lmar import train
    for name, (path, run_name, expected) in write_cases(tmp_path).items():
        monkeypatch.setattr(sys, 'argv', ['basicsr-lmar-train', '-opt', str(path)])
        with pytest.raises(SystemExit) as info:
            train.main(str(tmp_path))
        err = capsys.readouterr().err
        assert info.value.code == 2, (name, err)
        assert err.startswith('basicsr-lmar-train: error: ') and expected in err, (name, err)
        assert 'Traceback' not in err
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'tb_logger').exists()


STOCK_DRIVER = r'''
import contextlib, io, json, runpy, sys
results = {}
for name, path in json.loads(sys.argv[1]).items():
    sys.argv = ['basicsr/train.py', '-opt', path]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            runpy.run_module('basicsr.train', run_name='__main__', alter_sys=True)
            code = 0
        except SystemExit as exit:
            code = exit.code
    results[name] = [code, err.getvalue()]
print(json.dumps(results))
'''


@pytest.mark.slow
def test_stock_basicsr_train_names_the_same_errors_last(tmp_path):
    """``python -m basicsr.train``: one real run, then every case through runpy in one process (what -m
    does), so that the table costs two interpreter starts."""
    import basicsr
    files = write_cases(tmp_path)
    experiments = pathlib.Path(basicsr.__file__).resolve().parents[1] / 'experiments'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO_ROOT))
    env.pop('BASICSR_LMAR_AUTOLOAD', None)
    path, run_name, expected = files['lr_string']
    result = subprocess.run([sys.executable, '-m', 'basicsr.train', '-opt', str(path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == f'basicsr.train: error: {expected}'
    assert 'Traceback' not in result.stderr
    result = subprocess.run([sys.executable, '-c', STOCK_DRIVER, json.dumps({k: str(v[0]) for k, v in files.items()})],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (code, err) in outcomes.items():
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith('basicsr.train: error: ') and files[name][2] in err, (name, err)
        assert 'Traceback' not in err, (name, err)
        assert not (experiments / files[name][1]).exists()


def test_irn_pad_policy_scores_every_pixel_and_car_refuses_it(tmp_path, monkeypatch):
    """size_policy: pad (IRN's authors' code does not handle sizes that are not multiples; reported upstream): the
    whole 21x29 image is validated (padded to 22x30 by the
    model, its result cropped back), listed in the log; a model that cannot pad says so."""
    from basicsr.data import build_dataset
    from basicsr.models import build_model

    opt = tiny('irn')
    opt['datasets']['val'] = hr_val(tmp_path / 'val', [(21, 29)], size_policy='pad')
    checked = preflight.check_options(copy.deepcopy(opt), False)
    assert checked
    assert checked.notices == ['datasets.val (hr_val): 1 image(s) padded at the bottom/right to multiples of 2 for '
                               'IRNModel x2 (multiples of the scale), results cropped back (size_policy: pad): '
                               'img0_21x29.png 21x29 padded to 22x30']
    dataset = build_dataset(dict(opt['datasets']['val'], phase='val', scale=2))
    assert dataset[0]['gt'].shape == (3, 21, 29)
    opt.update(is_train=False, dist=False, rank=0, world_size=1)
    opt['path'] = {'visualization': str(tmp_path / 'visualization')}
    opt[NOTICES_KEY] = checked.notices  # what the preflight's parse_options hands the model
    from basicsr_lmar.models import plugin_mixin
    logged = []
    monkeypatch.setattr(plugin_mixin, 'get_root_logger', lambda: type('Log', (), {'info': logged.append})())
    model = build_model(opt)  # the model logs the preflight's notices (the run's log exists by then)
    assert logged[0].startswith('datasets.val (hr_val): 1 image(s) padded') and logged.count(logged[0]) == 1
    model.feed_data({'gt': dataset[0]['gt'][None]})
    model.test()
    assert model.output.shape == (1, 3, 21, 29) and model.lq.shape == (1, 3, 11, 15)
    car = tiny('car')
    car['datasets']['val'] = hr_val(tmp_path / 'car', [(16, 16)], size_policy='pad')
    assert 'size_policy: pad is not supported by CARModel x4' in refused(car)


def test_plugin_test_entry_exits_2_before_results_exist(tmp_path, monkeypatch, capsys):
    from basicsr_lmar import test as test_entry
    opt = tiny('irn')
    del opt['train']
    opt['datasets'] = {'test_1': hr_val(tmp_path / 'set', [(32, 32)], type='HROnlyDatset')}
    path = tmp_path / 'test_irn.yml'
    path.write_text(yaml.safe_dump(opt))
    monkeypatch.setattr(sys, 'argv', ['basicsr-lmar-test', '-opt', str(path)])
    with pytest.raises(SystemExit) as info:
        test_entry.main(str(tmp_path))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("basicsr-lmar-test: error: [datasets.test_1] type 'HROnlyDatset' is not a registered "
                          'dataset. Closest: HROnlyDataset, ') and err.count('\n') == 1
    assert not (tmp_path / 'results').exists()
