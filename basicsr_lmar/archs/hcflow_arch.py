"""HCFlow for image rescaling (Liang et al., ICCV 2021) as a BasicSR arch, and its HCD rescaler adapter.

One normalising flow maps an HR image to an LR image and standardised latents, level by level
(``log2(scale)`` levels). Level ``i`` (channels ``C_i = 4 C_{i-1}`` at 1/2^(i+1) resolution):

1. a Haar squeeze: fixed +-1/4 filters (a frozen parameter, as the authors'), low-pass channels first;
2. ``flow_steps[i]`` unconditional flow steps: ActNorm, then a coupling between the first 3 channels
   (the LR-to-be) and the rest, alternating: even steps ``rest <- (rest + t(lr)) * exp(s(lr))``, odd
   steps ``lr <- lr + t(rest)`` (the authors' ``Affine3shift``; dense-block subnets, growth ``growth``);
3. a split: levels before the last keep half of the channels and split off the other half ``a_i``; the
   last keeps the 3-channel LR image and splits off the rest.

Each split-off part is modelled by a conditional flow :class:`ConditionalPrior`: an RRDB feature
extractor (``rrdb_nf``, ``rrdb_gc``, ``rrdb_blocks``) on the condition, ``prior_steps[i]`` steps
(ActNorm, invertible 1x1 conv, affine coupling conditioned on the feature) and a zero-initialised head
that predicts a mean and a scale; ``logscale = 0.318 atan(2 scale)`` and the standardised latent is
``z_i = (flow(a_i) - mean) * exp(-logscale)``. The last level is conditioned on the LR image; level ``i``
before it on ``cat(y_i, nearest-x2(feature of level i + 1))``, ``y_i`` the part that level ``i`` kept.

``forward(hr)`` returns ``(lr, [z_0, ..., z_{L-1}])``; ``forward(lr, rev=True, latents=..., heat=...)``
reconstructs the HR image from the given latents (exact inverse) or from ``z_i ~ N(0, heat^2)``
(heat 0: each latent's prior mean, deterministic). By default both LR and HR are clamped to [0, 1] as
the authors'; ``clamp=False`` gives the raw bijection.

Configurations:

- x4, the authors' ``FlowNet_Rescaling_x4`` (K = 14, L = 2, 6 conditional steps per level):
  ``flow_steps [8, 8]``, ``prior_steps [6, 6]``: 4,396,350 parameters, 4,396,206 trainable (the two
  Haar filters, 144 values, are frozen), 532 state-dict tensors, no buffers.
- x2, of this plugin's design (the authors release none): one level, 12 channels split 3 | 9, 8 flow
  steps and one conditional flow of 6 steps conditioned on the LR image (``flow_steps [8]``,
  ``prior_steps [6]``).

ActNorm (every flow step, and the two convs of each conditional coupling's subnet) is initialised from
data by :meth:`HCFlowNet.initialise_actnorm` -- once, from the first training batch -- and never after a
``load_state_dict`` (the ``initialised`` flag of each :class:`ActNorm` is plain Python state, not in
the state dict; loading sets it).

:class:`HCFlowRescaler` wraps a trained net into the rescaler protocol that HCD uses.
"""
import contextlib

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from basicsr_lmar.archs.irn_arch import DenseSubnet, haar_levels  # the same subnet (Xavier x0.1, last conv zero) as IRN
from basicsr_lmar.ops.latents import LatentDraws
from basicsr_lmar.options import Option, configurable
from basicsr_lmar.registry import RESCALER_REGISTRY

LR_CHANNELS = 3  # the couplings of the main flow single out the first 3 channels (an RGB LR image)


def bounded_log_scale(scale):
    """The authors' soft clamp of a log-scale to about +-0.5: ``0.318 * atan(2 * scale)``."""
    return 0.318 * torch.atan(2 * scale)


class ActNorm(nn.Module):
    """Per-channel affine ``(x + bias) * exp(logs)``; data-initialised once (see :meth:`HCFlowNet.initialise_actnorm`).

    ``initialised`` is not in the state dict: a fresh module is not, a loaded one is.
    """

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.initialised = False
        self._data_init = None  # set by HCFlowNet.initialise_actnorm: a callable reducing statistics, or None

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.initialised = True

    def _initialise(self, x):
        reduce = self._data_init
        with torch.no_grad():
            mean = reduce(x.mean(dim=(0, 2, 3), keepdim=True))
            var = reduce((x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True))
            self.bias.copy_(-mean)
            self.logs.copy_(torch.log(1.0 / (var.sqrt() + 1e-6)))
        self.initialised = True

    def forward(self, x, rev=False):
        if not rev:
            if self._data_init is not None and not self.initialised:
                self._initialise(x)
            return (x + self.bias) * torch.exp(self.logs)
        return x * torch.exp(-self.logs) - self.bias


class HaarSqueeze(nn.Module):
    """Haar analysis (N, C, H, W) -> (N, 4C, H/2, W/2), sub-band-major (average first), and its inverse.

    The filters are a frozen parameter ``weight`` (4C, 1, 2, 2) of +-1 values, as the authors'.
    """

    def __init__(self, channels):
        super().__init__()
        filters = torch.ones(4, 1, 2, 2)
        filters[1, 0, :, 1] = -1  # horizontal detail: left minus right
        filters[2, 0, 1, :] = -1  # vertical detail: top minus bottom
        filters[3, 0, 0, 1] = filters[3, 0, 1, 0] = -1  # diagonal
        self.channels = channels
        self.weight = nn.Parameter(filters.repeat(channels, 1, 1, 1), requires_grad=False)

    def forward(self, x, rev=False):
        c = self.channels
        if not rev:
            if x.shape[-2] % 2 or x.shape[-1] % 2:
                raise ValueError(f'HCFlowNet: height and width must be multiples of the scale, got '
                                 f'{tuple(x.shape[-2:])} at a Haar level; crop or pad the image')
            out = F.conv2d(x, self.weight.to(x.dtype), stride=2, groups=c) / 4
            n, _, h, w = out.shape
            return out.view(n, c, 4, h, w).transpose(1, 2).reshape(n, 4 * c, h, w)
        n, _, h, w = x.shape
        x = x.view(n, 4, c, h, w).transpose(1, 2).reshape(n, 4 * c, h, w)
        return F.conv_transpose2d(x, self.weight.to(x.dtype), stride=2, groups=c)


class LRCoupling(nn.Module):
    """The main flow's coupling between the first 3 channels (LR part) and the rest.

    ``lr_conditions`` (even steps): ``rest <- (rest + shift) * exp(logscale)``, shift and scale from the
    LR part (interleaved channels of the subnet's output: shifts even, scales odd). Otherwise the LR part
    is shifted by a function of the rest: ``lr <- lr + t(rest)``.
    """

    def __init__(self, channels, lr_conditions, growth=32):
        super().__init__()
        self.lr_conditions = lr_conditions
        rest = channels - LR_CHANNELS
        self.net = DenseSubnet(LR_CHANNELS, 2 * rest, growth) if lr_conditions else DenseSubnet(rest, LR_CHANNELS,
                                                                                              growth)

    def forward(self, x, rev=False):
        lr, rest = x[:, :LR_CHANNELS], x[:, LR_CHANNELS:]
        if self.lr_conditions:
            h = self.net(lr)
            shift, log_scale = h[:, 0::2], bounded_log_scale(h[:, 1::2])
            rest = (rest + shift) * torch.exp(log_scale) if not rev else rest * torch.exp(-log_scale) - shift
        else:
            shift = self.net(rest)
            lr = lr + shift if not rev else lr - shift
        return torch.cat((lr, rest), dim=1)


class FlowStep(nn.Module):
    """ActNorm then an :class:`LRCoupling` (no permutation: it would mix the LR part with the rest)."""

    def __init__(self, channels, lr_conditions, growth=32):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.coupling = LRCoupling(channels, lr_conditions, growth)

    def forward(self, x, rev=False):
        if not rev:
            return self.coupling(self.actnorm(x))
        return self.actnorm(self.coupling(x, rev=True), rev=True)


class ResidualDenseBlock(DenseSubnet):
    """ESRGAN's residual dense block: IRN's dense subnet (growth ``gc``) plus a residual x0.2; Xavier x0.1."""

    def __init__(self, nf=64, gc=32):
        super().__init__(nf, nf, gc)
        nn.init.xavier_normal_(self.convs[4].weight)  # ESRGAN's last conv starts like the others, not at zero
        self.convs[4].weight.data.mul_(0.1)

    def forward(self, x):
        return super().forward(x) * 0.2 + x


class RRDB(nn.Module):
    """Three residual dense blocks with an outer residual x0.2."""

    def __init__(self, nf=64, gc=32):
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualDenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x):
        return self.blocks(x) * 0.2 + x


class ZeroConv(nn.Conv2d):
    """A 3x3 conv initialised at zero, its output scaled by ``exp(3 * logs)`` (per channel, learned)."""

    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels, 3, 1, 1)
        self.logs = nn.Parameter(torch.zeros(out_channels, 1, 1))
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        return super().forward(x) * torch.exp(self.logs * 3)


class NormConv(nn.Module):
    """A bias-free conv followed by an ActNorm (the authors' ``Conv2d`` with ``do_actnorm``)."""

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=False)
        self.actnorm = ActNorm(out_channels)
        nn.init.xavier_normal_(self.conv.weight)
        self.conv.weight.data.mul_(0.1)

    def forward(self, x):
        return self.actnorm(self.conv(x))


class ConditionedSubnet(nn.Module):
    """3x3 NormConv, ReLU, 1x1 NormConv, ReLU, 3x3 ZeroConv (the authors' ``FCN``)."""

    def __init__(self, in_channels, out_channels, hidden=64):
        super().__init__()
        self.conv1 = NormConv(in_channels, hidden, 3)
        self.conv2 = NormConv(hidden, hidden, 1)
        self.conv3 = ZeroConv(hidden, out_channels)

    def forward(self, x):
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


class InvertibleConv1x1(nn.Module):
    """Channel mixing by a learned matrix (random orthogonal at start); the inverse in the input's dtype
    (float64 inputs invert in float64; lower precisions invert in float64 and cast back)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0].float())

    def forward(self, x, rev=False):
        weight = self.weight
        if rev:
            weight = torch.linalg.inv(weight.to(torch.float64)).to(x.dtype)
        return F.conv2d(x, weight.to(x.dtype)[:, :, None, None])


class ConditionalCoupling(nn.Module):
    """Affine coupling of the split-off part, conditioned on a feature map: the second half of the
    channels ``b <- (b + shift) * exp(logscale)`` with shift/scale from ``cat(first half, feature)``."""

    def __init__(self, channels, feature_channels, hidden=64):
        super().__init__()
        self.half = channels // 2
        self.net = ConditionedSubnet(self.half + feature_channels, 2 * (channels - self.half), hidden)

    def forward(self, x, feature, rev=False):
        a, b = x[:, :self.half], x[:, self.half:]
        h = self.net(torch.cat((a, feature), dim=1))
        shift, log_scale = h[:, 0::2], bounded_log_scale(h[:, 1::2])
        b = (b + shift) * torch.exp(log_scale) if not rev else b * torch.exp(-log_scale) - shift
        return torch.cat((a, b), dim=1)


class ConditionalFlowStep(nn.Module):
    """ActNorm, invertible 1x1 conv, conditional affine coupling."""

    def __init__(self, channels, feature_channels, hidden=64):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvertibleConv1x1(channels)
        self.coupling = ConditionalCoupling(channels, feature_channels, hidden)

    def forward(self, x, feature, rev=False):
        if not rev:
            return self.coupling(self.invconv(self.actnorm(x)), feature)
        return self.actnorm(self.invconv(self.coupling(x, feature, rev=True), rev=True), rev=True)


class ConditionalPrior(nn.Module):
    """The conditional flow of one level's split-off part: feature extractor, flow steps, prior head.

    ``feature(condition)``: conv, RRDBs, conv, plus the first conv's output. ``encode(a, feature)`` ->
    standardised latent ``z``; ``decode(z, feature)`` -> ``a`` (its exact inverse).
    """

    def __init__(self, channels, condition_channels, steps=6, nf=64, gc=16, rrdb_blocks=3, hidden=64):
        super().__init__()
        self.conv_first = nn.Conv2d(condition_channels, nf, 3, 1, 1)
        self.rrdbs = nn.Sequential(*(RRDB(nf, gc) for _ in range(rrdb_blocks)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.steps = nn.ModuleList(ConditionalFlowStep(channels, nf, hidden) for _ in range(steps))
        self.head = ZeroConv(nf, 2 * channels)

    def feature(self, condition):
        first = self.conv_first(condition)
        return self.trunk_conv(self.rrdbs(first)) + first

    def prior(self, feature):
        h = self.head(feature)
        return h[:, 0::2], bounded_log_scale(h[:, 1::2])

    def encode(self, a, feature):
        for step in self.steps:
            a = step(a, feature)
        mean, log_scale = self.prior(feature)
        return (a - mean) * torch.exp(-log_scale)

    def decode(self, z, feature):
        mean, log_scale = self.prior(feature)
        a = mean + torch.exp(log_scale) * z
        for step in reversed(self.steps):
            a = step(a, feature, rev=True)
        return a


class HCFlowLevel(nn.Module):
    """Haar squeeze, flow steps and the conditional prior of the part split off at one level."""

    def __init__(self, in_channels, keep, flow_steps, prior_steps, condition_channels, growth, nf, gc, rrdb_blocks,
                 hidden):
        super().__init__()
        channels = 4 * in_channels
        self.keep = keep
        self.haar = HaarSqueeze(in_channels)
        self.steps = nn.ModuleList(FlowStep(channels, k % 2 == 0, growth) for k in range(flow_steps))
        self.prior = ConditionalPrior(channels - keep, condition_channels, prior_steps, nf, gc, rrdb_blocks, hidden)

    def flow(self, x, rev=False):
        """The level's unconditional part: Haar squeeze and flow steps (their inverse with ``rev``)."""
        if not rev:
            x = self.haar(x)
            for step in self.steps:
                x = step(x)
            return x
        for step in reversed(self.steps):
            x = step(x, rev=True)
        return self.haar(x, rev=True)


@ARCH_REGISTRY.register()
@configurable(
    in_channels=Option(choices=(3, ), doc='image channels (the couplings single out an RGB LR image)'),
    scale=Option(type=int, choices=(2, 4, 8), doc='downscaling factor, a power of 2 (one level per factor 2)'),
    flow_steps=Option(type=(list, tuple), min=0, doc='unconditional flow steps per level (x4: [8, 8], x2: [8])'),
    prior_steps=Option(type=(list, tuple), min=0, doc='conditional flow steps per level (x4: [6, 6], x2: [6])'),
    growth=Option(min=1, doc='dense-subnet growth of the main couplings'),
    rrdb_nf=Option(min=1, doc='features of the conditional RRDB extractors'),
    rrdb_gc=Option(min=1, doc='RRDB growth channels'),
    rrdb_blocks=Option(type=int, min=0, doc='RRDBs per extractor (the authors: 2 + 1)'),
    hidden=Option(min=1, doc='hidden channels of the conditional couplings'))
class HCFlowNet(nn.Module):
    """Hierarchical conditional flow for rescaling; see the module docstring."""

    def __init__(self, in_channels=3, scale=4, flow_steps=(8, 8), prior_steps=(6, 6), growth=32, rrdb_nf=64,
                 rrdb_gc=16, rrdb_blocks=3, hidden=64):
        super().__init__()
        num_levels = haar_levels('HCFlowNet', scale, flow_steps=flow_steps, prior_steps=prior_steps)
        self.in_channels = in_channels
        self.scale = scale
        levels, channels = [], in_channels
        for i in range(num_levels):
            last = i == num_levels - 1
            keep = LR_CHANNELS if last else 2 * channels  # half of the 4C channels, or the LR image
            condition = LR_CHANNELS if last else keep + rrdb_nf
            levels.append(HCFlowLevel(channels, keep, flow_steps[i], prior_steps[i], condition, growth, rrdb_nf,
                                      rrdb_gc, rrdb_blocks, hidden))
            channels = keep
        self.levels = nn.ModuleList(levels)

    # ------------------------------------------------------------------------------------ the bijection
    def latent_shapes(self, lr_shape):
        """Shapes of the latents ``[z_0, ..., z_{L-1}]`` for an LR image of shape ``lr_shape``."""
        n, _, h, w = lr_shape
        shapes = []
        for i, level in enumerate(self.levels):
            factor = 2**(len(self.levels) - 1 - i)
            channels = 4 * level.haar.channels - level.keep
            shapes.append((n, channels, h * factor, w * factor))
        return shapes

    def encode(self, hr, clamp=True):
        """HR -> ``(lr, [z_0, ..., z_{L-1}])``."""
        kept, split_off = [], []
        x = hr
        for level in self.levels:
            x = level.flow(x)
            kept.append(x[:, :level.keep])
            split_off.append(x[:, level.keep:])
            x = kept[-1]
        latents = [None] * len(self.levels)
        feature = None
        for i in reversed(range(len(self.levels))):
            prior = self.levels[i].prior
            condition = x if feature is None else torch.cat((kept[i], F.interpolate(feature, scale_factor=2.0)), 1)
            feature = prior.feature(condition)
            latents[i] = prior.encode(split_off[i], feature)
        return (x.clamp(0, 1) if clamp else x), latents

    def decode(self, lr, latents=None, heat=0.0, generator=None, clamp=True):
        """``lr`` and the latents -> HR. ``latents``: a list (one per level; None entries sampled) or None.

        A missing latent is drawn as ``heat * N(0, 1)`` (``generator`` or the global RNG); heat 0 gives
        each level's prior mean.
        """
        shapes = self.latent_shapes(lr.shape)
        latents = list(latents) if latents is not None else [None] * len(self.levels)
        if len(latents) != len(self.levels):
            raise ValueError(f'HCFlowNet.decode: {len(latents)} latents for {len(self.levels)} levels')
        x, feature = lr, None
        for i in reversed(range(len(self.levels))):
            level = self.levels[i]
            condition = x if feature is None else torch.cat((x, F.interpolate(feature, scale_factor=2.0)), 1)
            feature = level.prior.feature(condition)
            z = latents[i]
            if z is None:
                z = lr.new_zeros(shapes[i])
                if heat:
                    z = heat * torch.randn(shapes[i], generator=generator, dtype=lr.dtype,
                                           device='cpu' if generator is not None else lr.device).to(lr.device)
            elif tuple(z.shape) != tuple(shapes[i]):
                raise ValueError(f'HCFlowNet.decode: latent {i} has shape {tuple(z.shape)}, expected {shapes[i]}')
            x = level.flow(torch.cat((x, level.prior.decode(z, feature)), dim=1), rev=True)
        return x.clamp(0, 1) if clamp else x

    def forward(self, x, rev=False, latents=None, heat=0.0, generator=None, clamp=True):
        """``rev=False``: HR -> ``(lr, latents)``; ``rev=True``: LR (+ latents / heat) -> HR."""
        if not rev:
            return self.encode(x, clamp)
        return self.decode(x, latents, heat, generator, clamp)

    # --------------------------------------------------------------------------------------- ActNorm
    def actnorms(self):
        return [m for m in self.modules() if isinstance(m, ActNorm)]

    @property
    def actnorm_initialised(self):
        return all(m.initialised for m in self.actnorms())

    def mark_actnorm_initialised(self, value=True):
        for m in self.actnorms():
            m.initialised = value

    @contextlib.contextmanager
    def _data_init(self, reduce):
        modules = self.actnorms()
        for m in modules:
            m._data_init = reduce
        try:
            yield
        finally:
            for m in modules:
                m._data_init = None

    def initialise_actnorm(self, hr, reduce=None):
        """Data-dependent ActNorm initialisation from ``hr`` (the first training batch): every not yet
        initialised ActNorm gets per-channel bias/logs that whiten its input, in the order of one forward
        pass followed by the reverse pass at heat 0. ``reduce``: applied to each statistic (e.g. a
        cross-process mean, so that every rank initialises alike). Returns how many were initialised."""
        before = sum(not m.initialised for m in self.actnorms())
        with torch.no_grad(), self._data_init(reduce or (lambda t: t)):
            self.encode(hr)
        return before


@RESCALER_REGISTRY.register()
@configurable(
    heat=Option(min=0, doc='standard deviation of the latents of the reconstruction (0: the prior means)'),
    z_policy=Option(choices=('seeded', 'random'), doc='how the latents are drawn when heat > 0'))
class HCFlowRescaler(nn.Module):
    """Rescaler protocol for a trained :class:`HCFlowNet`.

    ``downscale(hr)``: the forward pass's LR, clamped to [0, 1], *not* quantised (HCD quantises the LR it
    stores and, straight-through, inside its HR-stage objective). ``upscale(lr)``: the reverse pass with
    latents ``heat * eps``:

    - heat 0 (default): eps = 0, each latent at its prior mean; deterministic, no policy needed;
    - ``'seeded'``: eps ~ N(0, 1) drawn once per latent shape from a generator seeded with ``z_seed`` and
      reused for every image of the batch and every call, so HCD's optimisation and the final
      reconstruction see the same latents and results do not depend on the batch composition;
    - ``'random'``: a fresh draw each call (the authors' test); not deterministic.
    """

    def __init__(self, network_g, heat=0.0, z_policy='seeded', z_seed=0):
        super().__init__()  # z_policy and heat are checked by the option schema (@configurable)
        self.net, self.scale = network_g, network_g.scale
        self.draw = LatentDraws(float(heat), z_policy, z_seed)

    def downscale(self, hr):
        return self.net.encode(hr)[0]

    def latents(self, lr):
        return self.draw(self.net.latent_shapes(lr.shape), lr)

    def upscale(self, lr):
        return self.net.decode(lr, self.latents(lr))
