"""Converts the IRN authors' checkpoint to this plugin's InvRescaleNet (BasicSR ``{'params': ...}``).

    python scripts/convert_official_irn.py IRN_x4.pth experiments/pretrained_models/IRN_x4.pth

Prints the ``network_g`` options inferred from the tensors and checks that they load strictly.
"""
import basicsr_lmar  # noqa: F401  (registers InvRescaleNet)
from basicsr_lmar.checkpoints.irn import convert_official_irn_state_dict
from basicsr_lmar.checkpoints.state_dicts import network_converter_main

if __name__ == '__main__':
    network_converter_main(__doc__, "the authors' IRN_x2.pth / IRN_x4.pth", "the authors' IRN checkpoint",
                           convert_official_irn_state_dict, 'InvRescaleNet')
