"""The networks of a plugin model: built from their validated sections, placed, loaded, frozen.

- :meth:`~NetworksMixin.build_trainable_network`: moved, DDP-wrapped when distributed (DataParallel for
  several GPUs in one process), ``path.pretrain_<section>`` loaded, as SRModel does for ``network_g``;
- :meth:`~NetworksMixin.build_frozen_network`: eval mode, no parameter gradients, never wrapped, loaded
  from its path (gradients still flow *through* it to its inputs);
- placement differs from basicsr's where it must: DDP on CPU/gloo too, no DDP for a network without
  trainable parameters, and distributed validation on rank 0 through the bare networks.
"""
import contextlib
import copy
import os.path as osp

import torch
from basicsr.archs import build_network
from torch.nn.parallel import DataParallel, DistributedDataParallel

from basicsr_lmar.models.model_options import Network
from basicsr_lmar.options import OptionError


class NetworksMixin:
    """Network building and placement of a plugin model (part of :class:`PluginModelMixin`)."""

    def build_networks(self):
        """Builds the model's networks (default: ``net_g`` from ``network_g``, trained, as SRModel)."""
        self.net_g = self.build_trainable_network('network_g')

    def _network_options(self, section):
        model_keys = (self.network_sections or {}).get(section, Network('')).model_keys
        net_opt = {k: copy.deepcopy(v) for k, v in self.opt[section].items() if k not in model_keys}
        self.network_options[section] = copy.deepcopy(net_opt)
        return net_opt

    def _load(self, net, section, param_key=None):
        path = self.opt['path']
        label = section.replace('network_', '')
        self.load_network(net, path[f'pretrain_{section}'], path.get(f'strict_load_{label}', True),
                          param_key or path.get(f'param_key_{label}', 'params'), option_key=f'path.pretrain_{section}')

    def build_trainable_network(self, section):
        """``opt[section]`` built, moved, wrapped (DDP/DataParallel), ``path.pretrain_<section>`` loaded."""
        net = self.model_to_device(build_network(self._network_options(section)))
        self.print_network(net)
        if self.opt['path'].get(f'pretrain_{section}') is not None:
            self._load(net, section)
        return net

    def build_frozen_network(self, section, required=True, param_key=None):
        """``opt[section]`` frozen: eval mode, ``requires_grad=False``, never wrapped; loaded from
        ``path.pretrain_<section>`` (``param_key`` of it; an error when ``required`` and unset)."""
        net = build_network(self._network_options(section)).to(self.device)
        key = f'pretrain_{section}'
        load_path = self.opt['path'].get(key)
        if load_path is None and required:
            raise FileNotFoundError(f'path.{key} is required: {section} is a frozen, pretrained network. '
                                    f'Set it to the checkpoint of the {self.opt[section]["type"]} to use.')
        if load_path is not None:
            if self.opt['path'].get('resume_state') and not osp.isfile(load_path):
                raise OptionError(
                    f'[path] {key}: {load_path} does not exist. When resuming, basicsr points every '
                    f'pretrain_network_* at the run\'s own checkpoints, but the frozen {section} is never saved '
                    f'by the run: add `ignore_resume_networks: [{section}]` to the path section (the plugin\'s '
                    'entries, basicsr-lmar-train and basicsr_lmar/train.py, do this for you).')
            self._load(net, section, param_key)
        net.eval()
        net.requires_grad_(False)
        return net

    def model_to_device(self, net):
        # basicsr's passes device_ids=[torch.cuda.current_device()] (no CPU/gloo DDP) and wraps every net
        # (DDP refuses one without trainable parameters: a frozen enhancer, a fixed upscaler).
        net = net.to(self.device)
        if self.opt['dist']:
            if not any(p.requires_grad for p in net.parameters()):
                return net
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            return DistributedDataParallel(net, device_ids=device_ids,
                                           find_unused_parameters=self.opt.get('find_unused_parameters', False))
        if self.opt['num_gpu'] > 1:
            return DataParallel(net)
        return net

    @contextlib.contextmanager
    def bare_networks(self):
        """Within it, every DDP-wrapped network attribute of the model is its bare module."""
        wrapped = {name: net for name, net in vars(self).items() if isinstance(net, DistributedDataParallel)}
        try:
            for name, net in wrapped.items():
                setattr(self, name, net.module)
            yield
        finally:
            for name, net in wrapped.items():
                setattr(self, name, net)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # basicsr validates on rank 0 alone; through a DDP wrapper that forward would send collectives (buffer
        # broadcasts) that no other rank joins, so rank 0 runs on the bare networks.
        if self.opt['rank'] == 0:
            with self.bare_networks():
                self.nondist_validation(dataloader, current_iter, tb_logger, save_img)
