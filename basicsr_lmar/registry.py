"""Registries of the plugin beyond BasicSR's own.

``RESCALER_REGISTRY`` holds rescaler adapters: classes that wrap trained networks into the rescaler
protocol (``downscale(hr)``, ``upscale(lr)``, ``scale``; see
:mod:`basicsr_lmar.ops.collaborative_downscaling`). An adapter's constructor arguments named
``network_*`` receive the networks that a model built from the YAML sections of the same name; its
other arguments are options of the YAML ``rescaler`` section.

``MODELS`` (only when mmengine is installed, extra ``mm``): the plugin's archs in an mmengine registry
of scope ``basicsr_lmar`` (:mod:`basicsr_lmar.integrations.mmengine`). mmengine resolves a config's
``type='basicsr_lmar.X'`` by importing ``basicsr_lmar.registry`` and looking for the child registry of
that scope, so this module creates it.
"""
import importlib.util

from basicsr.utils.registry import Registry

RESCALER_REGISTRY = Registry('rescaler')

if importlib.util.find_spec('mmengine') is not None:
    from basicsr_lmar.integrations.mmengine import MODELS  # noqa: E402,F401  (creates the scope's registry)
