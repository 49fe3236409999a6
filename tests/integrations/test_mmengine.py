import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

import basicsr_lmar  # noqa: F401
from basicsr_lmar.options import OptionError

mm_registry = pytest.importorskip('basicsr_lmar.integrations.mmengine')
if not mm_registry.MMENGINE_AVAILABLE:
    pytest.skip('mmengine is not installed (extra `mm`)', allow_module_level=True)

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_enhancers_build_from_mmengine_configs():
    from mmengine.registry import MODELS as ROOT

    net = mm_registry.MODELS.build(dict(type='UHDUNet', block='half_instance_norm'))
    assert sum(p.numel() for p in net.parameters()) == 295_756
    restormer = ROOT.build(dict(type='basicsr_lmar.Restormer', dim=8, num_blocks=[1, 2, 2, 4]))
    assert sum(p.numel() for p in restormer.parameters()) == 421_484


def test_only_plugin_archs_are_mirrored():
    mirrored = set(mm_registry.MODELS.module_dict)
    assert {'UHDUNet', 'Restormer'} <= mirrored
    assert 'RRDBNet' in ARCH_REGISTRY and 'RRDBNet' not in mirrored  # a stock basicsr arch


def test_archs_registered_later_are_mirrored_on_lookup():
    name = 'MirrorProbeArch'
    probe = type(name, (nn.Module, ), {'__module__': 'basicsr_lmar.archs.mirror_probe_arch',
                                        '__init__': lambda self, width=2: nn.Module.__init__(self)})
    ARCH_REGISTRY.register(probe)
    try:
        assert isinstance(mm_registry.MODELS.build(dict(type=name)), probe)
    finally:
        ARCH_REGISTRY._obj_map.pop(name)
        mm_registry.MODELS._module_dict.pop(name, None)


def test_option_errors_surface_through_mmengine():
    with pytest.raises(OptionError, match="'block'"):
        mm_registry.MODELS.build(dict(type='UHDUNet', block='hin'))


@pytest.mark.slow
def test_plugin_imports_without_mmengine():
    script = textwrap.dedent('''
        import sys
        sys.modules['mmengine'] = None  # as if the `mm` extra were not installed
        import basicsr_lmar
        from basicsr.archs import build_network
        from basicsr_lmar.integrations.mmengine import MODELS, MMENGINE_AVAILABLE
        assert not MMENGINE_AVAILABLE and 'UHDUNet' not in MODELS
        build_network({'type': 'UHDUNet', 'model_channel': 2})
        try:
            MODELS.build(dict(type='UHDUNet'))
        except ImportError as error:
            assert 'basicsr-lmar[mm]' in str(error), error
        else:
            raise AssertionError('MODELS.build worked without mmengine')
        print('ok')
    ''')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith('ok')


@pytest.mark.slow
def test_mmengine_scope_finds_the_plugin_without_an_import():
    """``type='basicsr_lmar.X'`` in an mmengine config: mmengine imports ``basicsr_lmar.registry`` itself."""
    script = textwrap.dedent('''
        import sys
        from mmengine.registry import MODELS
        assert 'basicsr_lmar' not in sys.modules
        net = MODELS.build(dict(type='basicsr_lmar.UHDUNet', block='half_instance_norm'))
        print(type(net).__module__, sum(p.numel() for p in net.parameters()))
    ''')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ['basicsr_lmar.archs.uhd_unet_arch', '295756']
