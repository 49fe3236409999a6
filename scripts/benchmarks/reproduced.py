"""The networks that ``scripts/reproduce.py`` trained, for the studies and benchmarks that need a trained one.

A reproduction's training arm (``options/repro/<arm>.yml``) leaves its weights where basicsr's loop saves them,
``experiments/<name>/models/net_g_latest.pth`` under the runner's ``--output-root`` (this repository by
default); :func:`load_network` builds the arm's ``network_g`` and loads them.
"""
import os.path as osp

import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OPTIONS = osp.join(REPO, 'options', 'repro')


def arm_options(arm):
    with open(osp.join(OPTIONS, arm)) as handle:
        return yaml.safe_load(handle)


def default_weights(arm):
    """Where ``scripts/reproduce.py`` leaves the weights of training arm ``arm`` (e.g. ``irn_x4.yml``)."""
    return osp.join(REPO, 'experiments', arm_options(arm)['name'], 'models', 'net_g_latest.pth')


def load_network(arm, path, flag, reproduction):
    """``network_g`` of training arm ``arm`` with the weights at ``path`` (``flag`` names the option that gave
    it), frozen in eval mode; a missing file is named with the command that writes it."""
    from basicsr.utils.registry import ARCH_REGISTRY

    import basicsr_lmar  # noqa: F401  (registers the archs)
    from basicsr_lmar.checkpoints.state_dicts import load_network_weights
    from basicsr_lmar.errors import UserError

    if not osp.isfile(path):
        raise UserError(f'{flag} {path}: no such file; train it with python scripts/reproduce.py {reproduction} '
                        '(or give the weights of a network with the options of options/repro/' + arm + ')')
    network = dict(arm_options(arm)['network_g'])
    net = ARCH_REGISTRY.get(network.pop('type'))(**network)
    load_network_weights(net, path, strict=True, param_key='params', where=flag)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
