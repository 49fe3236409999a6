"""Build hook: ships ``basicsr_lmar-autoload.pth`` next to the package.

The ``.pth`` file makes the plugin register itself whenever ``basicsr`` is imported, so the stock
BasicSR entry points (``python -m basicsr.train``, ``basicsr/train.py`` of a checkout) see the
plugin's archs, models, losses and datasets without any code change. Everything else about the
package lives in ``setup.cfg``.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

AUTOLOAD_PTH = 'basicsr_lmar-autoload.pth'


class BuildPyWithAutoloadPth(build_py):
    """Copies the autoload ``.pth`` into the root of the wheel (site-packages once installed).

    Regular wheels are assembled from ``build_lib``. Editable wheels (PEP 660) only contain what is
    written into the unpacked wheel, which setuptools exposes as the ``install`` command's
    ``install_lib`` while ``editable_mode`` is set; so the file goes there in that mode. Either way
    it is listed in the wheel's RECORD, and ``pip uninstall`` removes it.
    """

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            target_dir = self.get_finalized_command('install').install_lib
        else:
            target_dir = self.build_lib
        self.copy_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), AUTOLOAD_PTH),
                       os.path.join(target_dir, AUTOLOAD_PTH))

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, 'editable_mode', False):
            outputs.append(os.path.join(self.build_lib, AUTOLOAD_PTH))
        return outputs


setup(cmdclass={'build_py': BuildPyWithAutoloadPth})
