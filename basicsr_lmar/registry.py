"""Registries of the plugin beyond BasicSR's own.

``RESCALER_REGISTRY`` holds rescaler adapters: classes that wrap trained networks into the rescaler
protocol (``downscale(hr)``, ``upscale(lr)``, ``scale``; see
:mod:`basicsr_lmar.ops.collaborative_downscaling`). An adapter's constructor arguments named
``network_*`` receive the networks that a model built from the YAML sections of the same name; its
other arguments are options of the YAML ``rescaler`` section.
"""
from basicsr.utils.registry import Registry

RESCALER_REGISTRY = Registry('rescaler')
