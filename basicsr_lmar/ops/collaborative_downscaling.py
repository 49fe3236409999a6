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

**Stopping when converged** (beyond the paper; off by default, the fixed-N path above is unchanged).
With ``stop_tolerance`` and/or ``stop_gain_fraction``, each stage stops an image once its best loss has
stopped improving: with B_k the best loss over evaluations 0..k of a run, L_0 the loss at its random
start, W = ``stop_patience``, M = ``stop_min_steps`` and the window improvement
D_k = B_{k-W} - B_k, the image stops at evaluation k >= max(W, M) (so after at least M steps) when every
given criterion holds:

- ``stop_tolerance`` t (relative to the loss): D_k < t * B_{k-W};
- ``stop_gain_fraction`` f (relative to the gain so far): D_k < f * (L_0 - B_k).

A stopped image keeps its best iterate (the stopping path always returns the best iterate, i.e. implies
``keep_best``) and leaves the batch: the rule is checked between the forward and the backward pass of
evaluation k (when every image of the batch stops, no backward is run), and the passes of the later
steps run on the sub-batch of the images still going, so stopped images cost nothing more. t = 0 or f = 0 (strict
inequalities) or W or M >= the number of steps never stop, and then give the ``keep_best=True`` fixed-N
result exactly. Each image's decisions depend on its own losses only, so with a seed a batched run still
equals per-image runs. :data:`RECOMMENDED_STOP` holds the settings chosen on the validation split
(docs/hcd.md).
"""
import contextlib
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, Union, runtime_checkable

import torch
from torch import nn

from basicsr_lmar.ops.rounding import quantize, quantize_ste
from basicsr_lmar.options import Option, OptionError, OptionSchema

NORMS = ('l2', 'linf')

# The stopping rule's settings chosen on the validation split (scripts/benchmarks/bench_hcd_stopping.py,
# docs/hcd.md); used by HCDModel's and hcd_refine's ``stop`` switch. Not a default: HCD runs its fixed N
# unless stopping is asked for.
RECOMMENDED_STOP = {'stop_patience': 2, 'stop_tolerance': None, 'stop_gain_fraction': 0.02, 'stop_min_steps': 0}


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
    # gradient steps taken by each image, summed over restarts: steps_hr * restarts (steps_lr * restarts) on
    # the fixed-N path, fewer for images that stopped early
    gradient_steps_hr: Optional[torch.Tensor] = None
    gradient_steps_lr: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class StoppingRule:
    """Per-image stopping of a stage (see the module docstring); built by :func:`stopping_rule`."""

    patience: int
    tolerance: Optional[float] = None
    gain_fraction: Optional[float] = None
    min_steps: int = 0

    @property
    def first_check(self):
        """The first evaluation at which an image may stop (it has then taken that many steps)."""
        return max(self.patience, self.min_steps)

    def stops(self, best_before, best_now, start):
        """Which images stop: ``best_before`` = B_{k-W}, ``best_now`` = B_k, ``start`` = L_0 (all (n,))."""
        improvement = best_before - best_now
        stop = torch.ones_like(improvement, dtype=torch.bool)
        if self.tolerance is not None:
            stop &= improvement < self.tolerance * best_before
        if self.gain_fraction is not None:
            stop &= improvement < self.gain_fraction * (start - best_now)
        return stop


#: The options of :func:`collaborative_downscale` and their rules, declared once: the op checks its arguments
#: against them and ``HCDModel``'s ``hcd`` section declares them (with the model's own keys added).
HCD_OPTIONS = {
    'steps_hr': Option(15, type=int, min=0, doc='N_y, gradient steps on the HR image'),
    'steps_lr': Option(15, type=int, min=0, doc='N_x, gradient steps on the LR image'),
    'epsilon': Option(0.3, min=0, doc='radius of the per-image perturbation ball'),
    'step_size': Option(20 / 255, min=0, exclusive_min=True, doc='alpha'),
    'norm': Option('l2', choices=NORMS),
    'restarts': Option(1, type=int, min=1, doc='random starts per stage, best kept per image'),
    # per-image stopping (off when both criteria are ~: the fixed N of the paper); see docs/hcd.md
    'stop_tolerance': Option(None, type=(float, int), min=0, nullable=True,
                             doc='stop an image when its best loss improved by less than this fraction of '
                             'itself over the last stop_patience steps'),
    'stop_gain_fraction': Option(None, type=(float, int), min=0, nullable=True,
                                 doc='stop an image when the last window improved its loss by less than this '
                                 'fraction of its gain so far'),
    'stop_patience': Option(None, type=int, min=1, nullable=True,
                            doc='window (steps) of the stopping rule; ~ for the recommended one'),
    'stop_min_steps': Option(None, type=int, min=0, nullable=True,
                             doc='steps every image takes before the stopping rule may stop it; ~ for none'),
}

STOP_KEYS = ('stop_tolerance', 'stop_gain_fraction', 'stop_patience', 'stop_min_steps')

_ARGUMENTS = OptionSchema('collaborative_downscale', {
    **HCD_OPTIONS, 'levels': Option(255, type=int, min=1, doc='quantisation levels of the stored LR (255: 8-bit)')})


def check_hcd_options(**options):
    """Raises an :class:`OptionError` (a ``ValueError``) naming the option at fault: the rules of
    :data:`HCD_OPTIONS`, then a stopping window or minimum given without a criterion to stop on."""
    _ARGUMENTS.validate(options)
    if options.get('stop_tolerance') is None and options.get('stop_gain_fraction') is None:
        for key in ('stop_patience', 'stop_min_steps'):
            if options.get(key) is not None:
                raise OptionError(f'HCD option {key!r} is set but no stopping criterion is: also set '
                                  f'\'stop_tolerance\' and/or \'stop_gain_fraction\' (or remove {key} for the '
                                  'fixed number of steps)')


def stopping_rule(stop_patience=None, stop_tolerance=None, stop_gain_fraction=None, stop_min_steps=None):
    """The :class:`StoppingRule` of the options, or None (the fixed-N path) when no criterion is given.
    Without ``stop_patience`` / ``stop_min_steps`` the recommended window / minimum is used."""
    check_hcd_options(stop_patience=stop_patience, stop_tolerance=stop_tolerance,
                      stop_gain_fraction=stop_gain_fraction, stop_min_steps=stop_min_steps)
    if stop_tolerance is None and stop_gain_fraction is None:
        return None
    patience = RECOMMENDED_STOP['stop_patience'] if stop_patience is None else stop_patience
    return StoppingRule(patience, None if stop_tolerance is None else float(stop_tolerance),
                        None if stop_gain_fraction is None else float(stop_gain_fraction),
                        RECOMMENDED_STOP['stop_min_steps'] if stop_min_steps is None else stop_min_steps)


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


def _descent_direction(grad, norm):
    if norm == 'l2':
        return grad / _per_image(_flat_norm(grad) + 1e-10, grad.shape)
    return grad.sign()


def _run_with_stopping(objective, image, start, steps, epsilon, step_size, norm, rule):
    """One run from ``start`` with per-image stopping; images that stop leave the active sub-batch.

    Returns the best iterate of each image, its loss, the loss at the start and the gradient steps taken
    per image (an image that stops at evaluation k took k steps and was evaluated k + 1 times; one that
    runs to the end took ``steps`` and was evaluated ``steps + 1`` times)."""
    n = image.shape[0]
    best_delta = start.clone()
    best_loss = torch.full((n, ), float('inf'), dtype=image.dtype, device=image.device)
    start_loss = torch.full_like(best_loss, float('inf'))
    spent = torch.zeros(n, dtype=torch.long, device=image.device)
    history = []  # B_k of every image (values of stopped images are frozen and unused)
    index = torch.arange(n, device=image.device)  # the active images
    full = True  # all images active: call the objective on the whole batch (no index copies)
    delta, sub_image = start, image

    def record(loss, delta):
        better = loss < best_loss[index]
        best_loss[index] = torch.where(better, loss, best_loss[index])
        best_delta[index] = torch.where(_per_image(better, delta.shape), delta, best_delta[index])

    for k in range(steps):
        delta = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            graph = objective(sub_image + delta, None if full else index)
        loss = graph.detach()
        if k == 0:
            start_loss[index] = loss
        record(loss, delta.detach())
        history.append(best_loss.clone())
        keep = None
        if k >= rule.first_check:  # decided before the backward pass: an image that stops costs no gradient
            keep = ~rule.stops(history[k - rule.patience][index], best_loss[index], start_loss[index])
            if not bool(keep.any()):
                index = index[keep]
                break
        grad, = torch.autograd.grad(graph.sum(), delta)
        with torch.no_grad():
            delta = project(delta - step_size * _descent_direction(grad, norm), sub_image, epsilon, norm)
        if keep is not None and not bool(keep.all()):
            index, delta, sub_image, full = index[keep], delta[keep], sub_image[keep], False
        spent[index] += 1
    if index.numel():
        with torch.no_grad():
            loss = objective(sub_image + delta, None if full else index)
        if steps == 0:
            start_loss[index] = loss
        record(loss, delta)
    return best_delta, best_loss, start_loss, spent


def refine_perturbation(objective, image, steps, epsilon, step_size, norm='l2', restarts=1, generators=None,
                        keep_best=False, stop=None, return_steps=False):
    """Projected normalised gradient descent on a perturbation of ``image``, per image.

    ``objective(perturbed) -> (N,)`` per-image losses. Returns ``(delta, start_loss, loss)`` for the best
    restart of each image: the perturbation, the loss at its random start and the loss at ``delta``
    (with ``return_steps``, also the gradient steps taken per image, summed over restarts).
    ``keep_best``: return the best iterate of each run instead of the last one (never worse than the start).
    ``stop``: a :class:`StoppingRule` (:func:`stopping_rule`): per-image stopping, best iterates; then the
    objective is called as ``objective(perturbed, index)`` where ``index`` (a LongTensor of batch
    positions, or None for the whole batch) says which images ``perturbed`` holds.
    """
    n = image.shape[0]
    best_delta = torch.zeros_like(image)
    best_loss = torch.full((n, ), float('inf'), dtype=image.dtype, device=image.device)
    best_start = torch.full_like(best_loss, float('inf'))
    spent = torch.zeros(n, dtype=torch.long, device=image.device)
    for _ in range(restarts):
        start = random_start(image, epsilon, norm, generators)
        if stop is None:
            delta, loss, start_loss = _run_fixed(objective, image, start, steps, epsilon, step_size, norm, keep_best)
            spent += steps
        else:
            delta, loss, start_loss, run_spent = _run_with_stopping(objective, image, start, steps, epsilon,
                                                                    step_size, norm, stop)
            spent += run_spent
        improved = loss < best_loss
        best_delta = torch.where(_per_image(improved, image.shape), delta, best_delta)
        best_start = torch.where(improved, start_loss, best_start)
        best_loss = torch.where(improved, loss, best_loss)
    if return_steps:
        return best_delta, best_start, best_loss, spent
    return best_delta, best_start, best_loss


def _run_fixed(objective, image, start, steps, epsilon, step_size, norm, keep_best):
    """One run of exactly ``steps`` steps from ``start`` (the paper's path); returns the last iterate (or,
    ``keep_best``, the best one), its loss and the loss at the start."""
    delta = start
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
            delta = project(delta - step_size * _descent_direction(grad, norm), image, epsilon, norm)
    with torch.no_grad():
        loss = objective(image + delta)
    if start_loss is None:
        start_loss = loss
    if keep_best and run_best_loss is not None:
        better = loss < run_best_loss
        delta = torch.where(_per_image(better, image.shape), delta, run_best_delta)
        loss = torch.where(better, loss, run_best_loss)
    return delta, loss, start_loss


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
                                   keep_best, levels, quantize_hr_stage, stop=None):
    generators = _generators(seed, hr.shape[0])
    inner_quantize = (lambda x: quantize_ste(x, levels)) if quantize_hr_stage else (lambda x: x)

    def target(index):
        return hr if index is None else hr[index]

    def hr_objective(perturbed_hr, index=None):
        return mse_per_image(rescaler.upscale(inner_quantize(rescaler.downscale(perturbed_hr))), target(index))

    def lr_objective(perturbed_lr, index=None):
        return mse_per_image(rescaler.upscale(perturbed_lr), target(index))

    never = torch.zeros(hr.shape[0], dtype=torch.long, device=hr.device)
    with _frozen(rescaler):
        if steps_hr > 0:
            delta_hr, loss_hr_start, loss_hr, spent_hr = refine_perturbation(
                hr_objective, hr, steps_hr, epsilon, step_size, norm, restarts, generators, keep_best, stop, True)
        else:  # no HR stage: the unperturbed HR image
            delta_hr, spent_hr = torch.zeros_like(hr), never
            with torch.no_grad():
                loss_hr_start = loss_hr = hr_objective(hr)
        hr_perturbed = hr + delta_hr
        with torch.no_grad():
            lr_start = quantize(rescaler.downscale(hr_perturbed), levels)
        if steps_lr > 0:
            delta_lr, loss_lr_start, loss_lr, spent_lr = refine_perturbation(
                lr_objective, lr_start, steps_lr, epsilon, step_size, norm, restarts, generators, keep_best, stop,
                True)
        else:
            delta_lr, spent_lr = torch.zeros_like(lr_start), never
            with torch.no_grad():
                loss_lr_start = loss_lr = lr_objective(lr_start)
        lr_continuous = lr_start + delta_lr
        lr = quantize(lr_continuous, levels)
        with torch.no_grad():
            loss = lr_objective(lr)
    return CollaborativeDownscaling(lr, lr_continuous, hr_perturbed, loss_hr_start, loss_hr, loss_lr_start, loss_lr,
                                    loss, spent_hr, spent_lr)


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
                            batched: bool = True,
                            stop_tolerance: Optional[float] = None,
                            stop_gain_fraction: Optional[float] = None,
                            stop_patience: Optional[int] = None,
                            stop_min_steps: Optional[int] = None) -> CollaborativeDownscaling:
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
        stop_tolerance, stop_gain_fraction, stop_patience, stop_min_steps: the per-image stopping rule of both
            stages (module docstring; :data:`RECOMMENDED_STOP`). None for both criteria (the default): the fixed
            ``steps_hr``/``steps_lr`` of the paper. With a criterion the steps are the maximum, each image keeps
            its best iterate, and ``gradient_steps_hr``/``_lr`` of the result say what each image used.
    """
    check_hcd_options(steps_hr=steps_hr, steps_lr=steps_lr, epsilon=epsilon, step_size=step_size, norm=norm,
                      restarts=restarts, levels=levels, stop_patience=stop_patience, stop_tolerance=stop_tolerance,
                      stop_gain_fraction=stop_gain_fraction, stop_min_steps=stop_min_steps)
    stop = stopping_rule(stop_patience, stop_tolerance, stop_gain_fraction, stop_min_steps)
    if hr.dim() != 4:
        raise ValueError(f'collaborative_downscale: hr must be (N, C, H, W), got shape {tuple(hr.shape)}')
    scale = rescaler.scale
    if hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f'collaborative_downscale: HR size {tuple(hr.shape[-2:])} is not a multiple of the '
                         f'rescaler scale {scale}; crop the image first')
    hr = hr.detach()
    args = (steps_hr, steps_lr, float(epsilon), float(step_size), norm, restarts)
    if batched or hr.shape[0] == 1:
        return _collaborative_downscale_batch(rescaler, hr, *args, seed, keep_best, levels, quantize_hr_stage, stop)
    seeds = [seed] * hr.shape[0] if seed is None or isinstance(seed, int) else list(seed)
    if len(seeds) != hr.shape[0]:
        raise ValueError(f'HCD: got {len(seeds)} seeds for a batch of {hr.shape[0]} images')
    parts = [
        _collaborative_downscale_batch(rescaler, hr[i:i + 1], *args, seeds[i], keep_best, levels, quantize_hr_stage,
                                       stop) for i in range(hr.shape[0])
    ]
    fields = CollaborativeDownscaling.__dataclass_fields__
    return CollaborativeDownscaling(*[torch.cat([getattr(part, field) for part in parts]) for field in fields])
