"""Makes ``import basicsr`` also register the basicsr-lmar plugin.

Installed with the package as ``basicsr_lmar-autoload.pth``, whose single line imports this module at
interpreter start and calls :func:`install`. It must stay cheap and standard-library only: a program
that never imports ``basicsr`` pays for one entry in ``sys.meta_path`` and never loads torch.

When ``basicsr`` is imported, the plugin (``basicsr_lmar``) is imported *before* basicsr's own
``__init__`` runs. The plugin's first action is :mod:`basicsr_lmar.runtime.compat`, which repairs what the
released basicsr needs from newer torchvision; then it imports the basicsr submodules it uses and
registers its archs, models, losses and datasets. After that basicsr's ``__init__`` finishes as usual,
so stock entry points (``python -m basicsr.train``, ``basicsr/train.py`` of a BasicSR checkout) find
the plugin's components in the registries with no code change.

Set ``BASICSR_LMAR_AUTOLOAD=0`` to switch this off (``import basicsr_lmar`` still works then).
"""
import os
import sys
import warnings

ENV_VAR = 'BASICSR_LMAR_AUTOLOAD'
_PLUGIN = 'basicsr_lmar'


def is_enabled():
    return os.environ.get(ENV_VAR, '1').strip().lower() not in ('0', 'false', 'no', 'off')


class _PluginFirstLoader:
    """Delegates to basicsr's real loader, importing the plugin first."""

    def __init__(self, wrapped):
        self._wrapped = wrapped

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module):
        # Put the real loader back so that importlib.resources and reloads behave as without us.
        module.__loader__ = self._wrapped
        if module.__spec__ is not None:
            module.__spec__.loader = self._wrapped
        if _PLUGIN not in sys.modules:
            try:
                __import__(_PLUGIN)
            except Exception as exc:  # basicsr itself must stay importable when the plugin is broken
                warnings.warn(
                    f'basicsr-lmar could not register itself into basicsr ({type(exc).__name__}: {exc}); '
                    f'its archs/models are unavailable. Run `python -c "import {_PLUGIN}"` for the full '
                    f'traceback, or set {ENV_VAR}=0 to silence this.', RuntimeWarning, stacklevel=2)
        self._wrapped.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._wrapped, name)


class BasicsrImportHook:
    """``sys.meta_path`` finder that intercepts only the top-level ``basicsr`` import."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'basicsr' or not is_enabled():
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, BasicsrImportHook):
                continue
            find_spec = getattr(finder, 'find_spec', None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = _PluginFirstLoader(spec.loader)
                return spec
        return None


def install():
    """Adds the hook once (idempotent); a no-op when switched off or basicsr is already imported."""
    if not is_enabled() or 'basicsr' in sys.modules:
        return
    if not any(isinstance(finder, BasicsrImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, BasicsrImportHook())


def uninstall():
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, BasicsrImportHook)]
