"""Converts the LMAR authors' released checkpoints (github.com/YPatrickW/LMAR, folder ``pretrained_models``)
to BasicSR checkpoints of this project.

    python scripts/convert_official_lmar.py base_model.bin \
        experiments/pretrained_models/cnn_i_uhdlol4k.pth

    python scripts/convert_official_lmar.py LMAR_model.bin \
        experiments/pretrained_models/cnn_i_uhdlol4k_from_lmar.pth \
        --resampler-output experiments/pretrained_models/lmar_cnn_i_uhdlol4k.pth

``base_model.bin`` (the frozen enhancer CNN-I) becomes a ``{'params': state_dict}`` file for
:class:`basicsr_lmar.archs.uhd_unet_arch.UHDUNet` (``block: invertible``), loadable with basicsr's
``path.pretrain_network_g`` / ``load_network``. ``--prefix model.`` converts the enhancer copy inside
``LMAR_model.bin`` (chosen automatically for that file). ``--resampler-output`` also writes the LMAR
resampler of ``LMAR_model.bin`` (``imnet.params`` + ``modulation.*``, 79,893 parameters) for
:class:`basicsr_lmar.archs.lmar_arch.LMARResampler` (``path.pretrain_network_g`` of the LMAR options;
either MLP backend). The converted weights are loaded strictly into fresh networks before saving, so a
file that does not fit is never written.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), osp.pardir)))

from basicsr_lmar.archs.lmar_arch import LMARResampler  # noqa: E402
from basicsr_lmar.archs.uhd_unet_arch import UHDUNet  # noqa: E402
from basicsr_lmar.checkpoints.lmar import (convert_official_lmar_resampler,  # noqa: E402
                                           convert_official_uhd_unet, load_official_state_dict)
from basicsr_lmar.checkpoints.state_dicts import atomic_torch_save  # noqa: E402


def convert_enhancer(source, prefix=''):
    """Returns a strictly loaded :class:`UHDUNet` (CNN-I) holding the enhancer of ``source``."""
    if isinstance(source, (str, os.PathLike)):
        source = load_official_state_dict(source)
    state_dict = convert_official_uhd_unet(source, prefix=prefix)
    net = UHDUNet(block='invertible')
    net.load_state_dict(state_dict, strict=True)
    return net


def convert_resampler(source):
    """Returns a strictly loaded :class:`LMARResampler` (torch MLP backend) holding the resampler of
    ``LMAR_model.bin``; ``source`` is a path or an already loaded state dict."""
    state_dict = load_official_state_dict(source) if isinstance(source, (str, os.PathLike)) else source
    net = LMARResampler(mlp_backend='torch')
    net.load_state_dict(convert_official_lmar_resampler(state_dict), strict=True)
    return net


def _save(net, path):
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    atomic_torch_save({'params': net.state_dict()}, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help="the authors' checkpoint (base_model.bin or LMAR_model.bin)")
    parser.add_argument('output', help='the BasicSR checkpoint to write ({"params": state_dict})')
    parser.add_argument('--prefix', default=None, help="key prefix of the enhancer ('' for base_model.bin, "
                        "'model.' for LMAR_model.bin; default: detected)")
    parser.add_argument('--resampler-output', default=None,
                        help='LMAR_model.bin only: also write its LMAR resampler here ({"params": state_dict})')
    args = parser.parse_args(argv)
    state_dict = load_official_state_dict(args.source)
    is_lmar = 'imnet.params' in state_dict
    prefix = args.prefix if args.prefix is not None else ('model.' if is_lmar else '')
    if args.resampler_output and not is_lmar:
        parser.error(f'--resampler-output: {args.source} holds no LMAR resampler (no imnet.params); '
                     'use the LMAR_model.bin checkpoint')
    net = convert_enhancer(state_dict, prefix)
    _save(net, args.output)
    count = sum(p.numel() for p in net.parameters())
    print(f'wrote {args.output}: UHDUNet(block=invertible), {len(net.state_dict())} tensors, {count:,} parameters; '
          f'bottleneck module {UHDUNet.BOTTLENECK_LAYER!r}')
    if args.resampler_output:
        resampler = convert_resampler(state_dict)
        _save(resampler, args.resampler_output)
        count = sum(p.numel() for p in resampler.parameters())
        print(f'wrote {args.resampler_output}: LMARResampler (lanczos3, no antialiasing), {count:,} parameters')


if __name__ == '__main__':
    main()
