import pytest
import torch
import torch.nn.functional as F
from torch import nn

import basicsr_lmar  # noqa: F401
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet
from basicsr_lmar.ops.tiled_forward import tiled_forward


@pytest.mark.parametrize('size, tile, overlap', [((37, 50), 16, 8), ((32, 32), (12, 20), (8, 10)), ((9, 70), 16, 9)])
def test_exact_for_a_network_with_a_small_receptive_field(size, tile, overlap):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 2, 3, padding=1)).double()
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    # receptive radius 2 <= overlap // 4: the pixels that carry weight never see a tile border
    with torch.no_grad():
        full, tiled = net(x), tiled_forward(net, x, tile, overlap)
    torch.testing.assert_close(tiled, full)
    with torch.no_grad():  # with too small an overlap the tile borders leak in
        assert (tiled_forward(net, x, tile, 4) - full).abs().max() > 1e-3


def test_pointwise_network_is_reproduced_exactly():
    net = nn.Conv2d(3, 4, 1).double()
    x = torch.rand(1, 3, 30, 41, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(tiled_forward(net, x, 8, 3), net(x))


def test_scale_two_network():
    net = nn.Upsample(scale_factor=2, mode='nearest')
    x = torch.rand(1, 3, 20, 28)
    torch.testing.assert_close(tiled_forward(net, x, 8, 2, scale=2), net(x))


def test_uhd_unet_tiles_are_close_but_not_exact_because_of_instance_norm():
    torch.manual_seed(0)
    net = UHDUNet(model_channel=2).eval()
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        full, tiled, whole = net(x), tiled_forward(net, x, 32, 8), tiled_forward(net, x, 64, 8)
    torch.testing.assert_close(whole, full)  # one tile = the full image
    assert tiled.shape == full.shape and 0 < (tiled - full).abs().max()


def test_bad_arguments_are_named():
    net = nn.Identity()
    with pytest.raises(ValueError, match='overlap 16 must be smaller than tile 16'):
        tiled_forward(net, torch.rand(1, 3, 40, 40), 16, 16)
    with pytest.raises(ValueError, match=r'expected 16x16 \(scale=2\)'):
        tiled_forward(net, torch.rand(1, 3, 40, 40), 8, 2, scale=2)
    with pytest.raises(ValueError, match='tile must be an int'):
        tiled_forward(net, torch.rand(1, 3, 40, 40), (8, 8, 8))
    assert F.l1_loss(tiled_forward(net, torch.ones(1, 1, 5, 5), 4, 1), torch.ones(1, 1, 5, 5)) == 0
