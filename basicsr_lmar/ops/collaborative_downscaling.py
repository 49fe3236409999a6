"""Hierarchical collaborative downscaling (HCD; Xu et al., ICCV 2023, Algorithm 1) for any rescaler.

A *rescaler* is any object with

- ``downscale(hr) -> lr``: (N, C, H, W) in [0, 1] -> (N, C, H/s, W/s), differentiable;
- ``upscale(lr) -> hr``: the way back, differentiable;
- ``scale``: the integer factor s.

Both calls must treat the images of a batch independently (no batch statistics) and be
deterministic (for IRN: a fixed z policy), so that a refined LR is reconstructed exactly as it was
optimised. HCD never changes the rescaler's weights; it refines the *input*:

1. HR stage, ``steps_hr`` steps on a perturbation d_y of the HR image y minimising
   ``MSE(up(Q(down(y + d_y))), y)`` (Q: 8-bit quantisation with a straight-through gradient, as the
   authors' downscale);
2. x = Q(down(y + d_y)); LR stage, ``steps_lr`` steps on d_x minimising ``MSE(up(x + d_x), y)``;
3. the stored LR is Q(x + d_x): a real 8-bit image.

Each step is projected (normalised) gradient descent, per image:
``d <- Proj_eps(d - step_size * g / ||g||_2)`` for ``norm='l2'`` (``sign(g)`` for ``'linf'``), then
``d`` is clamped so that the perturbed image stays in [0, 1]. The start is random inside the ball
(as the authors' code), ``restarts`` starts are tried and the best final loss is kept per image.

:func:`collaborative_downscale` is batched (the fast path); ``batched=False`` runs the same
computation one image at a time (the reference path). With a ``seed``, each image draws its random
starts from its own generator, so a batched run equals per-image runs.
"""
import contextlib
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, Union, runtime_checkable

import torch
from torch import nn

from basicsr_lmar.ops.rounding import quantize, quantize_ste

NORMS = ('l2', 'linf')


@runtime_checkable
class Rescaler(Protocol):
    """The rescaler protocol: a differentiable downscale/upscale pair with an integer scale."""

    scale: int

    def downscale(self, hr: torch.Tensor) -> torch.Tensor:
        ...

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        ...


@dataclass
class CollaborativeDownscaling:
    """Result of :func:`collaborative_downscale`; per-image losses are (N,) tensors (MSE)."""

    lr: torch.Tensor  # the stored LR: 8-bit quantised (lr * 255 holds integers)
    lr_continuous: torch.Tensor  # x + d_x before the final quantisation
    hr_perturbed: torch.Tensor  # y + d_y
    loss_hr_start: torch.Tensor  # HR-stage objective at the random start (best restart)
    loss_hr: torch.Tensor  # HR-stage objective at the returned d_y
    loss_lr_start: torch.Tensor  # LR-stage objective at the random start (best restart)
    loss_lr: torch.Tensor  # LR-stage objective at the returned d_x (before the final quantisation)
    loss: torch.Tensor  # MSE(up(lr), y) for the stored, quantised LR


def check_hcd_options(steps_hr, steps_lr, epsilon, step_size, norm, restarts, levels=255):
    """Raises ValueError naming the option at fault."""
    for key, value in (('steps_hr', steps_hr), ('steps_lr', steps_lr)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f'HCD option {key!r} must be an integer >= 0 (number of gradient steps), got {value!r}')
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f'HCD option \'restarts\' must be an integer >= 1, got {restarts!r}')
    if not isinstance(epsilon, (int, float)) or epsilon < 0:
        raise ValueError(f'HCD option \'epsilon\' (radius of the perturbation ball) must be >= 0, got {epsilon!r}')
    if not isinstance(step_size, (int, float)) or step_size <= 0:
        raise ValueError(f'HCD option \'step_size\' (alpha) must be > 0, got {step_size!r}')
    if norm not in NORMS:
        raise ValueError(f'HCD option \'norm\' must be one of {list(NORMS)}, got {norm!r}')
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f'HCD option \'levels\' must be an integer >= 1 (255 for 8-bit), got {levels!r}')


def _per_image(values, shape):
    return values.reshape((-1, ) + (1, ) * (len(shape) - 1))


def _flat_norm(x):
    return x.flatten(1).norm(p=2, dim=1)


def project(delta, image, epsilon, norm):
    """Projects each image's ``delta`` onto its eps-ball, then clamps ``image + delta`` to [0, 1]."""
    if norm == 'l2':  # rescales the images whose norm exceeds eps by eps / (norm + 1e-7), as the authors
        delta = delta.flatten(1).renorm(p=2, dim=0, maxnorm=epsilon).view_as(delta)
    else:
        delta = delta.clamp(-epsilon, epsilon)
    return torch.max(torch.min(delta, 1 - image), -image)


def random_start(image, epsilon, norm, generators=None):
    """A random point of each image's eps-ball (l2: uniform radius, Gaussian direction), clamped so
    that ``image + delta`` lies in [0, 1]. ``generators``: one ``torch.Generator`` per image or None."""
    shape = image.shape
    if generators is None:  # the global RNG, drawn in the order of the authors' code
        to = dict(dtype=image.dtype, device=image.device)
        if norm == 'l2':
            noise, uniform = torch.randn(shape, **to), torch.rand((shape[0], ), **to)
        else:
            box = torch.rand(shape, **to)
    else:
        noise, uniform, box = [], [], []
        for generator in generators:
            if norm == 'l2':
                noise.append(torch.randn(shape[1:], generator=generator, dtype=torch.float64))
                uniform.append(torch.rand((), generator=generator, dtype=torch.float64))
            else:
                box.append(torch.rand(shape[1:], generator=generator, dtype=torch.float64))
        to = dict(dtype=image.dtype, device=image.device)
        noise = torch.stack(noise).to(**to) if noise else None
        uniform = torch.stack(uniform).to(**to) if uniform else None
        box = torch.stack(box).to(**to) if box else None
    if norm == 'l2':
        radius = uniform / _flat_norm(noise).clamp_min(1e-30) * epsilon  # the authors' order of operations
        delta = noise * _per_image(radius, shape)
    else:
        delta = (2 * box - 1) * epsilon
    return torch.max(torch.min(delta, 1 - image), -image)


@contextlib.contextmanager
def _frozen(module):
    """Temporarily stops gradients to a module's parameters (only the perturbation needs them)."""
    params = [p for p in module.parameters() if p.requires_grad] if isinstance(module, nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def refine_perturbation(objective, image, steps, epsilon, step_size, norm='l2', restarts=1, generators=None,
                        keep_best=False):
    """Projected normalised gradient descent on a perturbation of ``image``, per image.

    ``objective(perturbed) -> (N,)`` per-image losses. Returns ``(delta, start_loss, loss)`` for the best
    restart of each image: the perturbation, the loss at its random start and the loss at ``delta``.
    ``keep_best``: return the best iterate of each run instead of the last one (never worse than the start).
    """
    n = image.shape[0]
    best_delta = torch.zeros_like(image)
    best_loss = torch.full((n, ), float('inf'), dtype=image.dtype, device=image.device)
    best_start = torch.full_like(best_loss, float('inf'))
    for _ in range(restarts):
        delta = random_start(image, epsilon, norm, generators)
        run_best_delta, run_best_loss, start_loss = delta, None, None
        for _ in range(steps):
            delta = delta.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = objective(image + delta)
                grad, = torch.autograd.grad(loss.sum(), delta)
            loss = loss.detach()
            if start_loss is None:
                start_loss = loss
            if keep_best:
                better = loss < run_best_loss if run_best_loss is not None else torch.ones_like(loss, dtype=torch.bool)
                run_best_delta = torch.where(_per_image(better, image.shape), delta.detach(), run_best_delta)
                run_best_loss = loss if run_best_loss is None else torch.where(better, loss, run_best_loss)
            with torch.no_grad():
                if norm == 'l2':
                    direction = grad / _per_image(_flat_norm(grad) + 1e-10, grad.shape)
                else:
                    direction = grad.sign()
                delta = project(delta - step_size * direction, image, epsilon, norm)
        with torch.no_grad():
            loss = objective(image + delta)
        if start_loss is None:
            start_loss = loss
        if keep_best and run_best_loss is not None:
            better = loss < run_best_loss
            delta = torch.where(_per_image(better, image.shape), delta, run_best_delta)
            loss = torch.where(better, loss, run_best_loss)
        improved = loss < best_loss
        best_delta = torch.where(_per_image(improved, image.shape), delta, best_delta)
        best_start = torch.where(improved, start_loss, best_start)
        best_loss = torch.where(improved, loss, best_loss)
    return best_delta, best_start, best_loss


def mse_per_image(output, target):
    return (output - target).pow(2).flatten(1).mean(dim=1)


def _generators(seed, n):
    if seed is None:
        return None
    seeds = [seed] * n if isinstance(seed, int) else list(seed)
    if len(seeds) != n:
        raise ValueError(f'HCD: got {len(seeds)} seeds for a batch of {n} images; give one int or one per image')
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def _collaborative_downscale_batch(rescaler, hr, steps_hr, steps_lr, epsilon, step_size, norm, restarts, seed,
                                   keep_best, levels, quantize_hr_stage):
    generators = _generators(seed, hr.shape[0])
    inner_quantize = (lambda x: quantize_ste(x, levels)) if quantize_hr_stage else (lambda x: x)

    def hr_objective(perturbed_hr):
        return mse_per_image(rescaler.upscale(inner_quantize(rescaler.downscale(perturbed_hr))), hr)

    def lr_objective(perturbed_lr):
        return mse_per_image(rescaler.upscale(perturbed_lr), hr)

    with _frozen(rescaler):
        if steps_hr > 0:
            delta_hr, loss_hr_start, loss_hr = refine_perturbation(hr_objective, hr, steps_hr, epsilon, step_size,
                                                                   norm, restarts, generators, keep_best)
        else:  # no HR stage: the unperturbed HR image
            delta_hr = torch.zeros_like(hr)
            with torch.no_grad():
                loss_hr_start = loss_hr = hr_objective(hr)
        hr_perturbed = hr + delta_hr
        with torch.no_grad():
            lr_start = quantize(rescaler.downscale(hr_perturbed), levels)
        if steps_lr > 0:
            delta_lr, loss_lr_start, loss_lr = refine_perturbation(lr_objective, lr_start, steps_lr, epsilon, step_size,
                                                                   norm, restarts, generators, keep_best)
        else:
            delta_lr = torch.zeros_like(lr_start)
            with torch.no_grad():
                loss_lr_start = loss_lr = lr_objective(lr_start)
        lr_continuous = lr_start + delta_lr
        lr = quantize(lr_continuous, levels)
        with torch.no_grad():
            loss = lr_objective(lr)
    return CollaborativeDownscaling(lr, lr_continuous, hr_perturbed, loss_hr_start, loss_hr, loss_lr_start, loss_lr,
                                    loss)


def collaborative_downscale(rescaler: Rescaler,
                            hr: torch.Tensor,
                            steps_hr: int = 15,
                            steps_lr: int = 15,
                            epsilon: float = 0.3,
                            step_size: float = 20 / 255,
                            norm: str = 'l2',
                            restarts: int = 1,
                            seed: Optional[Union[int, Sequence[int]]] = None,
                            keep_best: bool = False,
                            levels: int = 255,
                            quantize_hr_stage: bool = True,
                            batched: bool = True) -> CollaborativeDownscaling:
    """HCD: refines the HR image, then the LR image, so that ``rescaler.upscale`` reconstructs ``hr`` better.

    Args:
        rescaler: an object of the rescaler protocol (put its networks in eval mode first).
        hr: (N, C, H, W) images in [0, 1], H and W multiples of ``rescaler.scale``.
        steps_hr, steps_lr: N_y and N_x, gradient steps of each stage (paper: 15 and 15).
        epsilon: radius of the per-image perturbation ball (paper: 0.3, l2 over the whole image).
        step_size: alpha (paper: 20/255).
        norm: ``'l2'`` (paper) or ``'linf'``.
        restarts: random starts per stage; the best final loss is kept per image.
        seed: None (global RNG), an int (every image draws its starts from a generator with this seed)
            or one int per image. With a seed, batched and per-image runs agree.
        keep_best: return the best iterate of each run rather than the last (the paper: the last).
        levels: quantisation levels of the stored LR (255: 8-bit).
        quantize_hr_stage: quantise (straight-through) the LR inside the HR-stage objective (as the authors).
        batched: False runs the images one at a time (the reference path; same results with a seed).
    """
    check_hcd_options(steps_hr, steps_lr, epsilon, step_size, norm, restarts, levels)
    if hr.dim() != 4:
        raise ValueError(f'collaborative_downscale: hr must be (N, C, H, W), got shape {tuple(hr.shape)}')
    scale = rescaler.scale
    if hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f'collaborative_downscale: HR size {tuple(hr.shape[-2:])} is not a multiple of the '
                         f'rescaler scale {scale}; crop the image first')
    hr = hr.detach()
    args = (steps_hr, steps_lr, float(epsilon), float(step_size), norm, restarts)
    if batched or hr.shape[0] == 1:
        return _collaborative_downscale_batch(rescaler, hr, *args, seed, keep_best, levels, quantize_hr_stage)
    seeds = [seed] * hr.shape[0] if seed is None or isinstance(seed, int) else list(seed)
    if len(seeds) != hr.shape[0]:
        raise ValueError(f'HCD: got {len(seeds)} seeds for a batch of {hr.shape[0]} images')
    parts = [
        _collaborative_downscale_batch(rescaler, hr[i:i + 1], *args, seeds[i], keep_best, levels, quantize_hr_stage)
        for i in range(hr.shape[0])
    ]
    fields = CollaborativeDownscaling.__dataclass_fields__
    return CollaborativeDownscaling(*[torch.cat([getattr(part, field) for part in parts]) for field in fields])
