"""Converts the IRN authors' checkpoint to this plugin's InvRescaleNet (BasicSR ``{'params': ...}``).

    python scripts/convert_official_irn.py IRN_x4.pth experiments/pretrained_models/IRN_x4.pth

Prints the ``network_g`` options inferred from the tensors and checks that they load strictly.
"""
import argparse
import os

import basicsr_lmar  # noqa: F401  (registers InvRescaleNet)
from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_lmar.checkpoints.irn import convert_official_irn_state_dict
from basicsr_lmar.checkpoints.state_dicts import atomic_torch_save, read_checkpoint


def convert(source, target):
    checkpoint = read_checkpoint(source, "the authors' IRN checkpoint")
    state_dict, options = convert_official_irn_state_dict(checkpoint)
    net = ARCH_REGISTRY.get('InvRescaleNet')(**options)
    net.load_state_dict(state_dict, strict=True)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    atomic_torch_save({'params': net.state_dict()}, target)
    return options


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help="the authors' IRN_x2.pth / IRN_x4.pth")
    parser.add_argument('target', help='output .pth for network_g (param_key params)')
    args = parser.parse_args()
    options = convert(args.source, args.target)
    print(f'wrote {args.target}; network_g: type: InvRescaleNet, ' + ', '.join(f'{k}: {v}' for k, v in options.items()))


if __name__ == '__main__':
    main()
