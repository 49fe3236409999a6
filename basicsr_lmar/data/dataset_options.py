"""What every plugin dataset accepts besides its own options.

BasicSR passes a dataset the whole YAML section: keys read by ``build_dataloader`` and the training
loop (batch size, workers, ...) and keys that ``parse_options`` adds (``phase``, ``scale``). A dataset
schema lets them through unchecked (BasicSR checks or ignores them) and validates its own keys.
"""
from basicsr_lmar.options import OptionSchema

BASICSR_DATASET_KEYS = ('name', 'type', 'phase', 'scale', 'batch_size_per_gpu', 'num_worker_per_gpu', 'use_shuffle',
                        'dataset_enlarge_ratio', 'prefetch_mode', 'num_prefetch_queue', 'pin_memory',
                        'persistent_workers')


def dataset_schema(owner, options):
    return OptionSchema(owner, options, passthrough=BASICSR_DATASET_KEYS)


def section_of(opt):
    """Names the YAML section for messages: ``datasets.<phase>`` when BasicSR told us the phase."""
    phase = opt.get('phase') if hasattr(opt, 'get') else None
    name = opt.get('name') if hasattr(opt, 'get') else None
    where = f'datasets.{phase}' if phase else 'datasets'
    return f'{where} ({name})' if name else where
