import random

import numpy as np
import torch

from basicsr_lmar.runtime.resume import ResumableEnlargedSampler, capture_rng_state, restore_rng_state


class _Dataset(torch.utils.data.Dataset):

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return index


def test_sampler_skips_once_and_restores_rng_when_indices_are_first_requested():
    sampler = ResumableEnlargedSampler(_Dataset(), num_replicas=1, rank=0, ratio=1)
    sampler.set_epoch(3)
    full = list(sampler)
    torch.manual_seed(123)
    state = capture_rng_state()
    expected_draw = torch.rand(1)
    torch.manual_seed(999)
    sampler.resume_once(4, state)
    assert list(sampler) == full[4:]
    torch.testing.assert_close(torch.rand(1), expected_draw)  # restored at iteration start
    assert list(sampler) == full  # only once


def test_rng_state_round_trip_covers_python_numpy_torch():
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
