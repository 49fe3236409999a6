"""The one place that repairs the released ``basicsr==1.4.2`` for every program that imports it.

Only repairs that turn a crash of basicsr into working behaviour (or, for the plugin's own option files,
into an error that names the mistake), and the silencing of the deprecation warnings that basicsr's own
imports raise in other libraries, belong here; they change nothing that works (whatever the plugin's
own models do differently is an override on their classes, :mod:`basicsr_lmar.models.plugin_mixin`).
docs/architecture.md lists them. Must run before ``basicsr`` is first imported: :mod:`basicsr_lmar` calls
:func:`install` as its first statement, and the autoload hook imports :mod:`basicsr_lmar` before basicsr's own
``__init__``. Imports only the standard library at module level (torchvision, torch and the plugin are touched
lazily).

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
3. ``basicsr/train.py`` and ``basicsr/test.py`` stop on a mistake in a plugin model's option file deep in
   the run (after the experiment folder exists, at the first iteration or validation) with a traceback
   from torch or basicsr. When either module is loaded the same way, one statement follows its
   ``from basicsr.utils.options import ... parse_options``: ``parse_options =
   checked_parse_options(parse_options)`` (:mod:`basicsr_lmar.preflight`), which checks the ``-opt`` file
   before basicsr reads it and ends a mistake with one line and exit code 2. Option files of other
   projects' models pass through unchecked, so their runs are unchanged.
4. Quiet imports: two of basicsr's modules import what their third-party libraries now deprecate, and
   the warnings would open the stderr of every program that imports basicsr (before a command's own
   one-line error, say): ``basicsr/data/degradations.py`` imports torchvision's ``functional_tensor``
   (a ``UserWarning`` from torchvision 0.15 and 0.16, which still have it) and ``basicsr/metrics/niqe.py``
   imports ``convolve`` from ``scipy.ndimage.filters`` (a ``DeprecationWarning``). While each of these two
   modules executes, and only then, that one warning is ignored (:data:`QUIET_IMPORTS`); the same
   import made by any other module still warns.
"""
import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings

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


#: basicsr module -> (category, message regex) of the third-party warning its import raises
QUIET_IMPORTS = {
    'basicsr.data.degradations': (UserWarning, r'The torchvision\.transforms\.functional_tensor module is deprecated'),
    'basicsr.metrics.niqe': (DeprecationWarning, r'Please import `convolve` from the `scipy\.ndimage` namespace'),
}


class _QuietLoader(importlib.abc.Loader):
    """Executes a module with one warning ignored; the module keeps its real loader."""

    def __init__(self, wrapped, category, message):
        self.wrapped, self.category, self.message = wrapped, category, message

    def create_module(self, spec):
        return self.wrapped.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.wrapped
        if module.__spec__ is not None:
            module.__spec__.loader = self.wrapped
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message=self.message, category=self.category)
            self.wrapped.exec_module(module)


class _LoaderSwapFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of ``modules`` as Python would (the path finder) and gives their spec another
    loader (``loader_for(fullname, loader)``, or None to leave the spec as found)."""

    modules = ()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = self.loader_for(fullname, spec.loader) if spec is not None else None
        if loader is not None:
            spec.loader = loader
        return spec


class QuietImportFinder(_LoaderSwapFinder):
    """Gives the modules of :data:`QUIET_IMPORTS` the loader above (inserted first in ``sys.meta_path``)."""

    modules = QUIET_IMPORTS

    def loader_for(self, fullname, loader):
        if loader is None or not hasattr(loader, 'exec_module'):
            return None
        return _QuietLoader(loader, *QUIET_IMPORTS[fullname])


_STOCK_TRAIN = 'basicsr.train'
_STOCK_MODULES = (_STOCK_TRAIN, 'basicsr.test')
_RESUME_REPAIR = ("load_resume_state = __import__('basicsr_lmar.runtime.resume', fromlist=['repaired_stock_resume'])"
                  ".repaired_stock_resume(load_resume_state)")
_PREFLIGHT = ("parse_options = __import__('basicsr_lmar.preflight', fromlist=['checked_parse_options'])"
              ".checked_parse_options(parse_options)")


def _imports_parse_options(node):
    return isinstance(node, ast.ImportFrom) and node.module == 'basicsr.utils.options' and \
        any(alias.name == 'parse_options' and alias.asname is None for alias in node.names)


def _insert_after(tree, statement, is_anchor):
    """Inserts ``statement`` (source) after the first top-level node of ``tree`` for which ``is_anchor(node)``,
    numbered as its next line (nothing when no node is one)."""
    for index, node in enumerate(tree.body):
        if is_anchor(node):
            added = ast.parse(statement).body[0]
            ast.increment_lineno(added, node.end_lineno)
            tree.body.insert(index + 1, added)
            return


class _RepairedStockTrainLoader(importlib.machinery.SourceFileLoader):
    """basicsr's ``train.py`` / ``test.py`` compiled with the preflight after the import of
    ``parse_options`` and (``train.py``) the resume repair after ``def load_resume_state`` (no bytecode
    cache is read or written for them: the cached one is basicsr's unchanged code)."""

    def get_code(self, fullname):
        source = self.get_source(fullname)
        tree = ast.parse(source, self.path)
        if fullname == _STOCK_TRAIN:
            _insert_after(tree, _RESUME_REPAIR, lambda node: isinstance(node, ast.FunctionDef) and
                          node.name == 'load_resume_state' and
                          'torch.cuda.current_device()' in (ast.get_source_segment(source, node) or ''))
        _insert_after(tree, _PREFLIGHT, _imports_parse_options)
        return compile(tree, self.path, 'exec', dont_inherit=True)


class StockTrainRepairFinder(_LoaderSwapFinder):
    """Gives ``basicsr.train`` and ``basicsr.test`` the loader above (inserted first in ``sys.meta_path``)."""

    modules = _STOCK_MODULES

    def loader_for(self, fullname, loader):
        if type(loader) is not importlib.machinery.SourceFileLoader:
            return None
        return _RepairedStockTrainLoader(loader.name, loader.path)


def install():
    """Idempotent."""
    for finder, first in ((ModuleAliasFinder, False), (StockTrainRepairFinder, True), (QuietImportFinder, True)):
        if not any(isinstance(installed, finder) for installed in sys.meta_path):
            sys.meta_path.insert(0 if first else len(sys.meta_path), finder())
