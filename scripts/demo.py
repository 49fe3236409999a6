"""``make demo``: the main job on the embedded default data (scikit-image's bundled photos).

Runs the LMAR demo (:mod:`scripts.lmar_demo`): pretrains a tiny UHD U-Net enhancer on synthetic
low-light crops, trains an LMAR resampler in front of it through the plugin's BasicSR entry, and
prints the with/without-LMAR table of the test photos over working sizes and resizers; the table
(markdown, CSV), the PSNR-vs-size plot and example images are saved under ``results/lmar_demo/``.
"""
import os
import runpy
import sys

if __name__ == '__main__':
    sys.argv = [os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lmar_demo.py')] + sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')
