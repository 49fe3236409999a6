"""The one place that repairs the released ``basicsr==1.4.2`` for every program that imports it.

Only repairs that turn a crash of basicsr into working behaviour belong here; they change nothing that
works (whatever the plugin's own models do differently is an override on their classes,
:mod:`basicsr_lmar.models.plugin_mixin`). docs/architecture.md lists them. Must run before ``basicsr`` is
first imported: :mod:`basicsr_lmar` calls :func:`install` as its first statement, and the autoload hook
imports :mod:`basicsr_lmar` before basicsr's own ``__init__``. Imports only the standard library at
module level (torchvision, torch and the plugin are touched lazily).

1. ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17 (renamed
   ``_functional_tensor``); basicsr's ``data/degradations.py`` imports it at import time, so basicsr does
   not import at all. A meta-path finder, consulted only after the real finders fail to find that name,
   aliases the old name to the new module. With an old torchvision that still has the module, nothing
   changes.
2. ``load_resume_state`` of ``basicsr/train.py`` calls ``torch.cuda.current_device()``, which raises on a
   machine without a GPU: resuming through ``python -m basicsr.train`` (or ``basicsr/train.py``) crashes
   on CPU. When that module is loaded (imported, or run by ``python -m``), one statement is added after
   the function: ``load_resume_state = repaired_stock_resume(load_resume_state)``, which calls basicsr's
   function unchanged when CUDA is available and the plugin's CPU-capable one otherwise
   (:func:`basicsr_lmar.runtime.resume.repaired_stock_resume`). The installed file is not edited.
"""
import ast
import importlib
import importlib.abc
import importlib.machinery
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


_STOCK_TRAIN = 'basicsr.train'
_RESUME_REPAIR = ("load_resume_state = __import__('basicsr_lmar.runtime.resume', fromlist=['repaired_stock_resume'])"
                  ".repaired_stock_resume(load_resume_state)")


class _RepairedStockTrainLoader(importlib.machinery.SourceFileLoader):
    """basicsr's ``train.py`` compiled with the resume repair after ``def load_resume_state`` (no bytecode
    cache is read or written for it: the cached one is basicsr's unrepaired code)."""

    def get_code(self, fullname):
        source = self.get_source(fullname)
        tree = ast.parse(source, self.path)
        for index, node in enumerate(tree.body):
            if isinstance(node, ast.FunctionDef) and node.name == 'load_resume_state' and \
                    'torch.cuda.current_device()' in (ast.get_source_segment(source, node) or ''):
                repair = ast.parse(_RESUME_REPAIR).body[0]
                ast.increment_lineno(repair, node.end_lineno)
                tree.body.insert(index + 1, repair)
                break
        return compile(tree, self.path, 'exec', dont_inherit=True)


class StockTrainRepairFinder(importlib.abc.MetaPathFinder):
    """Gives ``basicsr.train`` the loader above (inserted first in ``sys.meta_path``)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _STOCK_TRAIN:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec
        spec.loader = _RepairedStockTrainLoader(spec.loader.name, spec.loader.path)
        return spec


def install():
    """Idempotent."""
    if not any(isinstance(finder, ModuleAliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(ModuleAliasFinder())
    if not any(isinstance(finder, StockTrainRepairFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, StockTrainRepairFinder())
