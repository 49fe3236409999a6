"""Read an intermediate feature of any network by the name of the module that produces it."""
from torch import nn

from basicsr_lmar.options import OptionError, closest_first


class _StopForward(Exception):
    """Raised inside a hook to skip the rest of a forward pass once the feature is captured."""


def find_module(network, name, section='network_enhancer', key='feature_layer'):
    """The submodule of ``network`` called ``name`` (as in ``named_modules()``), or a clear error."""
    modules = dict(network.named_modules())
    if name not in modules or not name:
        candidates = closest_first(str(name), [n for n in modules if n])[:8]
        raise OptionError(f'[{section}] {key} {name!r} is not a module of {type(network).__name__}. '
                          f'Closest module names: {", ".join(candidates)}.')
    return modules[name]


class FeatureHook:
    """Captures the output of ``network.<layer>`` with a forward hook.

    ``extract(x)`` runs ``network`` only up to that module (the rest of the forward is skipped) and
    returns the feature; gradients flow through it as through any tensor. ``run(x)`` runs the whole
    network and returns ``(output, feature)``. A tuple/list output gives its first element.
    """

    def __init__(self, network: nn.Module, layer: str, section='network_enhancer', key='feature_layer'):
        self.network, self.layer = network, layer
        self._module = find_module(network, layer, section, key)
        self._feature = None
        self._stop = False
        self._handle = self._module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if isinstance(output, (tuple, list)):
            output = output[0]
        self._feature = output
        if self._stop:
            raise _StopForward

    def extract(self, *inputs, **kwargs):
        self._feature, self._stop = None, True
        try:
            self.network(*inputs, **kwargs)
        except _StopForward:
            pass
        finally:
            self._stop = False
        return self._take()

    def run(self, *inputs, **kwargs):
        self._feature, self._stop = None, False
        output = self.network(*inputs, **kwargs)
        return output, self._take()

    def _take(self):
        feature, self._feature = self._feature, None
        if feature is None:
            raise RuntimeError(f'feature layer {self.layer!r} of {type(self.network).__name__} was not called '
                               'during the forward pass; choose a module on the forward path')
        return feature

    def remove(self):
        self._handle.remove()
