"""basicsr-lmar: LMAR, CAR and HCD as a BasicSR plugin.

Importing this package registers every arch, model, loss and dataset of the plugin into BasicSR's
registries, and changes nothing else of basicsr but what ``runtime.compat`` does (crash repairs, two quiet
imports), which must come first: it is needed before any ``basicsr`` module is imported below.
"""
# isort: off
from basicsr_lmar.runtime import compat as _compat

_compat.install()

from basicsr_lmar.version import __version__  # noqa: E402
from basicsr_lmar import archs, data, losses, models, ops  # noqa: E402,F401  (registration)

__all__ = ['__version__']
