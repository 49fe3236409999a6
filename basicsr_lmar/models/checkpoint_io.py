"""Checkpoints and training states of a plugin model: written atomically by rank 0, read safely.

A network checkpoint is basicsr's (``{'params': ..., 'params_ema': ...}``) plus ``basicsr_lmar``: the
plugin version and the network's option section, which a mismatch report quotes. Weights are read with
``weights_only=True`` and a mismatch names the option key (:mod:`basicsr_lmar.checkpoints.state_dicts`).
A training state is basicsr's plus the RNG states, the non-finite-step counters, a record of the model
(its type and a digest of its network options: a resume refuses another model's state) and the option keys
of its optimizers (a resume refuses a state of other optimizers), in plain containers that every supported
torch reads weights-only, for exact resume (:mod:`basicsr_lmar.runtime.resume`); validation must therefore
not draw from the global RNGs (use a local ``torch.Generator``). Saves go through ``<file>.tmp<pid>``; what a
killed save left is removed at the next start.
"""
import os.path as osp

from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only

from basicsr_lmar.checkpoints.state_dicts import atomic_torch_save, load_network_weights, strip_module_prefix
from basicsr_lmar.runtime.resume import (capture_rng_state, model_record, optimizer_keys, plain_state,
                                         remove_partial_saves, warn_if_model_options_changed)
from basicsr_lmar.version import __version__


class CheckpointIOMixin:
    """Checkpoint and training-state I/O of a plugin model (part of :class:`PluginModelMixin`)."""

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        # basicsr's writes in place (a killed save leaves a partial file) and no metadata: atomic, with them
        if current_iter == -1:
            current_iter = 'latest'
        save_path = osp.join(self.opt['path']['models'], f'{net_label}_{current_iter}.pth')
        nets = net if isinstance(net, list) else [net]
        param_keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {}
        for net_, key in zip(nets, param_keys):
            state_dict = self.get_bare_model(net_).state_dict()
            save_dict[key] = {k: v.cpu() for k, v in strip_module_prefix(state_dict).items()}
        section = f'network_{net_label.replace("net_", "", 1)}'
        save_dict['basicsr_lmar'] = {'version': __version__, 'network_options': self.network_options.get(section)}
        atomic_torch_save(save_dict, save_path)

    def load_network(self, net, load_path, strict=True, param_key='params', option_key=None):
        # basicsr's unpickles anything and dumps torch's key list: weights_only, and a report naming the option
        load_network_weights(self.get_bare_model(net), load_path, strict, param_key, where=option_key or 'checkpoint',
                             logger=get_root_logger())

    @master_only
    def save_training_state(self, epoch, current_iter):
        # basicsr's, plus the RNG states and the skip counters (exact resume), written atomically
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': capture_rng_state(),
            'nonfinite': {'streak': self.nonfinite_streak, 'total': self.nonfinite_total},
            'basicsr_lmar_version': __version__,
            'model': model_record(self.opt),
            'optimizer_keys': optimizer_keys(type(self), self.options),
        }
        atomic_torch_save(plain_state(state), osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        # The RNG states in resume_state are restored by the resumable sampler, at the point of the data
        # pipeline where the uninterrupted run was when it saved them (basicsr_lmar.runtime.resume).
        super().resume_training(resume_state)
        warn_if_model_options_changed(self.opt, resume_state, get_root_logger())
        counters = resume_state.get('nonfinite', {})
        self.nonfinite_streak = counters.get('streak', 0)
        self.nonfinite_total = counters.get('total', 0)

    @master_only
    def remove_interrupted_saves(self):
        """Removes the temporary files a killed save left in the run's folders (checkpoints are written
        through ``<file>.tmp<pid>``; an interrupted training state is hundreds of MB)."""
        for key in ('models', 'training_states'):
            folder = self.opt['path'].get(key)
            if folder and osp.isdir(folder):
                for name in remove_partial_saves(folder):
                    get_root_logger().info(f'removed {osp.join(folder, name)}, left by an interrupted save')
