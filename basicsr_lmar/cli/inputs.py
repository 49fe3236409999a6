"""What a tool reads besides its images: the option file, the checkpoints and the device, each checked
with an error that names the flag or option key at fault (:class:`~basicsr_lmar.errors.UserError`)."""
import os.path as osp

import torch
import yaml

from basicsr_lmar.checkpoints.state_dicts import load_network_weights
from basicsr_lmar.errors import UserError


def read_option_file(path, flag='-opt'):
    """The mapping in a YAML option file (basicsr's ordered loader); a missing, unparsable or non-mapping
    file is a :class:`UserError` naming ``flag`` and the file."""
    from basicsr.utils.options import ordered_yaml

    if not osp.isfile(path):
        raise UserError(f'{flag} {path}: no such option file')
    with open(path) as handle:
        try:
            opt = yaml.load(handle, Loader=ordered_yaml()[0])
        except yaml.YAMLError as error:
            raise UserError(f'{flag} {path} is not valid YAML: {error}') from None
    if not isinstance(opt, dict):
        raise UserError(f'{flag} {path} holds {type(opt).__name__}, not a mapping of option sections')
    return opt


def load_weights(net, path, where, param_key='params'):
    """Loads a checkpoint into ``net`` through the training route's mismatch report
    (:func:`~basicsr_lmar.checkpoints.state_dicts.load_network_weights`, ``weights_only=True``).

    ``where`` names the flag and option key that gave ``path`` (``'--net-g / path.pretrain_network_g'``);
    no path, or a path that is not a file, is a :class:`UserError` naming it. A checkpoint that does not
    fit the network raises ``CheckpointMismatchError``, which the tools report as a user error too.
    """
    if not path:
        raise UserError(f'{where}: no checkpoint given; set the option or pass the flag')
    if not osp.isfile(path):
        raise UserError(f'{where}: checkpoint {path} does not exist')
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
