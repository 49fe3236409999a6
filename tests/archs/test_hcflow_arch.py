"""HCFlowNet: the authors' x4 parameter counts, exact invertibility (fp32, fp64), ActNorm init semantics."""
import pytest
import torch

from basicsr_lmar.archs.hcflow_arch import HCFlowNet, HCFlowRescaler, InvertibleConv1x1

TINY = dict(growth=4, rrdb_nf=8, rrdb_gc=4, rrdb_blocks=1, hidden=8)


def tiny(scale=4, **kwargs):
    levels = {2: 1, 4: 2}[scale]
    return HCFlowNet(scale=scale, flow_steps=[2] * levels, prior_steps=[2] * levels, **{**TINY, **kwargs})


def randomise(net, std=0.05, seed=0):
    """Every trainable parameter perturbed (the zero-initialised layers would make the flow trivial)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(std * torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.dtype))
    net.mark_actnorm_initialised()
    return net


def test_x4_parameter_counts_equal_the_authors():
    net = HCFlowNet(scale=4)  # defaults: the authors' FlowNet_Rescaling_x4 (K 14, L 2, after_flowstep [6, 6])
    assert sum(p.numel() for p in net.parameters()) == 4_396_350
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 4_396_206
    frozen = [name for name, p in net.named_parameters() if not p.requires_grad]
    assert frozen == ['levels.0.haar.weight', 'levels.1.haar.weight']
    assert len(net.state_dict()) == 532 and list(net.buffers()) == []
    assert len(net.actnorms()) == 52


def test_x2_is_one_level_split_3_9():
    net = HCFlowNet(scale=2, flow_steps=[8], prior_steps=[6])
    assert len(net.levels) == 1 and net.latent_shapes((1, 3, 5, 7)) == [(1, 9, 5, 7)]
    assert HCFlowNet().latent_shapes((2, 3, 5, 7)) == [(2, 6, 10, 14), (2, 21, 5, 7)]


@pytest.mark.parametrize('scale', [2, 4])
@pytest.mark.parametrize('dtype, tol', [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_reverse_with_the_true_latents_is_exact(scale, dtype, tol):
    torch.manual_seed(0)
    net = randomise(tiny(scale)).to(dtype)
    hr = torch.rand(2, 3, 16, 24, dtype=dtype)
    lr, latents = net(hr, clamp=False)
    assert lr.shape == (2, 3, 16 // scale, 24 // scale) and lr.dtype == dtype
    assert [tuple(z.shape) for z in latents] == net.latent_shapes(lr.shape)
    back = net(lr, rev=True, latents=latents, clamp=False)
    assert (back - hr).abs().max() < tol


def test_invertible_1x1_conv_inverts_in_float64():
    conv = InvertibleConv1x1(5).double()
    x = torch.randn(1, 5, 3, 3, dtype=torch.float64)
    assert torch.allclose(conv(conv(x), rev=True), x, atol=1e-14)


def test_heat_zero_is_deterministic_and_heat_samples_from_the_prior():
    torch.manual_seed(0)
    net = randomise(tiny()).eval()
    lr = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        a, b = net(lr, rev=True), net(lr, rev=True)
        assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        hot1, hot2 = net(lr, rev=True, heat=1.0, generator=g1), net(lr, rev=True, heat=1.0, generator=g2)
        assert torch.equal(hot1, hot2) and not torch.equal(hot1, a)


def test_actnorm_initialises_from_the_first_batch_only():
    torch.manual_seed(0)
    net = tiny()
    assert not net.actnorm_initialised
    hr = torch.rand(2, 3, 16, 16)
    assert net.initialise_actnorm(hr) == len(net.actnorms())
    assert net.actnorm_initialised
    first = net.levels[0].steps[0].actnorm
    # the first ActNorm whitens the Haar coefficients of that batch, per channel
    x = first(net.levels[0].haar(hr))
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(12), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(12), atol=1e-3)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert net.initialise_actnorm(torch.rand(2, 3, 16, 16) * 0.1) == 0  # a second batch changes nothing
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    loaded = tiny()
    loaded.load_state_dict(state)  # a loaded (or resumed) net never re-initialises
    assert loaded.actnorm_initialised and loaded.initialise_actnorm(hr * 0.5) == 0
    assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())


def test_actnorm_init_passes_every_statistic_through_the_reduction():
    """Two statistics (mean, then variance about the reduced mean) per ActNorm go through ``reduce``; that
    HCFlowModel's cross-process mean makes 2 processes initialise as 1 is checked by the distributed test."""
    torch.manual_seed(0)
    hr = torch.rand(4, 3, 16, 16)
    whole, halves = tiny(), tiny()
    halves.load_state_dict(whole.state_dict())
    halves.mark_actnorm_initialised(False)
    whole.initialise_actnorm(hr)
    calls = []

    def reduce(t):
        calls.append(t)
        return t

    halves.initialise_actnorm(hr, reduce=reduce)
    assert len(calls) == 2 * len(halves.actnorms())
    for (name, a), b in zip(whole.state_dict().items(), halves.state_dict().values()):
        assert torch.allclose(a, b), name


def test_one_adam_step_on_the_authors_losses_lowers_them():
    import torch.nn.functional as F
    torch.manual_seed(0)
    net = tiny()
    hr = torch.rand(2, 3, 16, 16)
    net.initialise_actnorm(hr)
    target_lr = F.avg_pool2d(hr, 4)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)

    def loss():
        lr, latents = net(hr)
        z = torch.cat([t.flatten() for t in latents])
        sr = net(lr, rev=True)
        return 0.05 * F.mse_loss(lr, target_lr) + 1e-5 * z.pow(2).mean() + F.l1_loss(sr, hr)

    losses = []
    for _ in range(3):
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < losses[0]
    assert net.levels[0].haar.weight.grad is None  # the Haar filters stay frozen


def test_size_errors_name_the_fix():
    with pytest.raises(ValueError, match='multiples of the scale'):
        tiny()(torch.rand(1, 3, 10, 10))
    with pytest.raises(ValueError, match='one entry per level'):
        HCFlowNet(scale=4, flow_steps=[8])


def test_rescaler_seeded_latents_are_batch_independent():
    # float64: in float32 the randomised flow amplifies batch-size-dependent convolution rounding to ~2e-6 on
    # some CPUs; a latent that depended on the batch would differ by O(1)
    torch.manual_seed(0)
    net = randomise(tiny()).double().eval()
    rescaler = HCFlowRescaler(net, heat=0.8, z_policy='seeded', z_seed=1)
    lr = torch.rand(3, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        batch = rescaler.upscale(lr)
        alone = rescaler.upscale(lr[1:2])
    assert torch.allclose(batch[1:2], alone, atol=1e-10, rtol=0)
    assert rescaler.downscale(torch.rand(1, 3, 16, 16, dtype=torch.float64)).shape == (1, 3, 4, 4)


@pytest.mark.parametrize('heat', [0.0, 0.5])
def test_hcd_with_the_hcflow_adapter_improves_a_tiny_image(heat):
    from basicsr_lmar.ops.collaborative_downscaling import collaborative_downscale, mse_per_image
    from basicsr_lmar.ops.rounding import quantize
    torch.manual_seed(0)
    net = randomise(tiny(), std=0.02).eval()
    rescaler = HCFlowRescaler(net, heat=heat, z_policy='seeded', z_seed=0)
    hr = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        base = mse_per_image(rescaler.upscale(quantize(rescaler.downscale(hr))), hr)
    result = collaborative_downscale(rescaler, hr, steps_hr=3, steps_lr=3, epsilon=0.3, step_size=0.02, seed=0)
    assert torch.equal(result.lr, quantize(result.lr)) and result.lr.shape == (2, 3, 4, 4)
    assert (result.loss < base).all(), (result.loss, base)
    alone = collaborative_downscale(rescaler, hr, steps_hr=3, steps_lr=3, epsilon=0.3, step_size=0.02, seed=0,
                                    batched=False)
    assert torch.allclose(alone.lr, result.lr)
    assert all(not p.requires_grad or p.grad is None for p in net.parameters())


@pytest.mark.parametrize('heat', [0.0, 1.0])
def test_rescaler_and_actnorm_init_place_nothing_on_the_cpu(heat):
    """On ``meta`` (see tests/archs/test_device_placement.py) a tensor created on the CPU is an error, as on CUDA."""
    meta = torch.device('meta')
    net = tiny().to(meta)
    hr = torch.rand(1, 3, 16, 16, device=meta)
    net.initialise_actnorm(hr)
    rescaler = HCFlowRescaler(net, heat=heat)
    lr = rescaler.downscale(hr)
    assert lr.device == meta and rescaler.upscale(lr).device == meta
    assert net(lr, rev=True, heat=heat).device == meta


def test_gradients_of_both_directions_pass_gradcheck_in_float64():
    torch.manual_seed(0)
    net = randomise(HCFlowNet(scale=4, flow_steps=[2, 2], prior_steps=[1, 1], growth=2, rrdb_nf=4, rrdb_gc=2,
                              rrdb_blocks=1, hidden=4)).double()
    hr = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    lr = torch.rand(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: net(x, clamp=False)[0], (hr, ), eps=1e-6, atol=1e-6, fast_mode=True)
    assert torch.autograd.gradcheck(lambda x: net(x, rev=True, clamp=False), (lr, ), eps=1e-6, atol=1e-6)
