import pytest
import torch
from torch import nn

from basicsr_lmar.archs.feature_hooks import FeatureHook
from basicsr_lmar.options import OptionError


class Counting(nn.Module):

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 4, 3, 1, 1)
        self.middle = nn.Conv2d(4, 4, 3, 1, 1)
        self.last = nn.Conv2d(4, 3, 3, 1, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.last(self.middle(self.first(x)))


def test_extract_stops_after_the_layer_and_keeps_gradients():
    net = Counting()
    hook = FeatureHook(net, 'middle')
    x = torch.rand(1, 3, 5, 5, requires_grad=True)
    feature = hook.extract(x)
    torch.testing.assert_close(feature, net.middle(net.first(x)))
    feature.sum().backward()
    assert x.grad is not None and net.last.weight.grad is None  # the rest of the network did not run
    output, feature = hook.run(x)
    assert output.shape == (1, 3, 5, 5) and feature.shape == (1, 4, 5, 5)


def test_unknown_layer_names_the_closest():
    with pytest.raises(OptionError, match='middle'):
        FeatureHook(Counting(), 'midle')
