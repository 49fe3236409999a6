"""The one place that makes the released ``basicsr==1.4.2`` work on a current stack.

Must run before ``basicsr`` is first imported; :mod:`basicsr_lmar` calls :func:`install` as its first
statement, and the autoload hook imports :mod:`basicsr_lmar` before basicsr's own ``__init__``.
Imports only the standard library at module level (torchvision is touched lazily).

Fixes:
- ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17 (renamed
  ``_functional_tensor``); basicsr's ``data/degradations.py`` imports it at import time. A meta-path
  finder, consulted only after the real finders fail to find that name, aliases the old name to the
  new module. With an old torchvision that still has the module, nothing changes.
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
