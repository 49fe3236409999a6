"""BasicSR's ``SRModel`` at scale 1 for the UHD enhancers, with the plugin's additions.

Validation, testing and saving are SRModel's; its losses (``pixel_opt``, ``perceptual_opt``) train through
:class:`PluginModelMixin`'s step (validated options, the non-finite-step guard, ``train.amp``, EMA, atomic
checkpoints and exact-resume training states). One addition of its own: ``val.tile: {size: 1024,
overlap: 64}`` runs validation/testing tile by tile with :func:`basicsr_lmar.ops.tiled_forward.tiled_forward`,
bounding memory at the cost of exactness (instance norm statistics differ per tile;
``docs/enhancers.md``). Without ``tile`` the whole frame goes through the network at once, as in SRModel.
"""
import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY

from basicsr_lmar.models.model_options import Network, optimizer, scheduler
from basicsr_lmar.models.plugin_mixin import PluginModelMixin
from basicsr_lmar.ops.tiled_forward import tiled_forward
from basicsr_lmar.options import Option, OptionError, OptionSchema

TILE_SCHEMA = OptionSchema(
    'UHDEnhancerModel', {
        'size': Option(type=(int, list), min=8, doc='tile size, int or [h, w] (multiple of 8 avoids padding)'),
        'overlap': Option(64, type=(int, list), min=0, doc='pixels shared by neighbouring tiles'),
    })


@MODEL_REGISTRY.register()
class UHDEnhancerModel(PluginModelMixin, SRModel):
    """SRModel for scale-1 enhancement with validated options and optional tiled inference (``val.tile``)."""

    network_sections = {'network_g': Network('the enhancer to train, e.g. {type: UHDUNet, model_channel: 16}')}
    declared_options = {
        'train': {
            'ema_decay': Option(0.0, min=0, max=1, doc='EMA decay of net_g (0: no EMA)'),
            'optim_g': optimizer(doc='optimiser: {type: Adam, lr: ...}'),
            'scheduler': scheduler(),
            'pixel_opt': Option(None, type=dict, registry=LOSS_REGISTRY, doc='pixel loss, e.g. {type: L1Loss}'),
            'perceptual_opt': Option(None, type=dict, registry=LOSS_REGISTRY, doc='perceptual loss'),
        },
        'val': {'tile': Option(None, schema=TILE_SCHEMA, doc='tiled validation/testing: {size: 1024, overlap: 64}')},
    }

    @classmethod
    def validate_options(cls, opt):
        options = super().validate_options(opt)
        if opt.get('scale', 1) != 1:
            raise OptionError(f'[scale] UHDEnhancerModel enhances at the input size: scale must be 1, '
                              f"got {opt['scale']}")
        tile = options.val.tile
        if tile is not None:
            as_list = lambda value: [value] if isinstance(value, int) else list(value)  # noqa: E731
            if min(as_list(tile.overlap)) >= min(as_list(tile.size)):
                raise OptionError(f'[val.tile] overlap {tile.overlap} must be smaller than size {tile.size}')
        return options

    def training_losses(self, current_iter):
        with self.autocast():
            self.output = self.net_g(self.lq)
        self.output = self.output.float()
        return self.pixel_losses(self.output, self.gt)

    def test(self):
        tile = self.options.val.tile
        if tile is None:
            return super().test()
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        net.eval()
        with torch.no_grad():
            self.output = tiled_forward(net, self.lq, tile.size, tile.overlap)
        self.net_g.train()
