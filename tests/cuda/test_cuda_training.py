"""Every model family on CUDA: three training iterations and a validation through the real train entry
(``basicsr_lmar.train``, tiny option files of tests/data_files/ with ``num_gpu: 1``), HCD's validation, AMP
(fp16 and bf16 against fp32) for the families that allow it, and a torchrun NCCL run with one process."""
import copy
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from basicsr.models import build_model

from tests.conftest import REPO_ROOT
from tests.cuda import CUDA_ONLY
from tests.models.run_helpers import free_port, load_params

pytestmark = CUDA_ONLY

# family -> (option file, degradation and scale of the validation photo, extra [val] options)
LMAR_VAL = {'target_sizes': [[2160, 3840], [1080, 1920]], 'resizers': ['bicubic'],
            'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}}
PSNR = {'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2}}}
FAMILIES = {
    'car': ('train_car_tiny.yml', 'none', 1, {}),
    'irn': ('train_irn_tiny.yml', 'none', 1, PSNR),
    'lmar': ('train_lmar_tiny.yml', 'lowlight', 1, LMAR_VAL),
    'enhancer': ('train_uhdunet_tiny.yml', 'lowlight', 1, PSNR),
    'edsr_on_plugin_data': ('train_edsr_tiny.yml', 'bicubic', 2, {}),
}
TRAIN_ENTRY = 'from basicsr_lmar.train import main; main()'  # experiments/ under the working directory


def _frozen_enhancer(opt, folder):
    """LMAR trains in front of a pretrained enhancer: a freshly initialised one stands in for it."""
    from basicsr.archs import build_network
    torch.manual_seed(1)
    path = folder / 'enhancer.pth'
    torch.save({'params': build_network(dict(opt['network_enhancer'])).state_dict()}, path)
    return str(path)


def cuda_options(family, folder, iterations=3):
    filename, degradation, scale, val = FAMILIES[family]
    opt = yaml.safe_load((REPO_ROOT / 'tests' / 'data_files' / filename).read_text())
    opt.update(name=f'cuda_{family}', num_gpu=1)
    if 'network_enhancer' in opt:
        opt['path']['pretrain_network_enhancer'] = _frozen_enhancer(opt, folder)
    opt['train']['total_iter'] = iterations
    opt['logger'].update(print_freq=1, save_checkpoint_freq=iterations)
    photo = {'name': 'skimage_heldout', 'type': 'SkimagePhotoDataset', 'split': 'heldout', 'photos': ['chelsea'],
             'degradation': degradation, 'resize_to': [64, 96]}
    if scale > 1:
        photo['scale'] = scale
    opt['datasets']['val'] = photo
    opt['val'] = dict(copy.deepcopy(opt.get('val') or {}), **copy.deepcopy(val), val_freq=iterations)
    opt['val'].setdefault('save_img', False)
    return opt


def _write(opt, folder, name):
    path = folder / name
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def _run(command, cwd, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f'{" ".join(map(str, command))}\n{output[-6000:]}'
    return output


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_family_trains_three_iterations_and_validates_on_cuda(family, tmp_path):
    opt = cuda_options(family, tmp_path)
    output = _run([sys.executable, '-c', TRAIN_ENTRY, '-opt', str(_write(opt, tmp_path, 'cuda.yml'))], tmp_path)
    assert re.search(r'iter:\s+3,', output), output[-3000:]
    assert 'Validation' in output, output[-3000:]
    assert 'nan' not in output.lower().split('validation')[-1][:400]
    params = load_params(tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth')
    assert all(torch.isfinite(v).all() for v in params.values() if v.is_floating_point())


def test_torchrun_nccl_with_one_process(tmp_path):
    opt = cuda_options('enhancer', tmp_path)
    opt['dist_params'] = {'backend': 'nccl', 'port': free_port()}
    launcher = tmp_path / 'launch_train.py'
    launcher.write_text(TRAIN_ENTRY + '\n')
    output = _run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=1', '--master_addr=127.0.0.1',
                   f'--master_port={free_port()}', str(launcher), '-opt', str(_write(opt, tmp_path, 'ddp.yml')),
                   '--launcher', 'pytorch'], tmp_path)
    assert 'World size (gpu number): 1' in output
    assert (tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth').is_file()


def _amp_losses(family, tmp_path, amp, steps=3):
    opt = cuda_options(family, tmp_path)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(models=str(tmp_path / amp), training_states=str(tmp_path / amp),
                       visualization=str(tmp_path / amp))
    opt['train']['amp'] = amp
    opt['datasets'] = {'train': dict(opt['datasets']['train'], phase='train')}
    torch.manual_seed(0)
    model = build_model(opt)
    key = 'gt' if family == 'car' else 'lq'
    batch = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    losses = []
    for it in range(1, steps + 1):
        model.feed_data({key: batch})
        model.optimize_parameters(it)
        losses.append(float(model.log_dict['l_pix' if family == 'car' else 'l_rc']))
    return losses, model


@pytest.mark.parametrize('amp', ['fp16', 'bf16'])
@pytest.mark.parametrize('family', ['car', 'lmar'])
def test_amp_steps_track_fp32_on_cuda(family, amp, tmp_path):
    fp32, _ = _amp_losses(family, tmp_path, 'none')
    reduced, model = _amp_losses(family, tmp_path, amp)
    assert model.amp_dtype == {'fp16': torch.float16, 'bf16': torch.bfloat16}[amp]
    assert all(torch.isfinite(torch.tensor(reduced)))
    for a, b in zip(fp32, reduced):
        assert b == pytest.approx(a, rel=5e-2)
    assert reduced != fp32  # autocast really ran in reduced precision


def test_hcd_validation_on_cuda(tmp_path):
    import cv2
    from skimage import data
    from torch.utils.data import DataLoader

    from basicsr.data import build_dataset
    from basicsr_lmar.archs.irn_arch import InvRescaleNet
    folder = tmp_path / 'hr'
    folder.mkdir()
    cv2.imwrite(str(folder / 'astronaut.png'), data.astronaut()[100:164, 200:264, ::-1])
    torch.manual_seed(0)
    torch.save({'params': InvRescaleNet(scale=4, block_num=[1, 1], growth=4).state_dict()}, tmp_path / 'irn.pth')
    opt = {'name': 'hcd_cuda', 'model_type': 'HCDModel', 'num_gpu': 1, 'dist': False, 'rank': 0, 'is_train': False,
           'scale': 4, 'network_g': {'type': 'InvRescaleNet', 'scale': 4, 'block_num': [1, 1], 'growth': 4},
           'rescaler': {'type': 'IRNRescaler', 'z_policy': 'zero'},
           'hcd': {'steps_hr': 3, 'steps_lr': 3, 'seed': 0, 'steps_list': [1]},
           'path': {'pretrain_network_g': str(tmp_path / 'irn.pth'), 'visualization': str(tmp_path / 'vis')},
           'val': {'save_img': True, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2}}}}
    model = build_model(opt)
    assert next(model.net_g.parameters()).is_cuda
    dataset = build_dataset({'name': 'tiny', 'type': 'HROnlyDataset', 'dataroot_gt': str(folder),
                             'io_backend': {'type': 'disk'}, 'phase': 'test'})
    model.validation(DataLoader(dataset, batch_size=1), current_iter='test', tb_logger=None, save_img=True)
    results = model.metric_results
    assert 0 < results['psnr_base'] < 100 and 0 < results['psnr_hcd3'] < 100, sorted(results)
    assert results['seconds_hcd3'] > 0
