"""The latents an invertible rescaler (IRN, HCFlow) reconstructs with, drawn by a policy.

``zero``: the prior mean; ``random``: a fresh N(0, std²) draw per call (the authors' test code; not
deterministic); ``seeded``: one N(0, std²) draw per latent shape from a generator seeded with ``seed``,
reused for every image of the batch and every call, so that HCD's optimisation and the final
reconstruction see the same latents and a result does not depend on the batch it is in.
"""
import torch

LATENT_POLICIES = ('seeded', 'zero', 'random')


class LatentDraws:
    """The latents of a rescaler, ``std`` times N(0, 1) draws by ``policy`` (module docstring); called with
    the latent shapes ((N, C, H, W) each) and a tensor whose dtype and device they take."""

    def __init__(self, std, policy='seeded', seed=0):
        self.std, self.policy, self.seed, self.cache = std, policy, seed, {}

    def __call__(self, shapes, like):
        if self.policy == 'zero' or self.std == 0:
            return [like.new_zeros(shape) for shape in shapes]
        if self.policy == 'random':
            return [self.std * torch.randn(shape, dtype=like.dtype, device=like.device) for shape in shapes]
        key = (tuple(tuple(shape[1:]) for shape in shapes), like.dtype, like.device)
        if key not in self.cache:
            generator = torch.Generator().manual_seed(self.seed)
            self.cache[key] = [(self.std * torch.randn((1, *shape[1:]), generator=generator, dtype=torch.float64)).to(
                dtype=like.dtype, device=like.device) for shape in shapes]
        return [z.expand(shape[0], -1, -1, -1) for z, shape in zip(self.cache[key], shapes)]
