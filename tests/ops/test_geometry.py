import pytest
import torch

from basicsr_lmar.ops.geometry import crop_to_multiple, scaled_target_sizes


def test_crop_to_multiple_keeps_the_top_left_at_the_least_common_multiple():
    x = torch.arange(30 * 45, dtype=torch.float32).view(1, 1, 30, 45)
    cropped = crop_to_multiple(x, 8, 4)
    assert cropped.shape[-2:] == (24, 40)
    torch.testing.assert_close(cropped, x[..., :24, :40])
    assert crop_to_multiple(x, 3, 6).shape[-2:] == (30, 42)  # lcm 6
    assert crop_to_multiple(x, 5) is not x and crop_to_multiple(x, 5).shape[-2:] == (30, 45)


def test_crop_to_multiple_names_an_image_too_small():
    with pytest.raises(ValueError, match=r'tiny\.png is 40x3 pixels, smaller than the scale 4; leave it out'):
        crop_to_multiple(torch.zeros(3, 3, 40), 4, what='tiny.png', label='the scale 4')
    with pytest.raises(ValueError, match=r'image is 20x6 pixels, smaller than 8, the least common multiple of 8, 4'):
        crop_to_multiple(torch.zeros(6, 20), 8, 4)


def test_scaled_target_sizes_scale_per_axis_and_name_bad_entries():
    reference = (2160, 3840)
    assert scaled_target_sizes((1080, 1920), [[2160, 3840], [1080, 1920], [1079, 1920]], reference) == [
        (1080, 1920), (540, 960)]  # rounded, duplicates dropped
    assert scaled_target_sizes((3, 5), [[432, 768]], reference) == [(1, 1)]  # at least one pixel
    with pytest.raises(ValueError, match=r'target size \[4000, 3840\] is larger than reference_size'):
        scaled_target_sizes((100, 100), [[4000, 3840]], reference)
    with pytest.raises(ValueError, match='must be positive'):
        scaled_target_sizes((100, 100), [[0, 10]], reference)
    with pytest.raises(ValueError, match=r'must be a pair \[h, w\]'):
        scaled_target_sizes((100, 100), [[10]], reference)
