"""CAR in the rescaler registry, so that ``HCDModel`` can build it from option sections.

``CARPairRescaler(network_g, network_sr=None)`` is :class:`basicsr_lmar.archs.car_arch.CARRescaler`
with the constructor arguments named after the YAML sections of ``CARModel`` (``network_g``: the
``CARResamplerNet``; ``network_sr``: the upscaler, e.g. EDSR or ``BicubicUpscaler``; absent = bicubic).
"""
from basicsr_lmar.archs.car_arch import CARRescaler
from basicsr_lmar.utils.registry import RESCALER_REGISTRY


@RESCALER_REGISTRY.register()
class CARPairRescaler(CARRescaler):
    """Rescaler protocol for a trained CAR pair: CAR resampling down, the SR network up."""

    def __init__(self, network_g, network_sr=None):
        super().__init__(network_g, network_sr)
