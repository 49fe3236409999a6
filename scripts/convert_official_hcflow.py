"""Converts the HCFlow authors' rescaling checkpoint to this plugin's HCFlowNet (BasicSR ``{'params': ...}``).

    python scripts/convert_official_hcflow.py Rescaling_DF2K_X4_HCFlow.pth experiments/pretrained_models/HCFlow_x4.pth

Prints the ``network_g`` options inferred from the tensors and checks that they load strictly.
"""
import argparse
import os

import basicsr_lmar  # noqa: F401  (registers HCFlowNet)
from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_lmar.checkpoints.hcflow import convert_official_hcflow_state_dict
from basicsr_lmar.checkpoints.state_dicts import atomic_torch_save, read_checkpoint


def convert(source, target):
    checkpoint = read_checkpoint(source, "the authors' HCFlow rescaling checkpoint")
    state_dict, options = convert_official_hcflow_state_dict(checkpoint)
    net = ARCH_REGISTRY.get('HCFlowNet')(**options)
    net.load_state_dict(state_dict, strict=True)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    atomic_torch_save({'params': net.state_dict()}, target)
    return options


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help="the authors' Rescaling_DF2K_X4_HCFlow.pth")
    parser.add_argument('target', help='output .pth for network_g (param_key params)')
    args = parser.parse_args()
    options = convert(args.source, args.target)
    print(f'wrote {args.target}; network_g: type: HCFlowNet, ' + ', '.join(f'{k}: {v}' for k, v in options.items()))


if __name__ == '__main__':
    main()
