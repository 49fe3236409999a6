"""The per-image stopping rule of HCD (collaborative_downscale's stop_* options)."""
import pytest
import torch

from basicsr_lmar.ops.collaborative_downscaling import (RECOMMENDED_STOP, StoppingRule, collaborative_downscale,
                                                        mse_per_image, refine_perturbation, stopping_rule)
from basicsr_lmar.ops.rounding import quantize
from tests.ops.test_collaborative_downscaling import _photos, _rescalers, _tiny_irn

# a rule that stops these tiny problems part-way (some images early, some late, some never)
STOP = dict(stop_tolerance=0.02, stop_patience=2)


def _fields(result):
    return ('lr', 'lr_continuous', 'hr_perturbed', 'loss_hr', 'loss_lr', 'loss', 'gradient_steps_hr',
            'gradient_steps_lr')


@pytest.mark.parametrize('name, tolerance', [('irn', 1e-3), ('bicubic+sr', 1e-2)])
def test_stopping_in_a_batch_equals_per_image_runs(name, tolerance):
    rescaler = _rescalers(torch.float64)[name]
    hr = _photos(dtype=torch.float64)
    # tolerances at which these tiny problems stop images at different steps
    kwargs = dict(steps_hr=8, steps_lr=8, restarts=2, stop_tolerance=tolerance, stop_patience=1)
    batched = collaborative_downscale(rescaler, hr, seed=[3, 4, 5], **kwargs)
    steps = torch.cat([batched.gradient_steps_hr, batched.gradient_steps_lr])
    # the rule really stops some images and not others, so the active sub-batch shrinks mid-run
    assert steps.min() < 16 and len(set(steps.tolist())) > 1, steps
    for i in range(3):
        single = collaborative_downscale(rescaler, hr[i:i + 1], seed=3 + i, **kwargs)
        assert torch.equal(batched.lr[i], single.lr[0])
        for field in _fields(batched)[1:]:
            assert torch.allclose(getattr(batched, field)[i], getattr(single, field)[0], atol=1e-10, rtol=0), field
    reference = collaborative_downscale(rescaler, hr, seed=[3, 4, 5], batched=False, **kwargs)
    assert torch.equal(reference.lr, batched.lr)


def test_stopping_with_the_hcflow_adapter_in_a_batch_equals_per_image_runs():
    hcflow_arch = pytest.importorskip('basicsr_lmar.archs.hcflow_arch')
    net = hcflow_arch.HCFlowNet(scale=4, flow_steps=[1, 1], prior_steps=[1, 1], growth=2, rrdb_nf=4, rrdb_gc=2,
                                rrdb_blocks=1, hidden=4)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # perturbed: the zero-initialised prior heads would make the flow trivial
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    net.mark_actnorm_initialised()
    rescaler = hcflow_arch.HCFlowRescaler(net.double().eval(), heat=0.0)
    hr = _photos(dtype=torch.float64)
    kwargs = dict(steps_hr=5, steps_lr=5, stop_gain_fraction=0.3, stop_patience=1)  # stops after 3-4 steps
    batched = collaborative_downscale(rescaler, hr, seed=[3, 4, 5], **kwargs)
    reference = collaborative_downscale(rescaler, hr, seed=[3, 4, 5], batched=False, **kwargs)
    assert torch.equal(reference.lr, batched.lr)
    assert torch.equal(reference.gradient_steps_hr, batched.gradient_steps_hr)
    assert torch.equal(reference.gradient_steps_lr, batched.gradient_steps_lr)
    assert torch.all(batched.loss_lr <= batched.loss_lr_start)


def test_stopped_images_leave_the_batch():
    # the objective sees only the images still going: the batch it is called on shrinks
    hr = _photos(dtype=torch.float64)
    rescaler = _tiny_irn(dtype=torch.float64)
    sizes = []

    def objective(perturbed, index=None):
        sizes.append(perturbed.shape[0])
        target = hr if index is None else hr[index]
        assert index is None or len(index) == perturbed.shape[0]
        return mse_per_image(rescaler.upscale(rescaler.downscale(perturbed)), target)

    rule = StoppingRule(patience=1, tolerance=3e-4)  # stops two images at step 5, the third at 6
    delta, start, loss, spent = refine_perturbation(objective, hr, 10, 0.3, 20 / 255, stop=rule, return_steps=True,
                                                    generators=[torch.Generator().manual_seed(s) for s in (0, 1, 2)])
    assert sizes[0] == 3 and min(sizes) < 3 and sizes == sorted(sizes, reverse=True)
    # an image that took k steps was evaluated k + 1 times (the stopping check comes before the backward pass)
    assert sum(sizes) == int(spent.sum()) + 3 and spent.min() < 10
    with torch.no_grad():
        again = objective(hr + delta)
    assert torch.allclose(again, loss, atol=1e-12, rtol=0)  # the returned loss is the returned iterate's


@pytest.mark.parametrize('name', ['irn', 'bicubic+sr', 'bicubic'])
def test_stopping_is_never_worse_than_the_start(name):
    rescaler = _rescalers(torch.float64)[name]
    hr = _photos(dtype=torch.float64)
    # a large step that overshoots: the last iterate can be worse than the start, the returned one is not
    for kwargs in (STOP, dict(stop_gain_fraction=0.2, stop_patience=1)):
        result = collaborative_downscale(rescaler, hr, steps_hr=6, steps_lr=6, step_size=0.5, seed=0, **kwargs)
        assert torch.all(result.loss_hr <= result.loss_hr_start)
        assert torch.all(result.loss_lr <= result.loss_lr_start)
        with torch.no_grad():  # the stored LR is still a real 8-bit image, its loss that of its reconstruction
            assert torch.allclose(result.loss, mse_per_image(rescaler.upscale(result.lr), hr))
            assert torch.equal(result.lr, quantize(result.lr_continuous))


@pytest.mark.parametrize('kwargs', [
    dict(stop_tolerance=0.0, stop_patience=1),
    dict(stop_gain_fraction=0.0, stop_patience=2),
    dict(stop_tolerance=0.5, stop_patience=4),  # patience >= N: never checked
    dict(stop_tolerance=0.5, stop_gain_fraction=0.9, stop_patience=7),
])
def test_rule_that_never_fires_reproduces_fixed_n_exactly(kwargs):
    rescaler = _tiny_irn()  # float32: the very same computation, not just close
    hr = _photos()
    fixed = collaborative_downscale(rescaler, hr, steps_hr=4, steps_lr=4, restarts=2, seed=1, keep_best=True)
    stopping = collaborative_downscale(rescaler, hr, steps_hr=4, steps_lr=4, restarts=2, seed=1, **kwargs)
    for field in _fields(fixed):
        assert torch.equal(getattr(fixed, field), getattr(stopping, field)), field
    assert torch.equal(stopping.gradient_steps_hr, torch.full((3, ), 8))


def test_default_is_the_fixed_n_path():
    rescaler = _tiny_irn()
    hr = _photos()
    result = collaborative_downscale(rescaler, hr, steps_hr=3, steps_lr=2, seed=0)
    assert result.gradient_steps_hr.tolist() == [3] * 3 and result.gradient_steps_lr.tolist() == [2] * 3
    assert stopping_rule() is None
    rule = stopping_rule(stop_gain_fraction=0.1)  # without a window: the recommended one
    assert rule == StoppingRule(RECOMMENDED_STOP['stop_patience'], None, 0.1, RECOMMENDED_STOP['stop_min_steps'])


@pytest.mark.parametrize('min_steps', [0, 2, 3])
def test_min_steps_delays_the_first_check(min_steps):
    # a tolerance so large that the rule fires at its first check: every image then takes exactly
    # max(patience, min_steps) steps, and the result is fixed N = that with keep_best (the same computation)
    rescaler = _tiny_irn()
    hr = _photos()
    first = max(1, min_steps)
    stopping = collaborative_downscale(rescaler, hr, steps_hr=5, steps_lr=5, seed=1, stop_tolerance=1e9,
                                       stop_patience=1, stop_min_steps=min_steps)
    assert stopping.gradient_steps_hr.tolist() == [first] * 3 and stopping.gradient_steps_lr.tolist() == [first] * 3
    fixed = collaborative_downscale(rescaler, hr, steps_hr=first, steps_lr=first, seed=1, keep_best=True)
    for field in _fields(fixed)[:-2]:
        assert torch.equal(getattr(fixed, field), getattr(stopping, field)), field


def test_min_steps_defaults_to_the_recommended_one():
    rule = stopping_rule(stop_gain_fraction=0.1)
    assert rule.min_steps == RECOMMENDED_STOP['stop_min_steps']
    assert stopping_rule(stop_gain_fraction=0.1, stop_min_steps=0).first_check == rule.patience


def test_rule_semantics():
    rule = StoppingRule(patience=2, tolerance=0.01, gain_fraction=0.1)
    before = torch.tensor([1.0, 1.0, 1.0, 1.0])
    now = torch.tensor([0.995, 0.98, 0.995, 1.0])
    start = torch.tensor([2.0, 2.0, 1.0, 1.0])
    # 0: small vs loss and vs gain -> stop; 1: 2 % > 1 % -> go on; 2: 0.5 % of the loss but all of the gain -> go
    # on; 3: no gain, no improvement: 0 < 0 is false for the gain criterion -> go on
    assert rule.stops(before, now, start).tolist() == [True, False, False, False]
    assert StoppingRule(2, tolerance=0.01).stops(before, now, start).tolist() == [True, False, True, True]


@pytest.mark.parametrize('kwargs, key', [
    ({'stop_tolerance': -0.1}, 'stop_tolerance'),
    ({'stop_tolerance': 'small'}, 'stop_tolerance'),
    ({'stop_gain_fraction': -1}, 'stop_gain_fraction'),
    ({'stop_gain_fraction': float('nan')}, 'stop_gain_fraction'),
    ({'stop_tolerance': 0.01, 'stop_patience': 0}, 'stop_patience'),
    ({'stop_tolerance': 0.01, 'stop_patience': 1.5}, 'stop_patience'),
    ({'stop_patience': 3}, 'stop_patience'),  # a window without a criterion
    ({'stop_tolerance': 0.01, 'stop_min_steps': -1}, 'stop_min_steps'),
    ({'stop_tolerance': 0.01, 'stop_min_steps': True}, 'stop_min_steps'),
    ({'stop_min_steps': 5}, 'stop_min_steps'),  # a minimum without a criterion
])
def test_stop_option_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        collaborative_downscale(_rescalers()['bicubic'], _photos(), **kwargs)


# ---------------------------------------------------------------------------------------------- plumbing
def _hcd_opt(**hcd):
    return {'name': 'hcd_stop', 'model_type': 'HCDModel', 'num_gpu': 0, 'dist': False, 'rank': 0, 'is_train': False,
            'scale': 4, 'rescaler': {'type': 'BicubicSRRescaler', 'scale': 4}, 'path': {},
            'hcd': {'steps_hr': 6, 'steps_lr': 6, 'seed': 0, 'epsilon': 0.1, 'step_size': 0.02, **hcd}}


def test_hcd_model_passes_the_stopping_rule_to_the_op():
    from basicsr.models import build_model
    hr = _photos(32)
    rule = dict(stop_gain_fraction=0.3, stop_patience=1)
    model = build_model(_hcd_opt(**rule))
    model.feed_data({'gt': hr})
    model.test()
    expected = collaborative_downscale(model.rescaler, hr, steps_hr=6, steps_lr=6, seed=0, epsilon=0.1,
                                       step_size=0.02, **rule)
    assert torch.equal(model.lq, expected.lr)
    assert int(expected.gradient_steps_lr.min()) < 6  # the rule did stop something
    plain = collaborative_downscale(model.rescaler, hr, steps_hr=6, steps_lr=6, seed=0, epsilon=0.1, step_size=0.02)
    default = build_model(_hcd_opt())
    default.feed_data({'gt': hr})
    default.test()
    assert torch.equal(default.lq, plain.lr)  # no stop_* options: the fixed-N path


@pytest.mark.parametrize('hcd, key', [
    ({'stop_tolerance': -0.5}, 'stop_tolerance'),
    ({'stop_gain_fraction': 'half'}, 'stop_gain_fraction'),
    ({'stop_tolerance': 0.01, 'stop_patience': 0}, 'stop_patience'),
    ({'stop_patience': 2}, 'stop_patience'),
    ({'stop_gain_fraction': 0.1, 'stop_min_steps': -2}, 'stop_min_steps'),
    ({'stop_tolerence': 0.01}, 'stop_tolerance'),  # misspelt: the closest key is named
])
def test_hcd_model_stop_option_errors_name_the_key(hcd, key):
    from basicsr.models import build_model
    from basicsr_lmar.options import OptionError
    with pytest.raises(OptionError, match=rf"\[hcd\].*{key}"):
        build_model(_hcd_opt(**hcd))


def test_hcd_refine_stop_flags():
    from tests.scripts.tool_runs import load_script
    script = load_script('hcd_refine')

    class Args:
        stop, stop_tolerance, stop_gain_fraction, stop_patience, stop_min_steps = False, None, None, None, None

    assert script.stop_options(Args()) is None  # the option file's settings
    args = Args()
    args.stop = True
    assert script.stop_options(args) == RECOMMENDED_STOP
    args.stop_tolerance = 0.01  # a criterion given replaces the recommended one; the window stays
    assert script.stop_options(args) == dict(RECOMMENDED_STOP, stop_tolerance=0.01, stop_gain_fraction=None)
