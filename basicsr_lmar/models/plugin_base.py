"""``PluginBaseModel``: what every model of the plugin shares on top of basicsr's ``BaseModel``.

- building networks from validated option sections: trainable ones (moved, DDP-wrapped when
  distributed, optionally initialised from ``path.pretrain_<section>``) and frozen ones (eval mode, no
  parameter gradients, never DDP-wrapped, loaded from a required path);
- a guarded optimisation step: a non-finite loss is skipped on *every* rank (so DDP never deadlocks),
  counted and logged; after ``train.max_nonfinite_steps`` consecutive skips the run stops with a message
  instead of writing NaN checkpoints;
- checkpoints written atomically (temporary file, then rename), recording the plugin version and the
  option sections that shape each network; loading a checkpoint into a mismatching network lists the
  missing, unexpected and mis-shaped keys and the options the checkpoint was made with;
- training states that also carry the RNG states and the skip counters, so resume is exact
  (:mod:`basicsr_lmar.runtime.resume`). Validation must not draw from the global RNGs (use a local
  ``torch.Generator``): it runs after the checkpoint is written, and a resumed run does not repeat it.
"""
import contextlib
import copy
import math
import os.path as osp

import torch

from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_lmar.checkpoints.state_dicts import atomic_torch_save, load_network_weights
from basicsr_lmar.runtime.dist import all_ranks_agree
from basicsr_lmar.options import validate_registered
from basicsr_lmar.runtime.resume import capture_rng_state
from basicsr_lmar.version import __version__

DEFAULT_MAX_NONFINITE_STEPS = 10
#: ``train.amp``: mixed precision for the forward passes of training (autocast); ``none`` = fp32.
AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimisation steps had a non-finite loss."""


class PluginBaseModel(BaseModel):

    def __init__(self, opt):
        super().__init__(opt)
        train_opt = opt.get('train') or {}
        self.max_nonfinite_steps = train_opt.get('max_nonfinite_steps', DEFAULT_MAX_NONFINITE_STEPS)
        self.amp_dtype = AMP_DTYPES[train_opt.get('amp') or 'none']
        if self.amp_dtype == torch.float16 and self.device.type != 'cuda':
            raise ValueError('train.amp: fp16 needs a GPU; use bf16 on CPU.')
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
        self.grad_scaler = torch.amp.GradScaler('cuda') if self.amp_dtype == torch.float16 else None
        self.nonfinite_streak = 0
        self.nonfinite_total = 0
        self.network_options = {}

    # ----------------------------------------------------------------------------------------- networks
    def build_trainable_network(self, section):
        """Builds ``opt[section]`` (validated), moves/wraps it, loads ``path.pretrain_<section>`` if set."""
        net_opt = self.opt[section]
        validate_registered(net_opt, section, ARCH_REGISTRY)
        self.network_options[section] = copy.deepcopy(dict(net_opt))
        net = build_network(net_opt)
        net = self.model_to_device(net)
        self.print_network(net)
        load_path = self.opt['path'].get(f'pretrain_{section}')
        if load_path is not None:
            param_key = self.opt['path'].get(f'param_key_{section.replace("network_", "")}', 'params')
            self.load_network(net, load_path, self.opt['path'].get(f'strict_load_{section.replace("network_", "")}', True),
                              param_key, option_key=f'path.pretrain_{section}')
        return net

    def frozen_checkpoint_path(self, section):
        """``path.pretrain_<section>`` of a frozen network, as written in the options.

        A frozen network is not saved by the run, so on resume basicsr's redirection of every
        ``pretrain_network_*`` to the run's own checkpoints must not apply to it
        (:func:`basicsr_lmar.runtime.resume.load_resume_state` keeps the original paths).
        """
        paths = self.opt.get('_pretrain_paths_before_resume') or self.opt['path']
        return paths.get(f'pretrain_{section}')

    def build_frozen_network(self, section, required=True, extra_keys=()):
        """Builds ``opt[section]`` frozen: eval mode, ``requires_grad=False``, never DDP-wrapped.

        Gradients still flow *through* it to its inputs. ``extra_keys``: keys of the section that the
        model reads itself (LMAR's ``feature_layer``) and that are not constructor arguments.
        """
        net_opt = {k: v for k, v in self.opt[section].items() if k not in extra_keys}
        validate_registered(net_opt, section, ARCH_REGISTRY)
        self.network_options[section] = copy.deepcopy(net_opt)
        net = build_network(net_opt).to(self.device)
        key = f'pretrain_{section}'
        load_path = self.frozen_checkpoint_path(section)
        if load_path is None and required:
            raise FileNotFoundError(f'path.{key} is required: {section} is a frozen, pretrained network. '
                                    f'Set it to the checkpoint of the {net_opt["type"]} to use.')
        if load_path is not None:
            label = section.replace('network_', '')
            self.load_network(net, load_path, self.opt['path'].get(f'strict_load_{label}', True),
                              self.opt['path'].get(f'param_key_{label}', 'params'), option_key=f'path.{key}')
        net.eval()
        net.requires_grad_(False)
        return net

    # ------------------------------------------------------------------------------------ randomness
    def iteration_generator(self, current_iter, stream=0):
        """A CPU generator seeded by (``manual_seed``, iteration, stream): identical on every rank.

        For per-iteration draws that must agree across processes (LMAR's target size, say), so that
        N processes × batch b train exactly like 1 process × batch N·b.
        """
        generator = torch.Generator()
        seed = int(self.opt.get('manual_seed') or 0)
        generator.manual_seed((seed * 1_000_003 + int(current_iter)) * 101 + int(stream))
        return generator

    def global_batch_randn(self, local_batch, sample_shape, current_iter, stream=0):
        """Gaussian noise for this rank's samples, cut from one draw for the whole global batch.

        Sample ``j`` of the global batch gets the same noise whether it is processed alone on rank
        ``j // local_batch`` or together with the others in a single process.
        """
        world_size = self.opt.get('world_size', 1)
        rank = self.opt.get('rank', 0)
        noise = torch.randn((world_size * local_batch, *sample_shape), generator=self.iteration_generator(
            current_iter, stream))
        return noise[rank * local_batch:(rank + 1) * local_batch].to(self.device)

    # ----------------------------------------------------------------------------------- optimisation
    def autocast(self):
        """Context for training forward passes: autocast to ``train.amp`` (bf16 on CPU and GPU, fp16
        on GPU), or nothing. Losses are computed in fp32 outside it by the models."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def guarded_step(self, loss, optimizers, parameters=None, clip_grad_norm=None):
        """``backward`` + ``step`` unless the loss is non-finite on any rank; returns whether it stepped.

        ``optimizers``: one optimizer or a list (all zeroed first). ``parameters``: what to clip.
        """
        optimizers = optimizers if isinstance(optimizers, (list, tuple)) else [optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        finite = all_ranks_agree(bool(torch.isfinite(loss.detach()).all()), device=loss.device)
        if not finite:
            self.nonfinite_streak += 1
            self.nonfinite_total += 1
            get_root_logger().warning(
                f'non-finite loss ({loss.detach().flatten()[0].item()}): step skipped '
                f'({self.nonfinite_streak} in a row, {self.nonfinite_total} in total; the run stops after '
                f'{self.max_nonfinite_steps} in a row, train.max_nonfinite_steps).')
            if self.nonfinite_streak >= self.max_nonfinite_steps:
                raise NonFiniteLossError(
                    f'{self.nonfinite_streak} consecutive optimisation steps had a non-finite loss; stopping '
                    'before any NaN reaches a checkpoint. Lower the learning rate, check the data for NaN/inf, '
                    'or raise train.max_nonfinite_steps.')
            return False
        self.nonfinite_streak = 0
        if self.grad_scaler is None:
            loss.backward()
            if clip_grad_norm is not None and parameters is not None:
                torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
            for optimizer in optimizers:
                optimizer.step()
            return True
        self.grad_scaler.scale(loss).backward()
        if clip_grad_norm is not None and parameters is not None:
            for optimizer in optimizers:
                self.grad_scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
        for optimizer in optimizers:
            self.grad_scaler.step(optimizer)
        self.grad_scaler.update()
        return True

    # ------------------------------------------------------------------------------------ checkpoints
    def save_network(self, net, net_label, current_iter, param_key='params'):
        if current_iter == -1:
            current_iter = 'latest'
        save_path = osp.join(self.opt['path']['models'], f'{net_label}_{current_iter}.pth')
        nets = net if isinstance(net, list) else [net]
        param_keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {}
        for net_, key in zip(nets, param_keys):
            state_dict = self.get_bare_model(net_).state_dict()
            save_dict[key] = {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in state_dict.items()}
        section = f'network_{net_label.replace("net_", "", 1)}'
        save_dict['basicsr_lmar'] = {'version': __version__, 'network_options': self.network_options.get(section)}
        atomic_torch_save(save_dict, save_path)

    def load_network(self, net, load_path, strict=True, param_key='params', option_key=None):
        load_network_weights(self.get_bare_model(net), load_path, strict, param_key, where=option_key or 'checkpoint',
                             logger=get_root_logger())

    @master_only
    def save_training_state(self, epoch, current_iter):
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
        }
        atomic_torch_save(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        # The RNG states in resume_state are restored by the resumable sampler, at the point of the data
        # pipeline where the uninterrupted run was when it saved them (basicsr_lmar.runtime.resume).
        super().resume_training(resume_state)
        counters = resume_state.get('nonfinite', {})
        self.nonfinite_streak = counters.get('streak', 0)
        self.nonfinite_total = counters.get('total', 0)

    def log_losses(self, loss_dict):
        """Reduces (across ranks) and stores losses for BasicSR's message logger; skips non-finite ones."""
        finite = {k: v for k, v in loss_dict.items() if math.isfinite(float(v))}
        self.log_dict = self.reduce_loss_dict(finite)
        self.log_dict['nonfinite_skips'] = self.nonfinite_total
