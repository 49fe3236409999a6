"""BasicSR's ``SRModel`` at scale 1 for the UHD enhancers, with option checks and optional tiled validation.

Training is SRModel's (pixel loss, optimiser, scheduler, EMA). Two additions:

- the ``network_g`` and ``train`` sections are validated before anything is built (a misspelt key or
  value is named with the allowed ones);
- ``val.tile: {size: 1024, overlap: 64}`` runs validation/testing tile by tile with
  :func:`basicsr_lmar.ops.tiled_forward.tiled_forward`, bounding memory at the cost of exactness
  (instance norm statistics differ per tile; ``docs/enhancers.md``). Without ``tile`` the whole frame
  goes through the network at once, exactly as in SRModel.
"""
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.options import Option, OptionError, OptionSchema, validate_registered
from basicsr_lmar.ops.tiled_forward import tiled_forward

TRAIN_SCHEMA = OptionSchema(
    'UHDEnhancerModel', {
        'ema_decay': Option(0.0, min=0, max=1, doc='EMA decay of net_g (0: no EMA)'),
        'optim_g': Option(type=dict, doc='optimiser: {type: Adam, lr: ...}'),
        'scheduler': Option(type=dict, doc='{type: MultiStepLR, milestones: [...], gamma: ...}'),
        'total_iter': Option(type=int, min=1, doc='training iterations'),
        'warmup_iter': Option(-1, type=int, doc='linear warm-up iterations (-1: none)'),
        'pixel_opt': Option(None, type=dict, doc='pixel loss, e.g. {type: L1Loss, loss_weight: 1.0}'),
        'perceptual_opt': Option(None, type=dict, doc='perceptual loss'),
    })

TILE_SCHEMA = OptionSchema(
    'UHDEnhancerModel', {
        'size': Option(type=(int, list), min=8, doc='tile size, int or [h, w] (multiple of 8 avoids padding)'),
        'overlap': Option(64, type=(int, list), min=0, doc='pixels shared by neighbouring tiles'),
    })


@MODEL_REGISTRY.register()
class UHDEnhancerModel(SRModel):
    """SRModel for scale-1 enhancement with validated options and optional tiled inference (``val.tile``)."""

    def __init__(self, opt):
        validate_registered(opt['network_g'], 'network_g', ARCH_REGISTRY)
        if opt.get('scale', 1) != 1:
            raise OptionError(f'[scale] UHDEnhancerModel enhances at the input size: scale must be 1, '
                              f"got {opt['scale']}")
        if opt.get('is_train', False):
            TRAIN_SCHEMA.validate(opt['train'], 'train')
        tile = (opt.get('val') or {}).get('tile')
        self.tile_opt = dict(TILE_SCHEMA.validate(tile, 'val.tile')) if tile else None
        if self.tile_opt:
            size, overlap = self.tile_opt['size'], self.tile_opt['overlap']
            as_list = lambda value: [value] if isinstance(value, int) else list(value)  # noqa: E731
            if min(as_list(overlap)) >= min(as_list(size)):
                raise OptionError(f'[val.tile] overlap {overlap} must be smaller than size {size}')
        super().__init__(opt)

    def test(self):
        if self.tile_opt is None:
            return super().test()
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        net.eval()
        with torch.no_grad():
            self.output = tiled_forward(net, self.lq, self.tile_opt['size'], self.tile_opt['overlap'])
        self.net_g.train()
