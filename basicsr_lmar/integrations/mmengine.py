"""The plugin's archs in an mmengine ``Registry`` (extra ``mm``), for OpenMMLab-style configs.

::

    from basicsr_lmar.integrations.mmengine import MODELS
    net = MODELS.build(dict(type='UHDUNet', block='half_instance_norm'))

In an mmengine config, ``type='basicsr_lmar.UHDUNet'`` reaches the archs from mmengine's root registry
with no import in the config: mmengine imports ``basicsr_lmar.registry``, which creates ``MODELS`` (a
child of ``mmengine.registry.MODELS`` with scope ``basicsr_lmar``).

Every arch that the plugin registers in basicsr's ``ARCH_REGISTRY`` (a class defined in a
``basicsr_lmar.*`` module) is mirrored, including archs added later: the mirror is refreshed at import
and again whenever a name is looked up. Constructor options are validated exactly as through basicsr.

Without mmengine this module still imports; ``MODELS`` is then a placeholder whose ``build``/``get``
raise an :class:`ImportError` that says how to install it, and :data:`MMENGINE_AVAILABLE` is False.
"""
from basicsr.utils.registry import ARCH_REGISTRY

try:
    from mmengine.registry import MODELS as MMENGINE_MODELS
    from mmengine.registry import Registry
except ImportError:  # the `mm` extra is not installed
    Registry = None

MMENGINE_AVAILABLE = Registry is not None
PLUGIN_PACKAGE = 'basicsr_lmar'
SCOPE = 'basicsr_lmar'

__all__ = ['MODELS', 'MMENGINE_AVAILABLE', 'plugin_archs', 'sync']


def plugin_archs():
    """``{name: class}`` of the archs of this plugin in basicsr's ARCH_REGISTRY (after importing them all)."""
    import basicsr_lmar.archs  # noqa: F401  (registers every *_arch.py module)

    return {name: cls for name, cls in ARCH_REGISTRY
            if getattr(cls, '__module__', '').split('.')[0] == PLUGIN_PACKAGE}


if MMENGINE_AVAILABLE:

    class _ArchMirror(Registry):
        """An mmengine Registry that refreshes its copy of the plugin's basicsr archs before lookups."""

        def get(self, key):
            sync()
            return super().get(key)

    MODELS = _ArchMirror('model', parent=MMENGINE_MODELS, scope=SCOPE)

else:

    class _MissingMMEngine:
        """Stands in for ``MODELS`` when mmengine is not installed."""

        def _missing(self, *args, **kwargs):
            raise ImportError('mmengine is not installed, so the plugin archs are only in the ARCH_REGISTRY of '
                              'basicsr. '
                              'Install it with `pip install "basicsr-lmar[mm]"` (or `pip install mmengine`), or build '
                              'with basicsr.archs.build_network(dict(type=...)).')

        build = get = register_module = _missing

        def __contains__(self, key):
            return False

        def __repr__(self):
            return '<MODELS placeholder: mmengine is not installed>'

    MODELS = _MissingMMEngine()


def sync():
    """Mirrors every plugin arch not yet in :data:`MODELS`; returns the names added (no-op without mmengine)."""
    if not MMENGINE_AVAILABLE:
        return []
    added = []
    for name, cls in plugin_archs().items():
        if MODELS._module_dict.get(name) is not cls:
            MODELS.register_module(name=name, module=cls, force=True)
            added.append(name)
    return added


sync()
