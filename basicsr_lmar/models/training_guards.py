"""How the plugin's models train: basicsr's set-up and step, guarded and reproducible across processes.

- :meth:`~TrainingGuardsMixin.init_training_settings` / :meth:`~TrainingGuardsMixin.optimize_parameters`:
  one set-up and one step for every model (a criterion ``cri_<name>`` per declared ``<name>_opt`` loss
  section, the EMA of ``net_g`` with ``train.ema_decay``, an optimizer per entry of
  :meth:`optimizer_networks` (whose labels :meth:`optimizer_labels` gives from the options alone), basicsr's
  schedulers; the model's :meth:`training_losses`, summed, one
  :meth:`guarded_step` over all its optimizers, logged). A model with another step (LMAR's alternating
  G/D steps) overrides ``optimize_parameters`` and uses the same pieces;
- :meth:`guarded_step`: a non-finite loss skips the step on every rank, ``train.max_nonfinite_steps`` in
  a row stop the run before any NaN reaches a checkpoint; ``train.amp`` (:meth:`autocast`; fp16 with
  loss scaling); :meth:`clip_gradients`;
- per-iteration draws that agree across ranks (:meth:`iteration_generator`, :meth:`global_batch_randn`),
  so that N processes x batch b train as 1 process x batch N*b.
"""
import contextlib
import math
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import LOSS_REGISTRY

from basicsr_lmar.models.model_options import AMP_DTYPES, TORCH_OPTIMIZERS
from basicsr_lmar.options import OptionError, registered, to_plain
from basicsr_lmar.runtime.dist import all_ranks_agree


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimisation steps had a non-finite loss."""


class TrainingGuardsMixin:
    """Training set-up, step and guards of a plugin model (part of :class:`PluginModelMixin`)."""

    def init_training_guards(self, train):
        """``train.amp`` and the non-finite-step counters (``train`` None: the model does not train)."""
        self.amp_dtype = AMP_DTYPES[train.amp] if train is not None else None
        if self.amp_dtype == torch.float16 and self.device.type != 'cuda':
            raise OptionError('[train] amp: fp16 needs a GPU; use bf16 on CPU.')
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
        self.grad_scaler = None
        if self.amp_dtype == torch.float16:  # older torch (2.1) has torch.cuda.amp's GradScaler, not torch.amp's
            self.grad_scaler = torch.amp.GradScaler('cuda') if hasattr(torch.amp, 'GradScaler') else \
                torch.cuda.amp.GradScaler()
        self.max_nonfinite_steps = train.max_nonfinite_steps if train is not None else None
        self.nonfinite_streak = self.nonfinite_total = self.last_iter = 0

    # ------------------------------------------------------------------------------------ set-up, step
    def init_training_settings(self):
        # SRModel's builds pixel_opt and perceptual_opt only, and its EMA copy by hand: here every declared
        # loss section, and the EMA copy as a frozen network_g (params_ema of its checkpoint, else net_g's)
        train = self.options.train
        for key, spec in self.option_schemas['train'].options.items():
            if getattr(spec, 'registry', None) is LOSS_REGISTRY:
                criterion = build_loss(to_plain(train[key])).to(self.device) if train[key] is not None else None
                setattr(self, f'cri_{key[:-len("_opt")]}', criterion)
        if train.get('ema_decay', 0) > 0:
            self.net_g_ema = self.build_frozen_network('network_g', required=False, param_key='params_ema')
            if self.opt['path'].get('pretrain_network_g') is None:
                self.model_ema(0)  # basicsr's: the average starts at net_g's weights
        self.setup_optimizers()
        self.setup_schedulers()

    @classmethod
    def optimizer_labels(cls, options):
        """The labels of :meth:`optimizer_networks`, in order, from the validated ``options`` alone: a training
        state holds one optimizer per label, and a resume is checked against them before anything is built."""
        return ['g']

    def optimizer_networks(self):
        """``{label: networks}``: ``train.optim_<label>`` builds ``optimizer_<label>`` over those networks."""
        return {'g': [self.net_g]}

    def setup_optimizers(self):
        # SRModel's builds optim_g for net_g only: here one optimizer per optimizer_networks() entry, in order
        optimizer_networks, labels = self.optimizer_networks(), list(self.optimizer_labels(self.options))
        if list(optimizer_networks) != labels:
            raise TypeError(f'{type(self).__name__}: optimizer_networks() has the labels {list(optimizer_networks)}, '
                            f'optimizer_labels() {labels}; a model that overrides one overrides the other alike.')
        for label, networks in optimizer_networks.items():
            optim_opt = to_plain(self.options.train[f'optim_{label}'])
            params = [p for net in networks for p in net.parameters() if p.requires_grad]
            setattr(self, f'optimizer_{label}', self.get_optimizer(optim_opt.pop('type'), params, **optim_opt))
            self.optimizers.append(getattr(self, f'optimizer_{label}'))

    def training_losses(self, current_iter):
        """The model's losses on the current batch, an ordered ``{'l_<name>': tensor}`` (summed for the step)."""
        raise NotImplementedError

    def optimize_parameters(self, current_iter):
        # SRModel's step has no seam for the guard, amp or other losses: the step of every plugin model
        losses = self.training_losses(current_iter)
        losses['l_total'] = sum(losses.values())
        self.guarded_step(losses['l_total'], self.optimizers)
        self.log_losses({key: value.detach() for key, value in losses.items()})
        if hasattr(self, 'net_g_ema'):
            self.model_ema(decay=self.options.train.ema_decay)

    def loss_region(self, *images):
        """``images`` without the ``train.loss_crop_border`` pixels at each border (all of them when 0)."""
        border = self.options.train.get('loss_crop_border', 0)
        return images if not border else tuple(x[..., border:-border, border:-border] for x in images)

    def pixel_losses(self, output, gt):
        """basicsr's SR losses of ``output`` against ``gt`` in :meth:`loss_region`: ``l_pix`` (``pixel_opt``),
        ``l_percep``/``l_style`` (``perceptual_opt``), for those the model has."""
        output, gt = self.loss_region(output, gt)
        losses = OrderedDict()
        if getattr(self, 'cri_pixel', None) is not None:
            losses['l_pix'] = self.cri_pixel(output, gt)
        if getattr(self, 'cri_perceptual', None) is not None:
            percep, style = self.cri_perceptual(output, gt)
            losses.update((key, loss) for key, loss in (('l_percep', percep), ('l_style', style)) if loss is not None)
        return losses

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        # basicsr 1.4.2 knows only Adam; later BasicSR releases accept any torch.optim optimizer.
        return registered(TORCH_OPTIMIZERS, optim_type, '[train] optim_*.type')(params, lr, **kwargs)

    # ------------------------------------------------------------------------------------------ guards
    def autocast(self):
        """Context for training forward passes: autocast to ``train.amp`` (bf16 on CPU and GPU, fp16
        on GPU), or nothing. Losses are computed in fp32 outside it by the models."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def guarded_step(self, loss, optimizers):
        """``backward`` + ``step`` of ``optimizers`` (one or a list, all zeroed first) unless the loss is
        non-finite on any rank; returns whether it stepped."""
        optimizers = optimizers if isinstance(optimizers, (list, tuple)) else [optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        if not all_ranks_agree(bool(torch.isfinite(loss.detach()).all()), device=loss.device):
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
            for optimizer in optimizers:
                optimizer.step()
            return True
        self.grad_scaler.scale(loss).backward()
        for optimizer in optimizers:
            self.grad_scaler.step(optimizer)  # unscales first, then the optimizer's step (and its clipping hook)
        self.grad_scaler.update()
        return True

    def clip_gradients(self, max_value=None, max_norm=None):
        """From now on every step of the model's optimizers clips their gradients first: by value, then by norm."""
        self.gradient_clipping = (max_value, max_norm)
        for optimizer in self.optimizers:
            optimizer.register_step_pre_hook(self._clip_gradients)

    def _clip_gradients(self, optimizer, args, kwargs):
        max_value, max_norm = self.gradient_clipping
        parameters = [p for group in optimizer.param_groups for p in group['params'] if p.grad is not None]
        if max_value is not None:
            torch.nn.utils.clip_grad_value_(parameters, max_value)
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def log_losses(self, loss_dict):
        """Reduces (across ranks) and stores losses for BasicSR's message logger; skips non-finite ones."""
        finite = {k: v for k, v in loss_dict.items() if math.isfinite(float(v))}
        self.log_dict = self.reduce_loss_dict(finite)
        self.log_dict['nonfinite_skips'] = self.nonfinite_total

    def update_learning_rate(self, current_iter, warmup_iter=-1):
        # basicsr's loop calls this once per iteration: the last one is checked against total_iter at the end
        self.last_iter = current_iter
        super().update_learning_rate(current_iter, warmup_iter)

    def save(self, epoch, current_iter):
        total = (self.opt.get('train') or {}).get('total_iter')
        if current_iter == -1 and total is not None and 0 < self.last_iter < total:  # basicsr's last save
            get_root_logger().warning(
                f'training stopped at iteration {self.last_iter}, before train.total_iter {total}: basicsr\'s '
                'loop drops the last incomplete batch of every epoch. The plugin\'s entries (basicsr-lmar-train, '
                'basicsr_lmar/train.py) fill it and reach total_iter; or make the number of training samples '
                '(x dataset_enlarge_ratio) a multiple of batch_size_per_gpu x the number of processes.')
        super().save(epoch, current_iter)

    # -------------------------------------------------------------------------------------- randomness
    def iteration_generator(self, current_iter, stream=0):
        """A CPU generator seeded by (``manual_seed``, iteration, stream): identical on every rank (LMAR's
        working size of the iteration, say)."""
        generator = torch.Generator()
        seed = int(self.opt.get('manual_seed') or 0)
        generator.manual_seed((seed * 1_000_003 + int(current_iter)) * 101 + int(stream))
        return generator

    def global_batch_randn(self, local_batch, sample_shape, current_iter, stream=0):
        """Gaussian noise for this rank's samples, cut from one draw for the whole global batch: sample ``j``
        gets the same noise alone on rank ``j // local_batch`` as together with the others in one process."""
        world_size, rank = self.opt.get('world_size', 1), self.opt.get('rank', 0)
        noise = torch.randn((world_size * local_batch, *sample_shape),
                            generator=self.iteration_generator(current_iter, stream))
        return noise[rank * local_batch:(rank + 1) * local_batch].to(self.device)
