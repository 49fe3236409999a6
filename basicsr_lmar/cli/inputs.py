"""What a tool reads besides its images and its option file (:func:`basicsr_lmar.options.read_option_file`):
the checkpoints and the device, each checked with an error that names the flag or option key at fault
(:class:`~basicsr_lmar.errors.UserError`)."""
import torch

from basicsr_lmar.checkpoints.state_dicts import load_network_weights
from basicsr_lmar.errors import UserError


def load_weights(net, path, where, param_key='params'):
    """Loads a checkpoint into ``net`` through the training route's mismatch report
    (:func:`~basicsr_lmar.checkpoints.state_dicts.load_network_weights`, ``weights_only=True``).

    ``where`` names the flag and option key that gave ``path`` (``'--net-g / path.pretrain_network_g'``);
    no path, or a path that is not a file, is a :class:`UserError` naming it. A checkpoint that does not
    fit the network raises ``CheckpointMismatchError``, which the tools report as a user error too.
    """
    if not path:
        raise UserError(f'{where}: no checkpoint given; set the option or pass the flag')
    load_network_weights(net, path, strict=True, param_key=param_key, where=where)
    return net


def resolve_device(name):
    """``torch.device(name)``; an unparsable name, or CUDA on a machine without it, is a :class:`UserError`."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise UserError(f'--device {name}: not a device ({error}); use cpu or cuda') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError(f'--device {name}: no CUDA device is available here; use --device cpu')
    return device


def default_device():
    return 'cuda' if torch.cuda.is_available() else 'cpu'
