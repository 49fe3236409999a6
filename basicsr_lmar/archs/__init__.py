"""Imports every `*_arch.py` module here so that its classes register in basicsr's ARCH_REGISTRY."""
import importlib
from os import path as osp

from basicsr.utils import scandir

_folder = osp.dirname(osp.abspath(__file__))
_module_names = sorted(osp.splitext(osp.basename(v))[0] for v in scandir(_folder) if v.endswith('_arch.py'))
_modules = [importlib.import_module(f'basicsr_lmar.archs.{name}') for name in _module_names]
