import math
import random

import numpy as np
import pytest
import torch

from basicsr_lmar.runtime.resume import (ResumableEnlargedSampler, capture_rng_state, remove_partial_saves,
                                         restore_rng_state)


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


def test_rng_state_loads_with_weights_only(tmp_path):
    np.random.seed(5)
    np.random.randn()  # a cached Gaussian in numpy's state too
    state = capture_rng_state()
    torch.save({'rng': state}, tmp_path / 'state')
    loaded = torch.load(tmp_path / 'state', weights_only=True)['rng']
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item())
    restore_rng_state(loaded)
    assert (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item()) == expected


class _Sized(torch.utils.data.Dataset):

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return index


@pytest.mark.parametrize('samples, batch, world, ratio', [(5, 2, 1, 1), (6, 2, 2, 1), (7, 3, 2, 1), (5, 4, 3, 2),
                                                          (8, 2, 2, 1), (1, 4, 1, 1)])
def test_filled_epochs_have_the_iterations_basicsr_counts_and_cover_every_sample(samples, batch, world, ratio):
    """basicsr's loop counts ceil(samples x ratio / (batch x world)) iterations per epoch; with the last
    batch filled, the drop_last loader of every rank yields exactly that many, covering every sample."""
    dataset = _Sized(samples)
    expected = math.ceil(samples * ratio / (batch * world))
    seen = set()
    for rank in range(world):
        sampler = ResumableEnlargedSampler(dataset, num_replicas=world, rank=rank, ratio=ratio)
        sampler.fill_last_batch(batch)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True)
        batches = list(loader)
        assert len(loader) == len(batches) == expected
        seen |= {int(i) for b in batches for i in b}
    assert seen == set(range(samples))


def test_partial_saves_are_recognised_by_their_suffix(tmp_path):
    for name in ('3.state.tmp123', 'net_g_3.pth.tmp9', 'net_g_3.pth', '3.state', 'notes.tmp', 'x.tmp12a'):
        (tmp_path / name).write_bytes(b'')
    assert remove_partial_saves(tmp_path) == ['3.state.tmp123', 'net_g_3.pth.tmp9']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['3.state', 'net_g_3.pth', 'notes.tmp', 'x.tmp12a']
