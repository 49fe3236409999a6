import os.path as osp
import numpy as np
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from skimage import data as skdata
from torch import nn

from basicsr_lmar.models.lmar_model import LMARModel, draw_working_size, working_sizes
from basicsr_lmar.options import OptionError


class TinyStandInEnhancer(nn.Module):
    """A small U-Net-like enhancer standing in for UHDUNet; its bottleneck is the module `bottleneck`."""
    BOTTLENECK_LAYER = 'bottleneck'

    def __init__(self, width=8):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1), nn.ReLU())
        self.bottleneck = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU())
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear'), nn.Conv2d(2 * width, width, 3, 1, 1))
        self.tail = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, x):
        feature = self.head(x)
        deep = self.up(self.bottleneck(feature))[..., :x.shape[-2], :x.shape[-1]]
        return x + 0.1 * self.tail(feature + deep)


if 'TinyStandInEnhancer' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(TinyStandInEnhancer)


def _photo(size=32):
    image = skdata.astronaut()[100:100 + size * 4:4, 180:180 + size * 4:4].astype(np.float32) / 255.0
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).contiguous()


def _options(tmp_path, **train_overrides):
    torch.manual_seed(0)
    enhancer = TinyStandInEnhancer()
    enhancer_path = tmp_path / 'enhancer.pth'
    torch.save({'params': enhancer.state_dict()}, enhancer_path)
    train = {
        'optim_g': {'type': 'Adam', 'lr': 2e-3, 'betas': [0.9, 0.999]},
        'optim_d': {'type': 'Adam', 'lr': 2e-4, 'betas': [0.9, 0.999]},
        'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.75},
        'total_iter': 100,
        'scale_range': [2.0, 2.0],
        'rc_opt': {'type': 'ResamplingConsistencyLoss', 'loss_weight': 1.0},
        'fa_opt': {'type': 'AttentionTransferLoss', 'loss_weight': 10.0},
        'gan_opt': {'type': 'GANLoss', 'gan_type': 'lsgan', 'loss_weight': 0.01},
    }
    train.update(train_overrides)
    return {
        'name': 'lmar_test', 'model_type': 'LMARModel', 'num_gpu': 0, 'is_train': True, 'dist': False, 'rank': 0,
        'network_g': {'type': 'LMARResampler', 'mlp_backend': 'torch', 'mlp_width': 32, 'mlp_hidden_layers': 2,
                      'resize_kernel': 'bicubic'},
        'network_enhancer': {'type': 'TinyStandInEnhancer', 'width': 8},
        'network_d': {'type': 'LMARPatchDiscriminator'},
        'path': {'pretrain_network_enhancer': str(enhancer_path), 'visualization': str(tmp_path / 'vis'),
                 'models': str(tmp_path / 'models'), 'training_states': str(tmp_path / 'states')},
        'train': train,
        'val': {'val_freq': 1, 'target_sizes': [[2160, 3840], [1080, 1920], [540, 960]],
                'resizers': ['bilinear', 'bicubic'],
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0},
                            'ssim': {'type': 'calculate_ssim', 'crop_border': 0}}},
    }


def test_gradients_reach_resampler_through_frozen_enhancer(tmp_path):
    model = LMARModel(_options(tmp_path))
    before = {k: v.clone() for k, v in model.net_enhancer.state_dict().items()}
    model.feed_data({'lq': _photo()})
    model.optimize_parameters(1)
    assert not model.net_enhancer.training
    assert all(not p.requires_grad and p.grad is None for p in model.net_enhancer.parameters())
    assert model.net_g.imnet.params.grad is not None and model.net_g.imnet.params.grad.abs().sum() > 0
    assert model.net_g.modulation.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.net_d.parameters())
    model.optimize_parameters(2)
    for key, value in model.net_enhancer.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert {'l_rc', 'l_fa', 'l_g_gan', 'l_g_total', 'l_rc_plain', 'l_d', 'l_d_real', 'l_d_fake'} <= set(model.log_dict)


def test_training_iterations_lower_resampling_consistency(tmp_path):
    model = LMARModel(_options(tmp_path, gan_opt=None))
    model.feed_data({'lq': _photo()})
    losses = []
    for step in range(1, 16):
        model.optimize_parameters(step)
        losses.append(model.log_dict['l_rc'])
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def test_training_resizers_are_drawn_per_iteration(tmp_path):
    """train.resizers: D and U of each iteration use a kernel drawn from the list (the logged plain
    baseline is recomputed here with the drawn kernel); drawn kernels vary and repeat per iteration."""
    from basicsr_lmar.ops.resize import resize
    model = LMARModel(_options(tmp_path, gan_opt=None, fa_opt=None, scale_range=[1.5, 3.0],
                               resizers=['nearest', 'bilinear', 'lanczos3']))
    x = _photo()
    model.feed_data({'lq': x})
    drawn = []
    for step in range(1, 9):
        model.optimize_parameters(step)
        kernel, size = model.working_kernel, model.working_size
        drawn.append(kernel)
        with torch.no_grad():
            target = model.bottleneck(x)
            plain = resize(model.bottleneck(resize(x, size, kernel, False)), tuple(target.shape[-2:]), kernel, False)
            expected = torch.nn.functional.smooth_l1_loss(plain, target)
        assert model.log_dict['l_rc_plain'] == pytest.approx(float(expected), rel=1e-5), (step, kernel)
    assert set(drawn) <= {'nearest', 'bilinear', 'lanczos3'} and len(set(drawn)) > 1
    again = LMARModel(_options(tmp_path, gan_opt=None, fa_opt=None, scale_range=[1.5, 3.0],
                               resizers=['nearest', 'bilinear', 'lanczos3']))
    again.feed_data({'lq': x})
    for step in range(1, 9):
        again.optimize_parameters(step)
        assert again.working_kernel == drawn[step - 1]


def test_ema_of_the_resampler_is_used_saved_and_reloaded(tmp_path):
    """train.ema_decay: net_g_ema follows the BasicSR update, validation/test use it, checkpoints carry
    params and params_ema, and a model started from that checkpoint restores both."""
    decay = 0.9
    model = LMARModel(_options(tmp_path, gan_opt=None, fa_opt=None, ema_decay=decay))
    expected = {k: v.clone() for k, v in model.net_g.named_parameters()}
    model.feed_data({'lq': _photo()})
    for step in range(1, 4):
        model.optimize_parameters(step)
        for name, param in model.net_g.named_parameters():
            expected[name] = decay * expected[name] + (1 - decay) * param.detach()
    for name, param in model.net_g_ema.named_parameters():
        torch.testing.assert_close(param, expected[name], rtol=1e-6, atol=1e-7)
        assert not param.requires_grad
    assert not torch.equal(model.net_g_ema.modulation.weight, model.net_g.modulation.weight)
    x = _photo()
    with torch.no_grad():
        via_ema = model.net_enhancer(model.net_g_ema(x, (16, 16), kernel='bicubic'))
        via_ema = model.resampler.resize(via_ema, (32, 32), 'bicubic').clamp(0, 1)  # enhance ends with the clamp
    torch.testing.assert_close(model.enhance(x, (16, 16), 'bicubic'), via_ema)

    (tmp_path / 'models').mkdir()
    (tmp_path / 'states').mkdir()
    model.save(0, 3)
    checkpoint = torch.load(tmp_path / 'models' / 'net_g_3.pth', weights_only=False)
    assert {'params', 'params_ema'} <= set(checkpoint)
    opt = _options(tmp_path, gan_opt=None, fa_opt=None, ema_decay=decay)
    opt['path']['pretrain_network_g'] = str(tmp_path / 'models' / 'net_g_3.pth')
    reloaded = LMARModel(opt)
    for (name, param), (_, ema) in zip(reloaded.net_g.named_parameters(), reloaded.net_g_ema.named_parameters()):
        torch.testing.assert_close(param, dict(model.net_g.named_parameters())[name], rtol=0, atol=0)
        torch.testing.assert_close(ema, dict(model.net_g_ema.named_parameters())[name], rtol=0, atol=0)


def test_ema_decay_must_be_below_one(tmp_path):
    with pytest.raises(OptionError, match='ema_decay'):
        LMARModel(_options(tmp_path, ema_decay=1))
    with pytest.raises(OptionError, match='ema_decay'):
        LMARModel(_options(tmp_path, ema_decay=-0.5))


def test_validation_table_shape_and_files(tmp_path):
    model = LMARModel(_options(tmp_path))

    class ValSet(torch.utils.data.Dataset):
        opt = {'name': 'tiny'}

        def __len__(self):
            return 2

        def __getitem__(self, index):
            image = _photo(32)[0, :, :24]
            return {'lq': image * 0.6, 'gt': image, 'lq_path': f'img{index}.png'}

    loader = torch.utils.data.DataLoader(ValSet(), batch_size=1)
    model.validation(loader, 7, None, save_img=False)
    table = model.validation_table
    assert table.sizes == [(24, 32), (12, 16), (6, 8)]
    assert len(table.header()) == 1 + 2 * 2 * 2
    assert [len(row) for row in table.rows()] == [9, 9, 9]
    folder = osp.join(tmp_path, 'vis', 'lmar_tables')
    for name in ('tiny_7.md', 'tiny_7.csv', 'tiny_7_psnr.png'):
        assert osp.isfile(osp.join(folder, name)), name
    # without LMAR at full size the pipeline is the enhancer alone
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    psnrs = []
    for index in range(2):
        sample = ValSet()[index]
        with torch.no_grad():
            out = model.net_enhancer(sample['lq'][None]).clamp(0, 1)
        psnrs.append(calculate_psnr(tensor2img(out), tensor2img(sample['gt'][None]), 0))
    assert table.value((24, 32), 'bicubic', False, 'psnr') == pytest.approx(np.mean(psnrs), abs=1e-6)
    assert set(model.metric_results) == {'psnr', 'ssim'}


def test_working_sizes():
    assert working_sizes((2160, 3840))[0] == (2160, 3840)
    assert working_sizes((1080, 1920))[:3] == [(1080, 1920), (720, 1280), (540, 960)]
    generator = torch.Generator().manual_seed(0)
    heights = set()
    for _ in range(50):
        h, w = draw_working_size((1024, 768), 'uniform', (1, 4), generator)
        assert 256 <= h <= 1024 and 192 <= w <= 768 and abs(h / w - 1024 / 768) < 0.02
        heights.add(h)
        side, _ = draw_working_size((1024, 1024), 'lattice8', generator=generator)
        assert side % 8 == 0 and 256 <= side < 1024
    assert len(heights) > 20
    generator = torch.Generator().manual_seed(0)
    sides = {draw_working_size((128, 128), 'lattice8_full', generator=generator)[0] for _ in range(300)}
    assert sides == set(range(32, 129, 8))  # the released lattice (32..120) plus the crop itself


@pytest.mark.parametrize('val_override, match', [
    ({'target_sizes': [[4000, 3840]]}, 'larger than reference_size'),
    ({'target_sizes': [[0, 10]]}, 'positive'),
    ({'resizers': ['bilinear', 'lanczos9']}, 'lanczos9'),
    ({'resizer': ['bilinear']}, 'resizers'),
])
def test_validation_option_errors(tmp_path, val_override, match):
    opt = _options(tmp_path)
    opt['val'].update(val_override)
    with pytest.raises(OptionError, match=match):
        LMARModel(opt)


def test_model_option_errors(tmp_path):
    opt = _options(tmp_path)
    opt['network_enhancer']['feature_layer'] = 'botleneck'
    with pytest.raises(OptionError, match="bottleneck"):
        LMARModel(opt)
    opt = _options(tmp_path)
    del opt['path']['pretrain_network_enhancer']
    with pytest.raises(OptionError, match='pretrain_network_enhancer'):
        LMARModel(opt)
    opt = _options(tmp_path, scale_sampling='random')
    with pytest.raises(OptionError, match='scale_sampling'):
        LMARModel(opt)
    with pytest.raises(OptionError, match=r"\[train\] resizers entry 'cubic'"):
        LMARModel(_options(tmp_path, resizers=['bicubic', 'cubic']))
    with pytest.raises(OptionError, match=r'\[train\] resizers is empty'):
        LMARModel(_options(tmp_path, resizers=[]))
    opt = _options(tmp_path)
    opt['network_g']['mlp_backend'] = 'cuda'
    with pytest.raises(OptionError, match=r'\[network_g\].*mlp_backend'):
        LMARModel(opt)


def test_real_uhd_unet_enhancer_with_default_bottleneck(tmp_path):
    from basicsr_lmar.archs.uhd_unet_arch import UHDUNet
    opt = _options(tmp_path)
    enhancer = UHDUNet(model_channel=2)
    torch.save({'params': enhancer.state_dict()}, tmp_path / 'uhdunet.pth')
    opt['network_enhancer'] = {'type': 'UHDUNet', 'model_channel': 2, 'block': 'half_instance_norm'}
    opt['path']['pretrain_network_enhancer'] = str(tmp_path / 'uhdunet.pth')
    with pytest.raises(Exception):  # the checkpoint is an invertible-block UHDUNet: strict load must fail
        LMARModel(opt)
    opt['network_enhancer']['block'] = 'invertible'
    model = LMARModel(opt)
    assert model.feature_layer == UHDUNet.BOTTLENECK_LAYER
    model.feed_data({'lq': _photo()})
    model.optimize_parameters(1)
    assert model.net_g.imnet.params.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.net_enhancer.parameters())


def test_loss_resize_options_act_in_training(tmp_path):
    """The losses see E(x_c) at its own size: their resize_kernel (when set) is the U of the features,
    otherwise the resizer of the iteration (network_g.resize_kernel here, bicubic)."""
    import torch.nn.functional as F
    from basicsr_lmar.models.lmar_model import draw_working_size
    from basicsr_lmar.ops.resize import resize
    x = _photo()
    logged = {}
    for kernel in (None, 'nearest'):
        opt = _options(tmp_path, gan_opt=None, fa_opt=None, log_plain_baseline=False)
        opt['train']['rc_opt']['resize_kernel'] = kernel
        model = LMARModel(opt)
        size = draw_working_size((32, 32), 'uniform', (2.0, 2.0), model.iteration_generator(1))
        with torch.no_grad():
            target = model.bottleneck(x)
            features = model.bottleneck(model.net_g(x, size))
            expected = F.smooth_l1_loss(resize(features, tuple(target.shape[-2:]), kernel or 'bicubic', False), target)
        model.feed_data({'lq': x})
        model.optimize_parameters(1)
        logged[kernel] = model.log_dict['l_rc']
        assert logged[kernel] == pytest.approx(float(expected), rel=1e-5), kernel
    assert logged[None] != logged['nearest']


def test_validation_plot_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib
    from basicsr_lmar.models.lmar_model import LMARValidationTable
    table = LMARValidationTable([(8, 8), (4, 4)], ['bicubic'], ['psnr'], {
        ((8, 8), 'bicubic', False, 'psnr'): 20.0, ((8, 8), 'bicubic', True, 'psnr'): 21.0,
        ((4, 4), 'bicubic', False, 'psnr'): 18.0, ((4, 4), 'bicubic', True, 'psnr'): 19.5})
    backend = matplotlib.get_backend()
    try:
        matplotlib.use('svg')  # a program's own choice, which library code must not switch
        table.plot('psnr', str(tmp_path / 'plot.png'))
        assert matplotlib.get_backend() == 'svg'
    finally:
        matplotlib.use(backend)
    assert (tmp_path / 'plot.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_a_missing_enhancer_section_and_a_misspelt_amp_are_named(tmp_path):
    opt = _options(tmp_path)
    del opt['network_enhancer']
    with pytest.raises(OptionError, match=r'\[network_enhancer\] section is missing: LMARModel needs the pretrained '
                       'enhancer'):
        LMARModel(opt)
    with pytest.raises(OptionError, match=r"\[train\].*unknown option 'ampp'.*closest first: amp"):
        LMARModel(_options(tmp_path, ampp='bf16'))
    with pytest.raises(OptionError, match=r"\[train\].*'amp'.*one of \['none', 'bf16', 'fp16'\]; got 'bf61'"):
        LMARModel(_options(tmp_path, amp='bf61'))
