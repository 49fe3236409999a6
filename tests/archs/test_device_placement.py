"""Device placement checked without a GPU: every arch and pipeline entry runs on the ``meta`` device.

A tensor that an arch creates without ``device=`` (grids, coordinate maps, masks, kernels, RNG draws) lands
on the CPU, and mixing it with the inputs' device is an error; on ``meta`` it is the same error as on CUDA
("Tensor on device meta is not on the expected device cpu"), so these forward passes catch on CPU what would
otherwise fail only on a GPU.
"""
import pytest
import torch
from basicsr.archs import build_network

import basicsr_lmar  # noqa: F401  (registers the archs)
from basicsr_lmar.archs.car_arch import CARResamplerNet
from basicsr_lmar.archs.lmar_arch import LMARResampler
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet
from basicsr_lmar.ops.adaptive_resample import adaptive_resample
from basicsr_lmar.ops.resize import resize
from basicsr_lmar.registry import RESCALER_REGISTRY

META = torch.device('meta')


def test_meta_catches_a_tensor_made_on_the_cpu():
    with pytest.raises(RuntimeError, match='device'):
        torch.ones(3, device=META) + torch.arange(3.0)


@pytest.mark.parametrize('options', [
    dict(type='UHDUNet', model_channel=2, block='invertible'),
    dict(type='UHDUNet', model_channel=2, block='half_instance_norm'),
    dict(type='Restormer', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1]),
    dict(type='LMARPatchDiscriminator', num_in_ch=3, num_feat=4, num_down=2),
], ids=lambda o: f'{o["type"]}-{o.get("block", "")}')
def test_enhancers_and_discriminator_forward_on_meta(options):
    net = build_network(dict(options)).to(META)
    assert net(torch.rand(1, 3, 32, 32, device=META)).device == META


def test_lmar_enhance_pipeline_on_meta():
    resampler = LMARResampler(mlp_backend='torch', mlp_width=16, mlp_hidden_layers=2, tile_memory_mb=1).to(META)
    enhancer = UHDUNet(model_channel=2, block='invertible').to(META)
    x = torch.rand(1, 3, 32, 48, device=META)
    assert resampler(x, (16, 24), return_intermediates=True)['x_hat'].device == META
    assert resampler.enhance(x, enhancer, (16, 24)).device == META
    assert resampler.enhance(x, enhancer, (12, 20), kernel='lanczos3', use_lmar=False).device == META


def test_car_network_and_op_on_meta():
    net = CARResamplerNet(scale=2, num_feat=4, body_feat=4, top_feat=8, num_block=1).to(META)
    hr = torch.rand(1, 3, 32, 32, device=META)
    maps = net(hr)
    assert all(m.device == META for m in maps)
    # the readable reference path (the chunked one reads sample bands from the data, impossible on meta)
    assert adaptive_resample(hr, *maps, 2, impl='reference').device == META


def test_irn_rescaler_on_meta():
    net = build_network(dict(type='InvRescaleNet', scale=2, block_num=[1], growth=4))
    rescaler = RESCALER_REGISTRY.get('IRNRescaler')(net, z_policy='zero').to(META)
    hr = torch.rand(1, 3, 16, 16, device=META)
    lr = rescaler.downscale(hr)
    assert lr.device == META and rescaler.upscale(lr).device == META


@pytest.mark.parametrize('size', [(16, 24), (64, 96), (20, 90)])
def test_resize_on_meta(size):
    x = torch.rand(2, 3, 32, 48, device=META)
    for kernel in ('bicubic', 'lanczos3', 'nearest'):
        assert resize(x, size, kernel, antialias=False).shape == (2, 3, *size)
