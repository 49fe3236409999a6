"""The least-squares LR target (``--lr-target-weight``) and the kernel teacher (``--teacher-weight``) of
``scripts/benchmarks/bench_car_quality.py``."""

import torch

from tests.scripts.tool_runs import load_benchmark

def load_script():
    return load_benchmark('bench_car_quality')


def test_batched_least_squares_lr_is_the_per_image_one_and_is_optimal():
    bench = load_script()
    torch.manual_seed(0)
    crops = torch.nn.functional.avg_pool2d(torch.rand(3, 3, 34, 34), 3, stride=1)
    target = bench.least_squares_lr(crops, 4)
    assert target.shape == (3, 3, 8, 8)
    for image, lr in zip(crops, target):
        torch.testing.assert_close(lr, bench.least_squares_lr(image[None], 4)[0], atol=1e-5, rtol=0)
    upscaler = bench.BicubicUpscaler(4)
    error_target = (upscaler(target) - crops).square().mean()
    error_bicubic = (upscaler(bench.bicubic_downscale(crops, 4)) - crops).square().mean()
    assert error_target < error_bicubic
    for _ in range(5):  # least squares: every perturbation of the target reconstructs worse
        nudged = target + 1e-2 * torch.randn_like(target)
        assert (upscaler(nudged) - crops).square().mean() > error_target


def test_teacher_kernels_are_normalised_and_move_the_lr_towards_the_least_squares_lr():
    bench = load_script()
    torch.manual_seed(0)
    crops = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 34, 34), 3, stride=1)
    target = bench.least_squares_lr(crops, 4).clamp(0, 1)
    errors = []
    for steps in (0, 1, 6):
        kernels = bench.teacher_kernels(crops, 4, steps)
        assert kernels.shape == (2, 13 * 13, 8, 8)
        assert kernels.min() >= 0
        torch.testing.assert_close(kernels.sum(1), torch.ones(2, 8, 8))
        zeros = torch.zeros_like(kernels)
        lr = bench.adaptive_resample(crops, kernels, zeros, zeros, 4)
        errors.append(float((lr - target).square().mean()))
    assert errors[0] > errors[1] > errors[2]
