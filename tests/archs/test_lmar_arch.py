import pytest
import torch
import torch.nn.functional as F

from basicsr_lmar.archs import lmar_arch
from basicsr_lmar.archs.lmar_arch import FusedMLPLayout, LMARResampler, TorchFusedMLP
from basicsr_lmar.ops.coords import nearest_centre_offset, relative_cell
from basicsr_lmar.ops.resize import resize
from basicsr_lmar.options import OptionError


def _centres(n, dtype=torch.float32):
    r = 1 / n
    return -1 + r + (2 * r) * torch.arange(n, dtype=dtype)


def _authors_features(x, lr_size):
    """Scale features the way the released code builds them: grid_sample on 2-D centre grids."""
    n, _, big_h, big_w = x.shape
    h, w = lr_size
    hr = torch.stack(torch.meshgrid(_centres(big_h, x.dtype), _centres(big_w, x.dtype), indexing='ij'), -1)
    lr = torch.stack(torch.meshgrid(_centres(h, x.dtype), _centres(w, x.dtype), indexing='ij'), -1)
    hr_flat = hr.clamp(-1 + 1e-6, 1 - 1e-6).view(1, -1, 2).expand(n, -1, -1)
    lr_img = lr.permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1)
    nearest = F.grid_sample(lr_img, hr_flat.flip(-1).unsqueeze(1), mode='nearest', align_corners=False)
    nearest = nearest.view(n, 2, -1).permute(0, 2, 1)
    rel = hr_flat - nearest
    rel = rel * torch.tensor([h, w], dtype=x.dtype)
    cell = torch.ones_like(rel)
    cell[..., 0] *= 2 / big_h
    cell[..., 1] *= 2 / big_w
    cell = cell * torch.tensor([h, w], dtype=x.dtype)
    return rel, cell


def _plain_mlp(params, inputs, shapes, n_outputs):
    """Per-layer MLP reading weight (o, i) of each matrix at offset + o * in + i (row-major)."""
    hidden = torch.cat([inputs, torch.ones(inputs.shape[0], shapes[0][1] - inputs.shape[1], dtype=inputs.dtype)], 1)
    offset = 0
    for index, (out_dim, in_dim) in enumerate(shapes):
        o = torch.arange(out_dim).view(-1, 1)
        i = torch.arange(in_dim).view(1, -1)
        weight = params[offset + o * in_dim + i]
        offset += out_dim * in_dim
        linear = torch.nn.Linear(in_dim, out_dim, bias=False).to(inputs.dtype)
        linear.weight.data.copy_(weight)
        hidden = linear(hidden)
        if index < len(shapes) - 1:
            hidden = torch.where(hidden > 0, hidden, 0.01 * hidden)
    return hidden[:, :n_outputs]


def _reference_forward(net, x, lr_size):
    """x_c computed like the released code: unfold the whole image, per-pixel matmul with K (27, 3)."""
    n, c, big_h, big_w = x.shape
    x_d = resize(x, lr_size, 'lanczos3', antialias=False)
    rel, cell = _authors_features(x, lr_size)
    residual = (x - resize(x_d, (big_h, big_w), 'lanczos3', antialias=False)).reshape(n, c, -1).permute(0, 2, 1)
    inp = torch.cat([rel, cell, residual], -1).reshape(-1, 7)
    weights = _plain_mlp(net.imnet.params, inp, net.layout.shapes, 81).view(n, -1, 27, 3)
    cols = F.unfold(x, 3, padding=1).view(n, 27, -1).permute(0, 2, 1).unsqueeze(2)
    out = torch.matmul(cols, weights).squeeze(2).permute(0, 2, 1).reshape(n, c, big_h, big_w)
    out = resize(out, lr_size, 'lanczos3', antialias=False)
    return net.modulation(torch.cat([x_d, out], 1))


def test_offsets_and_cells_hand_checked():
    # ratio 2: UHD centres at 0.25, 0.75, 1.25, 1.75 LR pixels; nearest LR centres 0.5, 0.5, 1.5, 1.5
    assert nearest_centre_offset(4, 2).tolist() == pytest.approx([-0.5, 0.5, -0.5, 0.5], abs=1e-6)
    # ratio 3: centres 1/6, 1/2, 5/6 in each LR pixel -> offsets -1/3, 0, 1/3 LR pixels (x2 units)
    assert nearest_centre_offset(6, 2).tolist() == pytest.approx([-2 / 3, 0, 2 / 3] * 2, abs=1e-6)
    cell_y, cell_x = relative_cell((4, 6), (2, 2))
    assert cell_y.item() == pytest.approx(1.0) and cell_x.item() == pytest.approx(2 / 3)


@pytest.mark.parametrize('sizes', [((30, 45), (20, 30)), ((64, 96), (24, 40)), ((9, 12), (6, 8)), ((37, 50), (37, 13))])
def test_offsets_match_grid_sample_nearest_including_ties(sizes):
    (big_h, big_w), (h, w) = sizes
    rel, cell = _authors_features(torch.zeros(1, 3, big_h, big_w), (h, w))
    mine = torch.stack(torch.meshgrid(nearest_centre_offset(big_h, h), nearest_centre_offset(big_w, w),
                                      indexing='ij'), -1).view(1, -1, 2)
    assert torch.equal(rel, mine)
    assert torch.equal(cell[0, 0], torch.stack(relative_cell((big_h, big_w), (h, w))))


def test_parameter_count_and_state_dict_keys():
    net = LMARResampler(mlp_backend='torch')
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 79893
    assert net.imnet.params.numel() == 79872
    assert set(net.state_dict()) == {'imnet.params', 'modulation.weight', 'modulation.bias'}
    with_conv = LMARResampler(mlp_backend='torch', residual_conv=True)
    assert sum(p.numel() for p in with_conv.parameters()) == 79893 + 3 * 3 * 9 + 3


def test_torch_mlp_matches_plain_per_layer_reading_of_flat_vector():
    layout = FusedMLPLayout(7, 81, 128, 5)
    assert layout.shapes == [(128, 16)] + [(128, 128)] * 4 + [(96, 128)]
    mlp = TorchFusedMLP(layout, chunk_rows=1024).double()
    generator = torch.Generator().manual_seed(3)
    mlp.params.data.copy_(torch.randn(layout.numel, generator=generator, dtype=torch.float64) * 0.1)
    inputs = torch.randn(2500, 7, generator=generator, dtype=torch.float64)  # > chunk_rows: exercises chunking
    padded = torch.cat([inputs, torch.ones(2500, 9, dtype=torch.float64)], 1)
    expected = _plain_mlp(mlp.params.detach(), inputs, layout.shapes, 81)
    torch.testing.assert_close(mlp(padded), expected, rtol=1e-10, atol=1e-10)  # autograd path
    with torch.no_grad():
        torch.testing.assert_close(mlp(padded), expected, rtol=1e-10, atol=1e-10)  # reused-buffer path


def test_padding_columns_act_as_ones():
    layout = FusedMLPLayout(7, 81, 16, 1)
    mlp = TorchFusedMLP(layout)
    first, last = layout.split(mlp.params.data)
    first.zero_()
    first[:, 7] = 1.0  # every hidden unit reads the first padding column only
    last.zero_()
    last[:, 0] = 2.0
    out = mlp(torch.cat([torch.randn(5, 7), torch.ones(5, 9)], 1))
    torch.testing.assert_close(out, torch.full((5, 81), 2.0))


def test_forward_matches_released_data_flow():
    torch.manual_seed(0)
    net = LMARResampler(mlp_backend='torch').double()
    net.imnet.params.data.mul_(3)  # make the learned kernels matter
    x = torch.rand(2, 3, 20, 28, dtype=torch.float64)
    with torch.no_grad():
        out = net(x, (12, 15))
        expected = _reference_forward(net, x, (12, 15))
    assert out.shape == (2, 3, 12, 15)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_tiled_equals_untiled_forward_and_backward():
    torch.manual_seed(1)
    net = LMARResampler(mlp_backend='torch', tile_in_training=True)
    x = torch.rand(2, 3, 23, 31)
    with torch.no_grad():
        untiled = net(x, (10, 13))
        net.tile_memory_mb = 0.3  # a few rows per tile
        assert 1 < net.tile_rows(2, 23, 31) < 12
        tiled = net(x, (10, 13))
    torch.testing.assert_close(tiled, untiled, rtol=0, atol=1e-6)

    grads = []
    for budget in (1024, 0.3):
        net.tile_memory_mb = budget
        net.zero_grad()
        xg = x.clone().requires_grad_(True)
        net(xg, (10, 13)).square().sum().backward()
        grads.append((xg.grad, net.imnet.params.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)


def test_tile_rows_respect_budget_at_4k():
    net = LMARResampler(mlp_backend='torch')  # default budget
    rows = net.tile_rows(1, 2160, 3840)
    assert 1 <= rows < 2160
    assert rows * 3840 * net.bytes_per_pixel() <= net.tile_memory_mb * 2**20


def test_gradcheck_float64():
    torch.manual_seed(2)
    net = LMARResampler(mlp_backend='torch', mlp_width=16, mlp_hidden_layers=2, resize_kernel='bicubic').double()
    x = torch.rand(1, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda image: net(image, (4, 5)), (x, ), eps=1e-6, atol=1e-5, fast_mode=True)
    flat = net.imnet.params.detach().clone().requires_grad_(True)

    def through_params(vector):
        del net.imnet.params
        net.imnet.params = vector
        return net(x.detach(), (4, 5))

    assert torch.autograd.gradcheck(through_params, (flat, ), eps=1e-6, atol=1e-5, fast_mode=True)


def test_fake_tcnn_backend_shares_the_checkpoint(monkeypatch):
    """tiny-cuda-nn is not installed here: a stand-in with tcnn's API checks the wiring and key names."""

    class FakeNetwork(torch.nn.Module):

        def __init__(self, n_input_dims, n_output_dims, network_config, seed=1337):
            super().__init__()
            assert network_config['otype'] == 'FullyFusedMLP' and network_config['n_neurons'] == 128
            self.layout = FusedMLPLayout(n_input_dims, n_output_dims, network_config['n_neurons'],
                                         network_config['n_hidden_layers'])
            self.params = torch.nn.Parameter(torch.zeros(self.layout.numel))

        def forward(self, x):
            assert x.shape[1] == self.layout.n_inputs
            return _plain_mlp(self.params, x, self.layout.shapes, self.layout.n_outputs).half()

    class FakeTcnn:
        Network = FakeNetwork

    monkeypatch.setattr(lmar_arch, '_tcnn', FakeTcnn)
    monkeypatch.setattr(lmar_arch, 'tcnn_available', lambda: True)
    source = LMARResampler(mlp_backend='torch')
    target = LMARResampler(mlp_backend='auto')
    assert target.mlp_backend == 'tcnn'
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x, (8, 8)), source(x, (8, 8)), rtol=1e-2, atol=2e-3)


def test_option_and_input_errors():
    with pytest.raises(OptionError, match='mlp_backend'):
        LMARResampler(mlp_backend='cuda')
    with pytest.raises(OptionError, match='resize_kernel'):
        LMARResampler(resize_kernel='lanczos5')
    if not lmar_arch.tcnn_available():
        with pytest.raises(ValueError, match='mlp_backend: torch'):
            LMARResampler(mlp_backend='tcnn')
    net = LMARResampler(mlp_backend='torch')
    with pytest.raises(ValueError, match='not larger than the input'):
        net(torch.rand(1, 3, 8, 8), (9, 4))
    with pytest.raises(ValueError, match='positive'):
        net(torch.rand(1, 3, 8, 8), (0, 4))


def test_bf16_inference_is_close_and_training_stays_fp32():
    torch.manual_seed(4)
    exact = LMARResampler(mlp_backend='torch').eval()
    fast = LMARResampler(mlp_backend='torch', mlp_inference_precision='bf16').eval()
    fast.load_state_dict(exact.state_dict())
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        reference, approx = exact(x, (12, 16)), fast(x, (12, 16))
    assert not torch.equal(reference, approx)  # it really ran in bf16
    torch.testing.assert_close(approx, reference, rtol=0, atol=2e-2)
    torch.testing.assert_close(fast(x, (12, 16)), reference, rtol=1e-5, atol=1e-6)  # with grad: fp32


def test_identity_initialisation_starts_as_the_plain_resizer():
    net = LMARResampler(mlp_backend='torch', modulation_init='identity')
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        out = net(x, (10, 12), return_intermediates=True)
    torch.testing.assert_close(out['x_c'], out['x_d'], rtol=0, atol=1e-6)
    x_req = x.clone().requires_grad_(True)
    net(x_req, (10, 12)).square().sum().backward()
    assert net.modulation.weight.grad[:, 3:].abs().sum() > 0  # the x_hat path receives gradient


def test_enhance_is_resample_enhance_upscale_clamped():
    torch.manual_seed(0)
    net = LMARResampler(mlp_width=16, mlp_hidden_layers=1, mlp_backend='torch')
    enhancer = torch.nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        for use_lmar in (True, False):
            low = net(x, (12, 10), kernel='bicubic') if use_lmar else resize(x, (12, 10), 'bicubic', False)
            expected = resize(enhancer(low), (24, 20), 'bicubic', False).clamp(0, 1)
            torch.testing.assert_close(net.enhance(x, enhancer, (12, 10), 'bicubic', use_lmar), expected)
