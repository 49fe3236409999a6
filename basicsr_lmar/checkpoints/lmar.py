"""Conversion of the LMAR authors' released checkpoints to this project's state dicts.

The authors (``YPatrickW/LMAR``) save ``{"epoch", "state_dict", "optimizer", "step"}``. Their enhancer
("CNN-I", class ``net``) has top-level modules ``hr_inc`` (stem), ``hr_backbone`` (the U-Net) and
``final_out`` (head); in ``LMAR_model.bin`` the same tensors sit under ``model.`` (and again under
``extractor_mid.`` for the bottleneck extractor), next to the resampler's ``imnet.params`` and
``modulation.*``.

:func:`convert_official_uhd_unet` renames the enhancer tensors found under a prefix to the keys of
:class:`basicsr_lmar.archs.uhd_unet_arch.UHDUNet`; every key under the prefix must match a rule (else
:class:`KeyError` naming it), keys outside the prefix are left alone for the caller.
"""
import re

from basicsr_lmar.checkpoints.state_dicts import read_checkpoint, rename_keys, unwrap_checkpoint

# Renames of whole path segments of the authors' U-Net body (``hr_backbone.<name>``).
_BODY_MODULES = {
    'layer_dowm1': 'encoder_block1',
    'dowm1': 'downsample1',
    'skip_down1': 'down_shortcut1',
    'skip1': 'down_fusion1',
    'layer_dowm2': 'encoder_block2',
    'dowm2': 'downsample2',
    'skip_down2': 'down_shortcut2',
    'skip2': 'down_fusion2',
    'layer_bottom': 'bottom_block',
    'up2': 'upsample2',
    'layer_up2': 'decoder_block2',
    'skip_up4': 'up_shortcut2',
    'skip4': 'up_fusion2',
    'fus2': 'skip_fusion2',
    'up1': 'upsample1',
    'layer_up1': 'decoder_block1',
    'skip_up6': 'up_shortcut1',
    'skip6': 'up_fusion1',
    'fus1': 'skip_fusion1',
}
_RESAMPLERS = ('dowm1', 'dowm2', 'up2', 'up1', 'skip_down1', 'skip_down2', 'skip_up4', 'skip_up6')
_CONV_FUSIONS = ('skip1', 'skip2', 'skip4', 'skip6')
_HIN_FUSIONS = ('fus1', 'fus2')
_PROCESSING_BLOCKS = ('layer_dowm1', 'layer_dowm2', 'layer_bottom', 'layer_up2', 'layer_up1')

# The authors' HinBlock -> HalfInstanceNormBlock.
_HIN_PARTS = {'conv_1': 'conv1', 'norm': 'half_norm', 'conv_2.0': 'conv2', 'identity': 'shortcut'}
# The authors' InvBlock sub-networks -> InvertibleBlock.
_COUPLING_PARTS = {'F': 'shift_first', 'G': 'shift_second', 'H': 'log_scale_second'}
_CONV_NORM = {'0': 'conv', '1': 'norm'}
_FUSION_SCALES = {'alpha1': 'transform_scale', 'alpha2': 'main_scale'}

_HIN_PATTERN = r'(?P<part>conv_1|norm|conv_2\.0|identity)\.(?P<param>weight|bias)'


def _hin(match):
    return f"{_HIN_PARTS[match['part']]}.{match['param']}"


def _rename_body_key(key):
    """Maps one key relative to ``hr_backbone.`` or returns None when no rule applies."""
    module, _, rest = key.partition('.')
    if module not in _BODY_MODULES:
        return None
    new_module = _BODY_MODULES[module]
    if module in _RESAMPLERS:
        m = re.fullmatch(r'(?P<i>[01])\.(?P<param>weight|bias)', rest)
        return m and f"{new_module}.{_CONV_NORM[m['i']]}.{m['param']}"
    if module in _CONV_FUSIONS or module in _HIN_FUSIONS:
        if rest in _FUSION_SCALES:
            return f'{new_module}.{_FUSION_SCALES[rest]}'
        if module in _CONV_FUSIONS:
            m = re.fullmatch(r'body\.(?P<i>[01])\.(?P<param>weight|bias)', rest)
            return m and f"{new_module}.transform.{_CONV_NORM[m['i']]}.{m['param']}"
        m = re.fullmatch(r'body\.0\.' + _HIN_PATTERN, rest)
        return m and f'{new_module}.transform.{_hin(m)}'
    # processing blocks: invertible (CNN-I) or plain HIN (CNN-H)
    m = re.fullmatch(r'body\.0\.(?P<sub>[FGH])\.' + _HIN_PATTERN, rest)
    if m:
        return f"{new_module}.{_COUPLING_PARTS[m['sub']]}.{_hin(m)}"
    m = re.fullmatch(r'body\.0\.' + _HIN_PATTERN, rest)
    return m and f'{new_module}.{_hin(m)}'


def official_uhd_unet_key(key):
    """This project's :class:`UHDUNet` key for one key of the authors' enhancer (without prefix), or None."""
    if key.startswith('hr_backbone.'):
        new = _rename_body_key(key[len('hr_backbone.'):])
        return new and f'body.{new}'
    m = re.fullmatch(r'hr_inc\.double_conv\.(?P<i>[02])\.weight', key)
    if m:
        return f"stem.{m['i']}.weight"
    if key == 'final_out.weight':
        return 'head.weight'
    return None


def convert_official_uhd_unet(state_dict, prefix=''):
    """Converts the authors' enhancer tensors found under ``prefix`` to a :class:`UHDUNet` state dict.

    Args:
        state_dict: the authors' ``checkpoint['state_dict']`` (``base_model.bin``: ``prefix=''``;
            ``LMAR_model.bin``: ``prefix='model.'``).
        prefix: only keys starting with it are converted (the prefix is stripped first); other keys
            are ignored, so a caller can convert the rest of a composite checkpoint itself.

    Returns:
        An ``OrderedDict`` of this project's keys -> tensors (same tensor objects).

    Raises:
        KeyError: a key under ``prefix`` matches no rule (named in the message), or no key is under it.
    """
    return rename_keys(state_dict, official_uhd_unet_key, 'an LMAR enhancer checkpoint (hr_inc / hr_backbone / '
                       'final_out)', prefix)


def load_official_state_dict(path):
    """Reads an authors' ``.bin`` checkpoint on CPU and returns its ``state_dict`` (or the dict itself).

    Their files (``{"epoch", "state_dict", "optimizer", "step"}``) hold only tensors and plain
    containers, so they load with ``weights_only=True``; anything else is refused with a message."""
    return unwrap_checkpoint(read_checkpoint(path, "the authors' checkpoint"))


def _restormer_key(key):
    key = re.sub(r'\.(norm[12])\.body\.(weight|bias)$', r'.\1.\2', key)
    key = re.sub(r'^((?:down|up)\d_\d)\.body\.0\.weight$', r'\1.conv.weight', key)
    return re.sub(r'^patch_embed\.proj\.', 'patch_embed.', key)


def convert_official_restormer(state_dict, prefix=''):
    """Renames an official Restormer (``swz30/Restormer``) state dict to
    :class:`basicsr_lmar.archs.restormer_arch.Restormer` keys: ``*.body.weight``/``*.body.bias`` of the
    LayerNorms -> ``*.weight``/``*.bias``, ``down*/up*.body.0.weight`` -> ``.conv.weight``,
    ``patch_embed.proj.*`` -> ``patch_embed.*``. Accepts a BasicSR checkpoint dict (``params``)."""
    return rename_keys(unwrap_checkpoint(state_dict), _restormer_key, 'an official Restormer checkpoint', prefix)


#: Keys of the LMAR resampler inside the authors' ``LMAR_model.bin`` (tiny-cuda-nn MLP + eq. 9's 1x1 conv).
OFFICIAL_LMAR_RESAMPLER_KEYS = ('imnet.params', 'modulation.weight', 'modulation.bias')


def convert_official_lmar_resampler(state_dict):
    """Picks the resampler of an authors' ``LMAR_model.bin`` state dict for
    :class:`basicsr_lmar.archs.lmar_arch.LMARResampler` (default options).

    The keys are the same on both sides: ``imnet.params`` is tiny-cuda-nn's flat FullyFusedMLP vector
    (79,872 fp32 values), which the torch backend stores in the same layout; ``modulation.*`` is the
    1x1 conv. The enhancer copies (``model.*``, ``extractor_mid.*``) are left out.
    """
    missing = [key for key in OFFICIAL_LMAR_RESAMPLER_KEYS if key not in state_dict]
    if missing:
        raise KeyError(f'not an LMAR_model.bin state dict: missing {missing}; first keys: {list(state_dict)[:5]}')
    return {key: state_dict[key].detach().clone().float() for key in OFFICIAL_LMAR_RESAMPLER_KEYS}
