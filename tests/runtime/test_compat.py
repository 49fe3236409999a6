"""The released basicsr imports and runs on the pinned stack through the plugin's compat layer."""
import importlib
import subprocess
import sys

import pytest


def test_removed_torchvision_module_resolves_to_its_new_home():
    import torchvision
    old = importlib.import_module('torchvision.transforms.functional_tensor')
    new = importlib.import_module('torchvision.transforms._functional_tensor')
    assert old is new
    assert hasattr(old, 'rgb_to_grayscale')
    assert torchvision.__version__  # imported without error


def test_alias_finder_defers_to_real_modules():
    from basicsr_lmar.runtime.compat import ModuleAliasFinder
    assert ModuleAliasFinder().find_spec('torchvision.transforms.functional') is None


def test_without_compat_released_basicsr_fails_on_this_stack():
    """Guards the premise: if this starts passing, the alias may be dropped."""
    code = 'import basicsr'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env={'BASICSR_LMAR_AUTOLOAD': '0', 'PATH': ''})
    if result.returncode == 0:
        pytest.skip('this basicsr/torchvision pair imports without the alias')
    assert 'functional_tensor' in result.stderr


def test_basicsr_degradations_work_through_alias():
    import torch
    from basicsr.data.degradations import add_gaussian_noise_pt
    torch.manual_seed(0)
    out = add_gaussian_noise_pt(torch.zeros(1, 3, 8, 8), sigma=5, gray_noise=0)
    assert out.shape == (1, 3, 8, 8) and out.abs().sum() > 0


def test_any_torch_optimizer_by_name_and_a_clear_error_otherwise():
    import torch
    from basicsr.models.base_model import BaseModel
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(BaseModel.get_optimizer(None, 'AdamW', params, 1e-3, weight_decay=0.1), torch.optim.AdamW)
    assert isinstance(BaseModel.get_optimizer(None, 'Adam', params, 1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="'Adamm' is not a torch.optim optimizer.*Adam"):
        BaseModel.get_optimizer(None, 'Adamm', params, 1e-3)


def test_model_to_device_keeps_frozen_nets_unwrapped_and_wraps_trainable_on_cpu(tmp_path):
    """Single-process gloo group: DDP on CPU needs no device_ids; frozen nets are never wrapped."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from basicsr.models.base_model import BaseModel

    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "rendezvous"}', rank=0, world_size=1)
    try:
        holder = type('Holder', (), {})()
        holder.opt, holder.device = {'dist': True, 'num_gpu': 0}, torch.device('cpu')
        frozen = torch.nn.Conv2d(1, 1, 1).requires_grad_(False)
        assert BaseModel.model_to_device(holder, frozen) is frozen
        wrapped = BaseModel.model_to_device(holder, torch.nn.Conv2d(1, 1, 1))
        assert isinstance(wrapped, DistributedDataParallel)
    finally:
        dist.destroy_process_group()
