"""Network weights in and out of files, for the models and the scripts alike.

- :func:`atomic_torch_save`: through a temporary file, so an interrupted save leaves no partial file;
- :func:`load_network_weights`: reads a checkpoint with ``weights_only=True`` (tensors and plain
  containers only: a file from elsewhere cannot run code), picks ``param_key`` (falling back to
  ``params``), strips DDP's ``module.`` prefix and loads it; a checkpoint that does not fit the network
  raises :class:`CheckpointMismatchError` with a readable report (:func:`describe_state_dict_mismatch`)
  instead of torch's wall of keys, naming the option key or flag that pointed at the file.
"""
import os
import os.path as osp
import pickle
import warnings

import torch

from basicsr_lmar.errors import UserError


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint's tensors do not fit the network built from the options."""


class CheckpointFileMissing(UserError, FileNotFoundError):
    """A checkpoint path names no file (a user's mistake: it ends a tool with one line, exit code 2)."""


def atomic_torch_save(obj, path):
    """``torch.save`` to ``path`` through a temporary file: an interrupted save leaves no partial file."""
    tmp_path = f'{path}.tmp{os.getpid()}'
    try:
        torch.save(obj, tmp_path)
        os.replace(tmp_path, path)
    finally:
        if osp.exists(tmp_path):
            os.remove(tmp_path)


def describe_state_dict_mismatch(expected, loaded):
    """Lines naming missing, unexpected and mis-shaped keys (empty when the two fit)."""
    lines = []
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    shapes = sorted(k for k in set(expected) & set(loaded) if tuple(expected[k].shape) != tuple(loaded[k].shape))
    if missing:
        lines.append(f'  missing in checkpoint ({len(missing)}): {", ".join(missing[:8])}' + (' ...' if len(missing) > 8 else ''))
    if unexpected:
        lines.append(f'  not in network ({len(unexpected)}): {", ".join(unexpected[:8])}' +
                     (' ...' if len(unexpected) > 8 else ''))
    if shapes:
        lines.append(f'  {len(shapes)} tensors differ in shape' + (', the first 8:' if len(shapes) > 8 else ':'))
    for key in shapes[:8]:
        lines.append(f'  shape of {key}: network {tuple(expected[key].shape)}, checkpoint {tuple(loaded[key].shape)}')
    return lines


def load_weights_only(path, **kwargs):
    """``torch.load(path, weights_only=True, **kwargs)``. The weights-only loader of torch 2.1 warns that
    TypedStorage is deprecated (its own internals) on its first use: ignored at these loads only."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='TypedStorage is deprecated', category=UserWarning)
        return torch.load(path, weights_only=True, **kwargs)


def read_checkpoint(load_path, where='checkpoint'):
    """The object in ``load_path``, read with ``weights_only=True``; errors name ``where`` and the file."""
    if not osp.isfile(load_path):
        raise CheckpointFileMissing(f'{where}: {load_path} does not exist.')
    try:
        return load_weights_only(load_path, map_location='cpu')
    except pickle.UnpicklingError as error:
        raise CheckpointMismatchError(
            f'{where}: {load_path} is not a plain weights file (it holds Python objects beyond tensors and '
            f'containers: {str(error).splitlines()[0]}). If it is an authors\' release, convert it first with '
            'scripts/convert_official_*.py.') from None


def load_network_weights(net, load_path, strict=True, param_key='params', where='checkpoint', logger=None):
    """Loads ``param_key`` of ``load_path`` into ``net`` (a bare module) with a readable mismatch report.

    ``strict=False`` loads only the tensors whose name and shape fit. Returns the param key used.
    """
    checkpoint = read_checkpoint(load_path, where)
    state = checkpoint
    if param_key is not None and isinstance(checkpoint, dict):
        if param_key not in checkpoint and 'params' in checkpoint:
            param_key = 'params'
        if param_key not in checkpoint:
            raise CheckpointMismatchError(f'{where}: {load_path} has no {param_key!r} entry '
                                          f'(top-level keys: {sorted(checkpoint)[:8]}).')
        state = checkpoint[param_key]
    state = {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}
    expected = net.state_dict()
    problems = describe_state_dict_mismatch(expected, state)
    if problems and strict:
        meta = checkpoint.get('basicsr_lmar') if isinstance(checkpoint, dict) else None
        made_with = ''
        if meta and meta.get('network_options'):
            made_with = (f'\n  the checkpoint was saved by basicsr-lmar {meta.get("version")} for options '
                         f'{meta["network_options"]}')
        raise CheckpointMismatchError(
            f'{where}: {load_path} does not fit {type(net).__name__}:\n' + '\n'.join(problems) + made_with +
            '\n  Build the network with the options it was trained with, or set strict_load to false '
            'to load only the matching tensors.')
    if not strict:
        state = {k: v for k, v in state.items() if k in expected and tuple(expected[k].shape) == tuple(v.shape)}
    net.load_state_dict(state, strict=strict)
    if logger is not None:
        logger.info(f'Loaded {type(net).__name__} from {load_path} [{param_key}].')
    return param_key


def convert_network_checkpoint(source, target, what, convert, arch_type):
    """Reads ``source`` (weights only; ``what`` names it in errors), maps it with ``convert(checkpoint) ->
    (state_dict, network options)``, checks that it loads strictly into ``arch_type`` built from those
    options and writes the basicsr checkpoint ``{'params': state_dict}`` to ``target`` atomically.
    Returns the options (what ``network_g`` needs besides ``type``)."""
    from basicsr.utils.registry import ARCH_REGISTRY

    state_dict, options = convert(read_checkpoint(source, what))
    net = ARCH_REGISTRY.get(arch_type)(**options)
    net.load_state_dict(state_dict, strict=True)
    os.makedirs(osp.dirname(osp.abspath(target)), exist_ok=True)
    atomic_torch_save({'params': net.state_dict()}, target)
    return options


def network_converter_main(description, source_help, what, convert, arch_type, argv=None):
    """The command line of the one-network converters (``scripts/convert_official_{irn,hcflow}.py``):
    ``SOURCE TARGET``, then prints the ``network_g`` options to put in an option file. A user mistake
    (unreadable file, weights that do not fit) is one line and exit code 2 (:func:`basicsr_lmar.cli.errors.run_main`)."""
    import argparse

    from basicsr_lmar.cli.errors import add_debug_argument, run_main

    def main(argv):
        parser = argparse.ArgumentParser(description=description,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument('source', help=source_help)
        parser.add_argument('target', help='output .pth for network_g (param_key params)')
        add_debug_argument(parser)
        args = parser.parse_args(argv)
        options = convert_network_checkpoint(args.source, args.target, what, convert, arch_type)
        print(f'wrote {args.target}; network_g: type: {arch_type}, ' +
              ', '.join(f'{k}: {v}' for k, v in options.items()))

    return run_main(main, argv)
