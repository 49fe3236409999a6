"""Converts the LMAR authors' released checkpoints to BasicSR checkpoints of this project.

    python scripts/convert_official_lmar.py ../shared/reference/lmar_official/base_model.bin \
        experiments/pretrained_models/cnn_i_uhdlol4k.pth

``base_model.bin`` (the frozen enhancer CNN-I) becomes a ``{'params': state_dict}`` file for
:class:`basicsr_lmar.archs.uhd_unet_arch.UHDUNet` (``block: invertible``), loadable with basicsr's
``path.pretrain_network_g`` / ``load_network``. ``--prefix model.`` converts the enhancer copy inside
``LMAR_model.bin``. The converted weights are loaded strictly into a fresh UHDUNet before saving, so a
file that does not fit is never written.
"""
import argparse
import os
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), osp.pardir)))

from basicsr_lmar.archs.uhd_unet_arch import UHDUNet  # noqa: E402
from basicsr_lmar.utils.checkpoint_conversion import convert_official_uhd_unet, load_official_state_dict  # noqa: E402


def convert_enhancer(source, prefix=''):
    """Returns a strictly loaded :class:`UHDUNet` (CNN-I) holding the enhancer of ``source``."""
    state_dict = convert_official_uhd_unet(load_official_state_dict(source), prefix=prefix)
    net = UHDUNet(block='invertible')
    net.load_state_dict(state_dict, strict=True)
    return net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help="the authors' checkpoint (base_model.bin or LMAR_model.bin)")
    parser.add_argument('output', help='the BasicSR checkpoint to write ({"params": state_dict})')
    parser.add_argument('--prefix', default='', help="key prefix of the enhancer ('' for base_model.bin, "
                        "'model.' for LMAR_model.bin)")
    args = parser.parse_args(argv)
    net = convert_enhancer(args.source, args.prefix)
    if osp.dirname(args.output):
        os.makedirs(osp.dirname(args.output), exist_ok=True)
    torch.save({'params': net.state_dict()}, args.output)
    count = sum(p.numel() for p in net.parameters())
    print(f'wrote {args.output}: UHDUNet(block=invertible), {len(net.state_dict())} tensors, {count:,} parameters; '
          f'bottleneck module {UHDUNet.BOTTLENECK_LAYER!r}')


if __name__ == '__main__':
    main()
