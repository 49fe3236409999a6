"""Converts the HCFlow authors' rescaling checkpoint to this plugin's HCFlowNet (BasicSR ``{'params': ...}``).

    python scripts/convert_official_hcflow.py Rescaling_DF2K_X4_HCFlow.pth experiments/pretrained_models/HCFlow_x4.pth

Prints the ``network_g`` options inferred from the tensors and checks that they load strictly.
"""
import basicsr_lmar  # noqa: F401  (registers HCFlowNet)
from basicsr_lmar.checkpoints.hcflow import convert_official_hcflow_state_dict
from basicsr_lmar.checkpoints.state_dicts import network_converter_main

if __name__ == '__main__':
    network_converter_main(__doc__, "the authors' Rescaling_DF2K_X4_HCFlow.pth",
                           "the authors' HCFlow rescaling checkpoint", convert_official_hcflow_state_dict, 'HCFlowNet')
