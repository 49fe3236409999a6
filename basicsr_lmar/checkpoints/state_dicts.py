"""Network weights in and out of files, for the models and the scripts alike.

- :func:`atomic_torch_save`: through a temporary file, so an interrupted save leaves no partial file;
- :func:`load_network_weights`: reads a checkpoint with ``weights_only=True`` (tensors and plain
  containers only: a file from elsewhere cannot run code), picks ``param_key`` (falling back to
  ``params``), strips DDP's ``module.`` prefix and loads it; a checkpoint that does not fit the network
  raises :class:`CheckpointMismatchError` with a readable report (:func:`describe_state_dict_mismatch`)
  instead of torch's wall of keys, naming the option key or flag that pointed at the file. A
  non-strict load (``strict_load_*: false``) logs what it leaves out as basicsr does, and refuses a
  checkpoint of which no tensor fits (another network's);
- :func:`read_checkpoint`: a file torch cannot read is named as damaged, with its size;
- :func:`check_pretrained_networks`: the same checks on every ``path.pretrain_network_*`` of an option
  file, before any folder is created (the preflight's);
- for the converters of the authors' checkpoints (:mod:`basicsr_lmar.checkpoints`): :func:`unwrap_checkpoint`,
  :func:`strip_module_prefix` and :func:`rename_keys` (every key renamed, or a ``KeyError`` naming it).
"""
import copy
import os
import os.path as osp
import pickle
import re
import zipfile
import warnings
from collections import OrderedDict

import torch

from basicsr_lmar.atomic_write import write_atomically
from basicsr_lmar.errors import UserError


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint's tensors do not fit the network built from the options."""


class CheckpointFileMissing(UserError, FileNotFoundError):
    """A checkpoint path names no file (a user's mistake: it ends a tool with one line, exit code 2)."""


class DamagedCheckpointError(UserError, RuntimeError):
    """A checkpoint file exists but torch cannot read it: cut short, overwritten, or not a checkpoint."""


def atomic_torch_save(obj, path):
    """``torch.save`` to ``path`` through a temporary file: an interrupted save leaves no partial file."""
    write_atomically(path, lambda temporary: torch.save(obj, temporary))


#: the key prefix of a network saved through ``DataParallel`` or ``DistributedDataParallel``
MODULE_PREFIX = 'module.'


def strip_module_prefix(state_dict):
    """``state_dict`` with the keys' ``module.`` prefix (a wrapped network's) removed where they have it."""
    return OrderedDict((key[len(MODULE_PREFIX):] if key.startswith(MODULE_PREFIX) else key, value)
                       for key, value in state_dict.items())


def unwrap_checkpoint(checkpoint):
    """The state dict inside a training checkpoint (``params``, ``state_dict``, ``model``, ``netG``: basicsr's
    and the authors' codes), or the checkpoint itself when it is a state dict already."""
    if isinstance(checkpoint, dict) and not any(torch.is_tensor(v) for v in checkpoint.values()):
        for key in ('params', 'state_dict', 'model', 'netG'):
            if key in checkpoint:
                return checkpoint[key]
    return checkpoint


def rename_keys(state_dict, rename, source, prefix='', skip=()):
    """The tensors of ``state_dict`` whose keys start with ``prefix``, each under ``rename(key without the
    prefix)`` (the same tensor objects, in order): an authors' checkpoint in a network's names. Keys outside
    ``prefix`` are left for the caller; keys starting with one of ``skip`` (after the prefix) are dropped.
    A key ``rename`` maps to None, two keys mapped to one, or no key under ``prefix`` is a ``KeyError``
    naming the key and ``source``, what the checkpoint should be."""
    converted = OrderedDict()
    for key, tensor in state_dict.items():
        if not key.startswith(prefix) or key[len(prefix):].startswith(skip):
            continue
        new_key = rename(key[len(prefix):])
        if new_key is None:
            raise KeyError(f'checkpoint key {key!r} has no counterpart (prefix {prefix!r}); is this {source}?')
        if new_key in converted:
            raise KeyError(f'checkpoint keys map twice to {new_key!r} (last: {key!r}); is this {source}?')
        converted[new_key] = tensor
    if not converted:
        raise KeyError(f'no key of the checkpoint starts with {prefix!r}; first keys: {list(state_dict)[:5]}')
    return converted


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


#: what torch.load says under ``weights_only`` of a pickled object (not of a damaged file):
#: 'Unsupported global: GLOBAL module.Name' (the pinned torch), 'Unsupported class module.Name' (torch 2.1)
_PICKLED_OBJECT = ('Unsupported global', 'Unsupported class')


def _damaged(load_path, where):
    """The error for a file that exists but that torch cannot read, naming it with its size."""
    size = osp.getsize(load_path)
    with open(load_path, 'rb') as handle:
        head = handle.read(4)
    if size == 0:
        what = 'it is empty'
    elif head.startswith(b'PK\x03\x04'):  # torch.save's zip archive (the default since torch 1.6)
        what = 'its zip archive ends early or is corrupted'
    elif head.startswith(b'\x80'):  # a pickle: torch.save's legacy format
        what = 'its pickle data ends early or is corrupted'
    else:
        return DamagedCheckpointError(
            f'{where}: {load_path} ({size} bytes) is not a checkpoint: torch.save did not write it (it starts with '
            f'{head!r}); point {where} at a .pth file of the network.')
    return DamagedCheckpointError(
        f'{where}: {load_path} is damaged ({size} bytes): {what}, so torch cannot read it (an interrupted download, '
        f'copy or save cuts a file short); copy or download it again, or point {where} at another checkpoint.')


def read_checkpoint(load_path, where='checkpoint', mmap=False):
    """The object in ``load_path``, read with ``weights_only=True``; errors name ``where`` and the file.

    A file that torch cannot read is named as damaged, with its size (:class:`DamagedCheckpointError`).
    ``mmap``: map the tensors of a zip checkpoint instead of reading them (to check a file cheaply)."""
    if not osp.isfile(load_path):
        if osp.isdir(load_path):
            raise CheckpointFileMissing(f'{where}: {load_path} is a folder, not a checkpoint file.')
        raise CheckpointFileMissing(f'{where}: {load_path} does not exist.')
    try:
        return load_weights_only(load_path, map_location='cpu', mmap=bool(mmap) and zipfile.is_zipfile(load_path))
    except pickle.UnpicklingError as error:
        if not any(marker in str(error) for marker in _PICKLED_OBJECT):
            raise _damaged(load_path, where) from error
        raise CheckpointMismatchError(
            f'{where}: {load_path} is not a plain weights file (it holds Python objects beyond tensors and '
            f'containers: {str(error).splitlines()[0]}). If it is an authors\' release, convert it first with '
            'scripts/convert_official_*.py.') from None
    except PermissionError:
        raise CheckpointFileMissing(f'{where}: cannot read {load_path}: permission denied.') from None
    except MemoryError:
        raise
    except Exception as error:  # torch's reader fails on a cut file in many ways: OSError, RuntimeError, EOFError ...
        raise _damaged(load_path, where) from error


def checkpoint_state(checkpoint, load_path, param_key='params', where='checkpoint'):
    """``(state_dict, param_key used)`` of a loaded checkpoint: ``param_key`` (falling back to ``params``),
    DDP's ``module.`` prefix stripped."""
    state = checkpoint
    if param_key is not None and isinstance(checkpoint, dict):
        if param_key not in checkpoint and 'params' in checkpoint:
            param_key = 'params'
        if param_key not in checkpoint:
            raise CheckpointMismatchError(f'{where}: {load_path} has no {param_key!r} entry '
                                          f'(top-level keys: {sorted(checkpoint)[:8]}).')
        state = checkpoint[param_key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f'{where}: {load_path} holds no state dict of tensors under {param_key!r}; '
                                      'point it at a network checkpoint (.pth written by a training run).')
    return strip_module_prefix(state), param_key


def strict_option(where):
    """The option key that makes a load non-strict, for a ``where`` of the form ``path.pretrain_network_X``
    (the training and test routes), else None (the tools load strictly)."""
    match = re.fullmatch(r'path\.pretrain_network_(\w+)', where)
    return f'path.strict_load_{match.group(1)}' if match else None


def check_fit(expected, state, checkpoint, load_path, net_name, strict, where):
    """Checks that ``state`` fits a network whose ``state_dict()`` is ``expected`` (tensors or shapes of any
    device, meta included). Raises :class:`CheckpointMismatchError` when nothing fits (whatever ``strict``)
    or, when ``strict``, anything differs; returns the report lines (empty when they fit)."""
    problems = describe_state_dict_mismatch(expected, state)
    if not problems:
        return problems
    matching = [k for k in expected if k in state and tuple(expected[k].shape) == tuple(state[k].shape)]
    meta = checkpoint.get('basicsr_lmar') if isinstance(checkpoint, dict) else None
    made_with = ''
    if meta and meta.get('network_options'):
        made_with = (f'the checkpoint was saved by basicsr-lmar {meta.get("version")} for options '
                     f'{meta["network_options"]}')
    strict_key = strict_option(where)
    section = strict_key.replace('path.strict_load_', 'network_') if strict_key else None
    if expected and not matching and not strict:
        saved = f'; {made_with}' if made_with else ''
        raise CheckpointMismatchError(
            f'{where}: {load_path} has no tensor that fits {net_name}: {strict_key}: false loads the tensors whose '
            f'names and shapes match, and none of its {len(state)} does{saved}. Point {where} at a checkpoint of '
            f'{net_name}' + (f', or set {section} to the network it was saved for.' if section else '.'))
    if strict:
        if not matching and expected:
            fix = (f'  None of its tensors fits: it is the checkpoint of another network. Point {where} at a '
                   f'checkpoint of {net_name}' + (f', or set {section} to the network it was saved for.'
                                                  if section else '.'))
        elif strict_key:
            fix = (f'  Build the network with the options it was trained with, or set {strict_key} to false to '
                   f'load only the {len(matching)} matching tensors.')
        else:
            fix = '  Build the network with the options it was trained with.'
        raise CheckpointMismatchError(f'{where}: {load_path} does not fit {net_name}:\n' + '\n'.join(problems) +
                                      (f'\n  {made_with}' if made_with else '') + '\n' + fix)
    return problems


def load_network_weights(net, load_path, strict=True, param_key='params', where='checkpoint', logger=None):
    """Loads ``param_key`` of ``load_path`` into ``net`` (a bare module) with a readable mismatch report.

    ``strict=False`` loads only the tensors whose name and shape fit, and logs the others as basicsr's
    ``load_network`` does (``Current net - loaded net:`` ...); a checkpoint of which no tensor fits is an
    error. Returns the param key used.
    """
    checkpoint = read_checkpoint(load_path, where)
    state, param_key = checkpoint_state(checkpoint, load_path, param_key, where)
    expected = net.state_dict()
    net_name = type(net).__name__
    problems = check_fit(expected, state, checkpoint, load_path, net_name, strict, where)
    if not strict:
        matching = {k: v for k, v in state.items() if k in expected and tuple(expected[k].shape) == tuple(v.shape)}
        if problems and logger is not None:
            _log_partial_load(logger, expected, state)
            logger.warning(f'{where}: loaded {len(matching)} of the {len(expected)} tensors of {net_name} from '
                           f'{load_path} ({strict_option(where) or "strict_load"}: false); the others keep their '
                           'initial values.')
        state = matching
    net.load_state_dict(state, strict=strict)
    if logger is not None:
        logger.info(f'Loaded {net_name} from {load_path} [{param_key}].')
    return param_key


def _log_partial_load(logger, expected, state):
    """The keys a partial load leaves out, in the words of basicsr's ``_print_different_keys_loading``."""
    if set(expected) != set(state):
        logger.warning('Current net - loaded net:')
        for key in sorted(set(expected) - set(state)):
            logger.warning(f'  {key}')
        logger.warning('Loaded net - current net:')
        for key in sorted(set(state) - set(expected)):
            logger.warning(f'  {key}')
    for key in sorted(set(expected) & set(state)):
        if expected[key].size() != state[key].size():
            logger.warning(f'Size different, ignore [{key}]: crt_net: {expected[key].shape}; '
                           f'load_net: {state[key].shape}')


def check_pretrained_networks(opt, model_cls=None):
    """Every ``path.pretrain_network_*`` of an option file read as a checkpoint and checked against its
    network before anything is built or any folder created (the preflight calls it): a damaged file, a
    missing ``param_key`` entry, a checkpoint that does not fit (``strict_load_*: true``) or of which no
    tensor fits (``false``) is the error the model's load would raise, with the same message. The network
    is built on the ``meta`` device (shapes only, no memory), the checkpoint's tensors memory-mapped."""
    from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY

    if model_cls is None and opt.get('model_type') in MODEL_REGISTRY:
        model_cls = MODEL_REGISTRY.get(opt['model_type'])
    sections = getattr(model_cls, 'network_sections', None) or {}
    path = opt.get('path') or {}
    for key, load_path in path.items():
        if not (isinstance(key, str) and key.startswith('pretrain_network_')) or load_path is None:
            continue
        section, label = key[len('pretrain_'):], key[len('pretrain_network_'):]
        where = f'path.{key}'
        load_path = osp.expanduser(str(load_path))
        checkpoint = read_checkpoint(load_path, where, mmap=True)
        state, _ = checkpoint_state(checkpoint, load_path, path.get(f'param_key_{label}', 'params'), where)
        network = opt.get(section)
        if not isinstance(network, dict) or network.get('type') not in ARCH_REGISTRY:
            continue  # the model's own option checks name it
        model_keys = getattr(sections.get(section), 'model_keys', ())
        options = {k: copy.deepcopy(v) for k, v in network.items() if k not in model_keys and k != 'type'}
        try:  # not basicsr's build_network: its log line would set up basicsr's logger before the run's log file
            with torch.device('meta'):
                net = ARCH_REGISTRY.get(network['type'])(**options)
        except Exception:  # an arch that computes in its constructor: its load at build time checks it
            continue
        check_fit(net.state_dict(), state, checkpoint, load_path, type(net).__name__,
                  path.get(f'strict_load_{label}', True), where)


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
    (unreadable file, weights that do not fit) is one line and exit code 2
    (:func:`basicsr_lmar.cli.errors.run_main`)."""
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
