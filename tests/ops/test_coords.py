import pytest
import torch
import torch.nn.functional as F

from basicsr_lmar.ops.coords import (cell_size, pixel_centre_grid, pixel_centres, relative_cell,
                                     relative_coords_to_nearest)


def test_pixel_centres_by_hand():
    torch.testing.assert_close(pixel_centres(1), torch.tensor([0.]))
    torch.testing.assert_close(pixel_centres(2), torch.tensor([-0.5, 0.5]))
    torch.testing.assert_close(pixel_centres(4, dtype=torch.float64),
                               torch.tensor([-0.75, -0.25, 0.25, 0.75], dtype=torch.float64))


def test_grid_is_ordered_y_then_x():
    grid = pixel_centre_grid(2, 3)
    assert grid.shape == (2, 3, 2) and grid.dtype == torch.float32
    torch.testing.assert_close(grid[..., 0], torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]))
    torch.testing.assert_close(grid[..., 1], torch.tensor([[-2 / 3, 0., 2 / 3]] * 2))


def test_grid_samples_pixels_exactly_with_align_corners_false():
    """Flipped to (x, y), the centre grid reads every pixel back unchanged through grid_sample."""
    image = torch.rand(1, 2, 5, 7, dtype=torch.float64)
    grid = pixel_centre_grid(5, 7, dtype=torch.float64).flip(-1)[None]
    for mode in ('nearest', 'bilinear', 'bicubic'):
        torch.testing.assert_close(F.grid_sample(image, grid, mode=mode, align_corners=False), image)


def test_cells_by_hand():
    assert cell_size(4, 8) == (0.5, 0.25)
    assert relative_cell((8, 12), (2, 3)) == (0.5, 0.5)  # 4x downscale: HR pixel is a quarter of an LR one
    assert relative_cell((4, 4), (4, 4)) == (2.0, 2.0)


def test_relative_coords_by_hand():
    """HR 4 -> LR 2 rows: HR centres -0.75, -0.25, 0.25, 0.75; nearest LR centres -0.5, -0.5, 0.5, 0.5;
    offsets times h_lr = 2: -0.5, 0.5, -0.5, 0.5. HR 3 -> LR 2 columns: centres -2/3, 0, 2/3; the middle one
    is exactly on the LR border and grid_sample's round-half-to-even picks LR pixel 0 (centre -0.5)."""
    rel = relative_coords_to_nearest((4, 3), (2, 2))
    assert rel.shape == (4, 3, 2)
    torch.testing.assert_close(rel[:, 0, 0], torch.tensor([-0.5, 0.5, -0.5, 0.5]))
    torch.testing.assert_close(rel[0, :, 1], torch.tensor([-1 / 3, 1.0, 1 / 3]))
    assert torch.equal(rel[:, 1, 0], rel[:, 0, 0]) and torch.equal(rel[2, :, 1], rel[0, :, 1])


def test_relative_coords_match_the_authors_two_dimensional_computation():
    """LMAR computes the offsets on full 2-D grids: grid_sample(LR centres, HR centres, 'nearest'), then
    (HR - nearest LR) scaled by the LR size. The separable helper must give the same numbers."""
    for hr_size, lr_size in [((20, 36), (9, 13)), ((16, 16), (4, 4)), ((7, 5), (7, 5)), ((6, 10), (11, 3))]:
        hr = pixel_centre_grid(*hr_size)
        lr = pixel_centre_grid(*lr_size).permute(2, 0, 1)[None]  # (1, 2, h, w) channels (y, x)
        nearest = F.grid_sample(lr, hr.flip(-1)[None], mode='nearest', align_corners=False)[0].permute(1, 2, 0)
        expected = (hr - nearest) * torch.tensor(lr_size, dtype=torch.float32)
        got = relative_coords_to_nearest(hr_size, lr_size)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert got.abs().max() <= 1 + 1e-6


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match='h must be a positive int, got 0'):
        pixel_centre_grid(0, 3)
    with pytest.raises(ValueError, match=r'hr_size must be a pair \(h, w\)'):
        relative_coords_to_nearest(8, (2, 2))
    with pytest.raises(ValueError, match=r'lr_size\[1\] must be a positive int, got 2.5'):
        relative_coords_to_nearest((8, 8), (2, 2.5))
