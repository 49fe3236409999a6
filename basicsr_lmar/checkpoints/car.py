"""Conversion of the CAR authors' released weights (``sunwj/CAR``) to this project's networks.

* ``kgn.pth``: their kernel-generation network ``DSN`` saved from ``nn.DataParallel`` (keys start with
  ``module.``) -> :class:`basicsr_lmar.archs.car_arch.CARResamplerNet` (``network_g``):
  :func:`convert_official_car_resampler`.
* ``usn.pth``: their upscaler, EDSR in EDSR-PyTorch naming (32 blocks, 256 features, res_scale 0.1,
  rgb_range 1), also under ``module.`` -> basicsr's ``EDSR`` (``network_sr``, ``img_range: 1``):
  :func:`convert_official_edsr`, with :func:`edsr_options` for the matching options.

The fixed mean-shift convolutions (``sub_mean``/``add_mean``) are dropped: here they are constants.
A key without a mapping raises a ``KeyError`` naming it.
"""
import functools
import re

from basicsr_lmar.checkpoints.state_dicts import rename_keys, strip_module_prefix, unwrap_checkpoint

MEAN_SHIFT_KEYS = ('sub_mean.', 'add_mean.')


# Authors' DSN module path (after `module.`) -> CARResamplerNet module path. Their Sequentials put a
# ReflectionPad2d before each convolution; ours pad inside the convolution, hence other indices.
_RESAMPLER_RULES = [
    (r'ds_1\.1\.', 'head.0.'),
    (r'ds_2\.downsample\.1\.', 'down2.1.'),
    (r'ds_4\.downsample\.1\.', 'down4.1.'),
    (r'res_4\.(\d+)\.transform\.1\.', r'body.\1.conv1.'),
    (r'res_4\.(\d+)\.transform\.4\.', r'body.\1.conv2.'),
    (r'ds_8\.downsample\.1\.', 'down8.1.'),
]
for _theirs, _ours in (('kernels_trunk', 'kernel_trunk'), ('offsets_trunk', 'offset_trunk')):
    _RESAMPLER_RULES += [(rf'{_theirs}\.1\.', f'{_ours}.0.'), (rf'{_theirs}\.4\.', f'{_ours}.2.'),
                         (rf'{_theirs}\.7\.', f'{_ours}.4.'), (rf'{_theirs}\.9\.upsample\.0\.', f'{_ours}.6.'),
                         (rf'{_theirs}\.11\.', f'{_ours}.8.')]
for _theirs, _ours in (('kernels_weight', 'kernel_head'), ('offsets_h_generation', 'offset_h_head'),
                       ('offsets_v_generation', 'offset_v_head')):
    _RESAMPLER_RULES += [(rf'{_theirs}\.1\.', f'{_ours}.0.'), (rf'{_theirs}\.4\.', f'{_ours}.2.')]


def _rename(rules, key):
    """``key`` renamed by the first of ``rules`` (``(pattern, replacement)``) that matches its start, or None."""
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match:
            return match.expand(replacement) + key[match.end():]
    return None


def _convert(checkpoint, rules, source):
    """An authors' checkpoint's state dict renamed by ``rules`` (``module.`` prefixes stripped, mean shifts dropped)."""
    state_dict = strip_module_prefix(unwrap_checkpoint(checkpoint))
    return rename_keys(state_dict, functools.partial(_rename, rules), source, skip=MEAN_SHIFT_KEYS)


def convert_official_car_resampler(state_dict):
    """Authors' ``kgn.pth`` state dict -> ``CARResamplerNet`` state dict (mean shift dropped)."""
    return _convert(state_dict, _RESAMPLER_RULES, "the CAR authors' kgn.pth")


def _edsr_rules(num_block):
    return [
        (r'head\.0\.', 'conv_first.'),
        (r'body\.(\d+)\.body\.0\.', r'body.\1.conv1.'),
        (r'body\.(\d+)\.body\.2\.', r'body.\1.conv2.'),
        (rf'body\.{num_block}\.', 'conv_after_body.'),
        (r'tail\.0\.(\d+)\.', r'upsample.\1.'),
        (r'tail\.1\.', 'conv_last.'),
    ]


def convert_official_edsr(state_dict):
    """EDSR-PyTorch (``usn.pth``) state dict -> basicsr ``EDSR`` state dict (mean shifts dropped)."""
    state_dict = strip_module_prefix(unwrap_checkpoint(state_dict))
    blocks = {int(m.group(1)) for m in (re.match(r'body\.(\d+)\.body\.', k) for k in state_dict) if m}
    return _convert(state_dict, _edsr_rules(len(blocks)), "the CAR authors' usn.pth (EDSR-PyTorch)")


def edsr_options(state_dict, scale):
    """basicsr EDSR options matching a converted state dict."""
    num_feat = state_dict['conv_first.weight'].shape[0]
    num_block = len({k.split('.')[1] for k in state_dict if k.startswith('body.')})
    return dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_block=num_block, upscale=scale,
                res_scale=0.1, img_range=1., rgb_mean=[0.4488, 0.4371, 0.4040])
