"""The one place that makes the released ``basicsr==1.4.2`` work on a current stack.

Must run before ``basicsr`` is first imported; :mod:`basicsr_lmar` calls :func:`install` as its first
statement, and the autoload hook imports :mod:`basicsr_lmar` before basicsr's own ``__init__``.
Imports only the standard library at module level (torchvision is touched lazily).

Fixes:
- ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17 (renamed
  ``_functional_tensor``); basicsr's ``data/degradations.py`` imports it at import time. A meta-path
  finder, consulted only after the real finders fail to find that name, aliases the old name to the
  new module. With an old torchvision that still has the module, nothing changes.
- ``BaseModel.model_to_device`` (patched by :func:`patch_basicsr` once basicsr is importable): DDP on
  CPU/gloo and no DDP for nets without trainable parameters.
- ``BaseModel.get_optimizer``: any ``torch.optim`` optimizer by name, not only ``Adam``.

Entry-level changes to basicsr's pipeline (distributed back-end, exact resume) are not here but in
:mod:`basicsr_lmar.runtime.pipeline`, applied only by the plugin's own entries.
"""
import importlib
import importlib.abc
import importlib.util
import sys

_ALIASES = {
    'torchvision.transforms.functional_tensor': 'torchvision.transforms._functional_tensor',
}


class _AliasLoader(importlib.abc.Loader):

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass  # the target module is already executed


class ModuleAliasFinder(importlib.abc.MetaPathFinder):
    """Resolves removed module names to their current location (appended last to ``sys.meta_path``)."""

    def find_spec(self, fullname, path=None, target=None):
        new_name = _ALIASES.get(fullname)
        if new_name is None:
            return None
        if importlib.util.find_spec(new_name) is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new_name))


def install():
    """Idempotent."""
    if not any(isinstance(finder, ModuleAliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(ModuleAliasFinder())


def _model_to_device(self, net):
    """basicsr's ``BaseModel.model_to_device`` that also works on CPU (gloo) and with frozen nets.

    basicsr passes ``device_ids=[torch.cuda.current_device()]`` unconditionally, which fails without a
    GPU, and wraps every net in DDP, which refuses nets without trainable parameters (a frozen enhancer,
    a fixed upscaler). On CUDA with trainable parameters the behaviour is basicsr's, unchanged.
    """
    import torch
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    net = net.to(self.device)
    if self.opt['dist']:
        if not any(p.requires_grad for p in net.parameters()):
            return net
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        net = DistributedDataParallel(
            net, device_ids=device_ids, find_unused_parameters=self.opt.get('find_unused_parameters', False))
    elif self.opt['num_gpu'] > 1:
        net = DataParallel(net)
    return net


def _get_optimizer(self, optim_type, params, lr, **kwargs):
    """Any ``torch.optim`` optimizer by class name (basicsr 1.4.2 knows only ``Adam``; later BasicSR
    releases accept the others too, so option files written for them work here)."""
    import torch

    optimizer_class = getattr(torch.optim, optim_type, None)
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
        known = sorted(name for name, value in vars(torch.optim).items()
                       if isinstance(value, type) and issubclass(value, torch.optim.Optimizer) and name != 'Optimizer')
        raise ValueError(f'train.optim_*.type {optim_type!r} is not a torch.optim optimizer; choose one of '
                         f'{", ".join(known)}')
    return optimizer_class(params, lr, **kwargs)


def patch_basicsr():
    """Run-time fixes to basicsr classes (no installed file is edited). Idempotent."""
    from basicsr.models.base_model import BaseModel

    BaseModel.model_to_device = _model_to_device
    BaseModel.get_optimizer = _get_optimizer
