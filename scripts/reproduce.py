"""The mini-reproductions: option files of ``options/repro/`` run through the plugin's entries, figures to JSON.

    python scripts/reproduce.py --list                       # the reproductions and their arms
    python scripts/reproduce.py irn_x4 hcd_irn_x4            # train, evaluate, write results/irn_x4.json ...
    python scripts/reproduce.py irn_x4 --heldout DIR         # also evaluate on every image of DIR
    python scripts/reproduce.py lmar --quick --output-root /tmp/q   # every arm a few iterations on tiny images
    python scripts/reproduce.py --render [--check]           # docs/results.md's tables from results/*.json

A reproduction is an ordered list of option files (its *arms*). A training arm (a file with a ``train``
section) runs in its own process through ``basicsr-lmar-train``'s code (the preflight, then basicsr's
``train_pipeline``), with an iteration budget (``train.total_iter``) and ``--threads`` intra-op threads (1 by
default: the seeded runs then repeat exactly). A test arm is evaluated in its own process through the test
entry's preflight and option parsing and the model's own validation, one image at a time, so that every
image's metrics (the file's ``val.metrics``: Y-PSNR and SSIM, crop border = the scale) are recorded. The
datasets of a test arm say which split it reports (``validation``: where settings are chosen, ``test``: where
figures are reported); ``--heldout DIR`` adds every image of DIR (``HROnlyDataset``; LMAR: ``DIR/input`` and
``DIR/gt``, ``UHDPairedImageDataset``). A reproduction that refines another one's networks (HCD) loads the
weights that one saved under ``--output-root`` and trains them first when they are missing. A reproduction with a
plateau (``car_plateau_x4``) takes each training arm to its plateau instead: trained to its budget, scored on the
validation split by the test arm after it, then resumed from its training state with the budget doubled until the
mean validation Y-PSNR gains less than 0.02 dB over a doubling, or the cap (:class:`Plateau`); the curve is
recorded, and ``--render`` draws it (docs/figures/NAME.png).

``results/NAME.json`` (under ``--output-root``, default this repository) holds per arm the option file, the
iterations, wall and CPU seconds, the weights (path, SHA-256) and, per dataset, every image's metrics, with the
torch and basicsr versions, the machine, its load, the thread count and the commit. The option files as run
and each arm's log are kept under ``experiments/reproduce/NAME/``. ``--quick`` runs every arm for 2 iterations on
32x32 crops and evaluates on photos resized to 48x64 (HCD: 2 steps; a plateau: 2 and 4 iterations), under
experiment names ending in ``_quick`` and to ``results/quick/NAME.json``, so it never replaces a recorded run.
``--render`` rewrites the blocks of docs/results.md between ``<!-- reproduce: NAME -->`` and ``<!-- end: NAME -->``
from the recorded JSON files, and the figures (``--check``: exit 1 when the page differs or a figure is missing).
"""
import argparse
import copy
import datetime
import hashlib
import json
import os
import os.path as osp
import platform
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from basicsr_lmar.atomic_write import write_atomically  # noqa: E402
from basicsr_lmar.errors import UserError  # noqa: E402

OPTIONS = osp.join(REPO, 'options', 'repro')
PAGE = osp.join(REPO, 'docs', 'results.md')
WEIGHTS = 'net_g_latest.pth'  # what basicsr's training loop saves at its last iteration
QUICK_ITERATIONS = 2
QUICK_CROP = 32
QUICK_IMAGE = [48, 64]
QUICK_HCD_STEPS = 2
QUICK_PLATEAU_DOUBLINGS = 1  # --quick: each plateau arm at 2 and 4 iterations
TRAIN_ENTRY = 'import sys; from basicsr_lmar.train import main; sys.argv[0] = "basicsr-lmar-train"; sys.exit(main())'


class ReproductionError(UserError):
    """A mistake in the runner's arguments or in the recorded results."""


# ------------------------------------------------------------------------------------------ the reproductions
@dataclass(frozen=True)
class Plateau:
    """Each training arm taken to its plateau: trained to its ``train.total_iter``, scored on the validation split
    by the test arm that follows it, then resumed from its training state with the budget doubled, until the
    mean validation Y-PSNR gains less than ``tolerance`` dB over a doubling or ``doublings`` doublings are done
    (the cap). Exact when the arm's learning-rate schedule does not depend on ``train.total_iter``."""
    tolerance: float = 0.02
    doublings: int = 3


@dataclass(frozen=True)
class Reproduction:
    name: str
    method: str  # the section of docs/results.md
    what: str  # one line for --list
    arms: Tuple[str, ...]  # option files under options/repro/, in the order they run
    claim: str  # the paper's claim: setting, data, figure
    render: Callable  # (result, results) -> markdown of the block
    needs: Tuple[str, ...] = ()  # reproductions whose trained networks this one loads
    plateau: Optional[Plateau] = None  # arms as (training, validation) pairs, each taken to its plateau
    figure: Optional[Callable] = None  # (result, path): writes docs/figures/NAME.png from the record


def option_path(arm):
    return osp.join(OPTIONS, arm)


def relative(path):
    return osp.relpath(path, REPO) if osp.abspath(path).startswith(REPO + os.sep) else path


def load_options(path):
    """An option file as basicsr reads it (its ordered YAML loader), as plain dicts."""
    import yaml
    from basicsr.utils.options import ordered_yaml

    with open(path) as handle:
        return plain(yaml.load(handle, Loader=ordered_yaml()[0]))


def plain(node):
    if isinstance(node, dict):
        return {key: plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(value) for value in node]
    return node


def is_training(opt):
    return opt.get('train') is not None


def weights_path(train_opt):
    """Where basicsr's loop leaves the last weights of a training arm (relative to the output root)."""
    return osp.join('experiments', train_opt['name'], 'models', WEIGHTS)


def trained_weights(train_opt):
    """``{network section: path}`` of every network a training arm leaves (``net_<label>_latest.pth``)."""
    return {section: osp.join('experiments', train_opt['name'], 'models', f'net_{section[len("network_"):]}_latest.pth')
            for section, value in train_opt.items() if section.startswith('network_') and value}


def experiment_of(path):
    """The run name of a path ``experiments/<name>/...`` (None for another path)."""
    parts = path.replace(os.sep, '/').split('/')
    return parts[1] if len(parts) > 2 and parts[0] == 'experiments' else None


# ------------------------------------------------------------------------------------------ effective options
def quick_options(opt):
    """The same arm for a few iterations on tiny images (what the tests run): ``--quick``."""
    opt = copy.deepcopy(opt)
    opt['name'] = f"{opt['name']}_quick"
    if is_training(opt):
        opt['train']['total_iter'] = QUICK_ITERATIONS
        opt['logger'].update(print_freq=1, save_checkpoint_freq=QUICK_ITERATIONS)
    for key, dataset in opt['datasets'].items():
        if key.split('_')[0] == 'train':
            if dataset.get('gt_size'):
                dataset['gt_size'] = min(dataset['gt_size'], QUICK_CROP)
            dataset['batch_size_per_gpu'] = min(dataset['batch_size_per_gpu'], 2)
            if dataset.get('num_samples'):
                dataset['num_samples'] = QUICK_ITERATIONS * dataset['batch_size_per_gpu']
        elif dataset.get('type') == 'SkimagePhotoDataset':
            dataset['resize_to'] = list(QUICK_IMAGE)
    hcd = opt.get('hcd')
    if hcd:
        for key in ('steps_hr', 'steps_lr'):
            hcd[key] = min(hcd.get(key, 15), QUICK_HCD_STEPS)
        if hcd.get('steps_list'):
            hcd['steps_list'] = [1]
    return opt


def heldout_dataset(opt, folder):
    """``--heldout DIR`` as a test dataset of the arm's model: HR images, or low-light/normal pairs for LMAR."""
    if opt['model_type'] == 'LMARModel':
        pairs = {side: osp.join(folder, side) for side in ('input', 'gt')}
        missing = [path for path in pairs.values() if not osp.isdir(path)]
        if missing:
            raise ReproductionError(f'--heldout {folder}: LMAR is scored on low-light / normal-light pairs of one '
                                    f'size; put them in {pairs["input"]} and {pairs["gt"]} (same file names); '
                                    f'{missing[0]} is not a folder')
        return {'name': 'heldout', 'type': 'UHDPairedImageDataset', 'dataroot_lq': pairs['input'],
                'dataroot_gt': pairs['gt'], 'io_backend': {'type': 'disk'}}
    return {'name': 'heldout', 'type': 'HROnlyDataset', 'dataroot_gt': folder, 'io_backend': {'type': 'disk'}}


def renamed_weights(opt, renames):
    """Points ``path.pretrain_network_*`` at the renamed (``--quick``) experiments."""
    for key, value in list(opt.get('path', {}).items()):
        if key.startswith('pretrain_network') and isinstance(value, str):
            for old, new in renames.items():
                value = value.replace(f'experiments/{old}/', f'experiments/{new}/')
            opt['path'][key] = value
    return opt


@dataclass
class Step:
    arm: str  # option file name under options/repro/
    opt: dict  # the effective options (quick, heldout)
    reproduction: str  # the reproduction the arm belongs to (a needed one's training arms run first)

    @property
    def training(self):
        return is_training(self.opt)


def plan(reproduction, args, root):
    """The steps of ``reproduction`` as effective options: ``(every step, the steps to run)``. Every step includes
    the arms of the reproductions it needs; of those, only the training arms whose weights are missing under
    ``root`` run."""
    steps, renames = [], {}
    for name in reproduction.needs + (reproduction.name, ):
        for arm in REPRODUCTIONS[name].arms:
            opt = load_options(option_path(arm))
            if args.quick:
                original = opt['name']
                opt = quick_options(opt)
                renames[original] = opt['name']
            steps.append(Step(arm, opt, name))
    for step in steps:
        renamed_weights(step.opt, renames)
        if args.heldout and not step.training and step.reproduction == reproduction.name and not reproduction.plateau:
            step.opt['datasets']['test_heldout'] = heldout_dataset(step.opt, osp.abspath(args.heldout))
    to_run = [step for step in steps if step.reproduction == reproduction.name
              or (step.training and not osp.isfile(osp.join(root, weights_path(step.opt))))]
    return steps, to_run


def preflight(steps, root):
    """Every step's options through the entries' preflight before anything runs or any folder is created.
    Weights are looked up under ``root``, where the steps run; those that an earlier step writes do not exist
    yet: the preflight sees a stand-in, the freshly initialised network of the step that writes them (so the
    checkpoint checks run on a real file of the right network), and the step's own process checks the real
    file when it starts."""
    import tempfile

    from basicsr_lmar import preflight as checks

    with tempfile.TemporaryDirectory() as scratch:
        stand_ins = {path: (step, section) for step in steps if step.training
                     for section, path in trained_weights(step.opt).items()}
        for step in steps:
            opt = copy.deepcopy(step.opt)
            for key, value in opt.get('path', {}).items():
                if key.startswith('pretrain_network') and isinstance(value, str):
                    producer = stand_ins.get(value)
                    opt['path'][key] = (stand_in_weights(producer[0].opt, producer[1], scratch) if producer is not None
                                        else osp.join(root, value))
            try:
                checks.check_options(opt, step.training)
            except UserError as error:
                raise ReproductionError(f'{relative(option_path(step.arm))}: {error}') from None


def stand_in_weights(train_opt, section, folder):
    """``train_opt``'s trained network ``section``, freshly initialised, saved as basicsr saves it (in ``folder``)."""
    import torch
    from basicsr.archs import build_network

    path = osp.join(folder, f"{train_opt['name']}_{section}.pth")
    if not osp.isfile(path):
        torch.save({'params': build_network(copy.deepcopy(train_opt[section])).state_dict()}, path)
    return path


# ------------------------------------------------------------------------------------------ running
def write_options(opt, folder, arm, label=''):
    """The effective option file of a step (the file the entry reads), in the reproduction's ``folder``."""
    import yaml

    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f"{opt['name']}{label}.yml")
    with open(path, 'w') as handle:
        handle.write(f'# {relative(option_path(arm))} as scripts/reproduce.py runs it\n')
        yaml.safe_dump(opt, handle, sort_keys=False)
    return path


def child_environment(threads):
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    environment['PYTHONPATH'] = os.pathsep.join(filter(None, (REPO, os.environ.get('PYTHONPATH'))))
    return environment


def run_child(command, root, threads, log_path):
    """Runs ``command`` in ``root`` (its output to ``log_path``); returns wall and CPU seconds."""
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        process = subprocess.run(command, cwd=root, env=child_environment(threads), stdout=log,
                                 stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode:
        with open(log_path) as log:
            tail = ''.join(log.readlines()[-25:])
        raise RuntimeError(f'{" ".join(command[-3:])} failed (exit code {process.returncode}); the end of '
                           f'{log_path}:\n{tail}')
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(wall, 1), round(cpu, 1)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def train_step(step, root, threads, logs, label=''):
    options = write_options(step.opt, logs, step.arm, label)
    wall, cpu = run_child([sys.executable, '-c', TRAIN_ENTRY, '-opt', options], root, threads,
                          osp.join(logs, f"{step.opt['name']}{label}.log"))
    weights = weights_path(step.opt)
    if not osp.isfile(osp.join(root, weights)):
        raise RuntimeError(f'{step.arm}: training ended without {weights}')
    data = step.opt['datasets']['train']
    return {'option_file': relative(option_path(step.arm)), 'kind': 'train', 'name': step.opt['name'],
            'model': step.opt['model_type'], 'iterations': step.opt['train']['total_iter'],
            'batch': data['batch_size_per_gpu'], 'crop': data.get('gt_size'), 'split': data.get('split'),
            'wall_seconds': wall, 'cpu_seconds': cpu,
            'weights': {'path': weights, 'sha256': sha256(osp.join(root, weights))}}


def test_step(step, root, threads, logs, iterations, label=''):
    """``iterations``: ``{run name: iterations}`` of the runs whose weights the arm loads."""
    options = write_options(step.opt, logs, step.arm, label)
    output = osp.join(logs, f"{step.opt['name']}{label}.json")
    wall, cpu = run_child([sys.executable, osp.abspath(__file__), '--evaluate-arm', options, '--arm-json', output],
                          root, threads, osp.join(logs, f"{step.opt['name']}{label}.log"))
    with open(output) as handle:
        evaluation = json.load(handle)
    weights = {}
    for key, value in step.opt.get('path', {}).items():
        if key.startswith('pretrain_network') and value:
            weights[key[len('pretrain_'):]] = {'path': value, 'sha256': sha256(osp.join(root, value)),
                                               'iterations': iterations.get(experiment_of(value))}
    settings = {'hcd': step.opt['hcd']} if step.opt.get('hcd') else {}  # what the per-image keys name
    return {'option_file': relative(option_path(step.arm)), 'kind': 'test', 'name': step.opt['name'],
            'model': step.opt['model_type'], 'weights': weights, 'wall_seconds': wall, 'cpu_seconds': cpu,
            **settings, **evaluation}


def commit():
    def git(*args):
        result = subprocess.run(['git', '-C', REPO, *args], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    return git('rev-parse', 'HEAD'), bool(git('status', '--porcelain', '--untracked-files=no'))


def environment_record(threads):
    import basicsr
    import torch

    revision, dirty = commit()
    return {'commit': revision, 'uncommitted_changes': dirty, 'torch': torch.__version__,
            'basicsr': basicsr.__version__, 'python': platform.python_version(), 'machine': platform.machine(),
            'processor': processor(), 'cpus': os.cpu_count(), 'threads': threads,
            'load_average': round(os.getloadavg()[0], 2) if hasattr(os, 'getloadavg') else None}


def processor():
    """The CPU model (Linux: /proc/cpuinfo), else what the platform module knows."""
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def run_reproduction(reproduction, args, root):
    every, steps = plan(reproduction, args, root)
    preflight(steps, root)
    logs = osp.join(root, 'experiments', 'reproduce', reproduction.name + ('_quick' if args.quick else ''))
    iterations = {step.opt['name']: step.opt['train']['total_iter'] for step in every if step.training}
    record = {'reproduction': reproduction.name, 'quick': args.quick,
              'started': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
              **environment_record(args.threads), 'heldout': args.heldout and osp.abspath(args.heldout), 'arms': []}
    if reproduction.plateau:
        record['arms'] = run_plateaus(reproduction, steps, args, root, logs)
        steps = []
    for index, step in enumerate(steps, 1):
        kind = 'train' if step.training else 'test'
        extra = f' ({step.opt["train"]["total_iter"]} iterations)' if step.training else ''
        label = '' if step.reproduction == reproduction.name else f' (for {step.reproduction})'
        print(f'[{reproduction.name} {index}/{len(steps)}] {kind} {relative(option_path(step.arm))}{extra}{label}',
              flush=True)
        if step.training:
            arm = train_step(step, root, args.threads, logs)
        else:
            arm = test_step(step, root, args.threads, logs, iterations)
        if step.reproduction != reproduction.name:
            arm['for'] = step.reproduction
        record['arms'].append(arm)
        print(f'    {arm["wall_seconds"]:.0f} s wall, {arm["cpu_seconds"]:.0f} s CPU', flush=True)
    folder = osp.join(root, 'results', 'quick') if args.quick else osp.join(root, 'results')
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{reproduction.name}.json')

    def write(temporary):
        with open(temporary, 'w') as handle:
            json.dump(record, handle, indent=1)
            handle.write('\n')

    write_atomically(path, write)
    print(f'wrote {path}', flush=True)
    return path


def plateau_reached(means, tolerance):
    """Whether the last doubling of the budget gained less than ``tolerance`` dB (``means``: the mean validation
    Y-PSNR at each budget, in order)."""
    return len(means) >= 2 and means[-1] - means[-2] < tolerance


def plateau_curve(start, cap, tolerance, run_segment):
    """Budgets ``start``, ``2 start``, ... up to ``cap``: ``run_segment(budget, previous)`` trains to ``budget``
    (resuming from the budget ``previous``, None at first) and returns that point of the curve, a dict with the
    mean validation Y-PSNR ``mean_psnr``; stops at the first doubling that gains less than ``tolerance`` dB.
    Returns the curve and whether the plateau was reached before the cap stopped it."""
    curve, budget = [], start
    while True:
        curve.append(run_segment(budget, curve[-1]['iterations'] if curve else None))
        reached = plateau_reached([point['mean_psnr'] for point in curve], tolerance)
        if reached or budget * 2 > cap:
            return curve, reached
        budget *= 2


def run_plateaus(reproduction, steps, args, root, logs):
    """Each (training, validation) pair of arms to its plateau (:class:`Plateau`); one record per pair."""
    spec, records = reproduction.plateau, []
    pairs = list(zip(steps[0::2], steps[1::2]))
    doublings = min(spec.doublings, QUICK_PLATEAU_DOUBLINGS) if args.quick else spec.doublings
    for index, (train, test) in enumerate(pairs, 1):
        opt = copy.deepcopy(train.opt)
        start = opt['train']['total_iter']
        states = osp.join('experiments', opt['name'], 'training_states')
        segments = {}

        def run_segment(budget, previous):
            opt['train']['total_iter'] = budget
            opt['path']['resume_state'] = None if previous is None else osp.join(states, f'{previous}.state')
            print(f'[{reproduction.name} {index}/{len(pairs)}] train {relative(option_path(train.arm))} to {budget} '
                  f'iterations{"" if previous is None else f" (resumed at {previous})"}', flush=True)
            trained = train_step(Step(train.arm, opt, train.reproduction), root, args.threads, logs, f'_{budget}')
            scored = test_step(test, root, args.threads, logs, {opt['name']: budget}, f'_{budget}')
            segments.update(trained=trained, scored=scored)
            images = split_images(scored, 'validation')
            point = {'iterations': budget, 'mean_psnr': mean(image['psnr'] for image in images),
                     'mean_ssim': mean(image['ssim'] for image in images), 'images': images,
                     'wall_seconds': round(trained['wall_seconds'] + scored['wall_seconds'], 1),
                     'cpu_seconds': round(trained['cpu_seconds'] + scored['cpu_seconds'], 1)}
            print(f"    validation Y-PSNR {point['mean_psnr']:.3f} dB, {trained['cpu_seconds']:.0f} s CPU", flush=True)
            return point

        cap = start * 2**doublings
        curve, reached = plateau_curve(start, cap, spec.tolerance, run_segment)
        trained, scored = segments['trained'], segments['scored']
        records.append({**trained, 'kind': 'plateau', 'test_option_file': scored['option_file'],
                        'metrics': scored['metrics'], 'parameters': scored['parameters'],
                        'tolerance': spec.tolerance, 'cap': cap, 'reached': reached, 'curve': curve,
                        'wall_seconds': round(sum(point['wall_seconds'] for point in curve), 1),
                        'cpu_seconds': round(sum(point['cpu_seconds'] for point in curve), 1)})
    return records


# ------------------------------------------------------------------------------------------ evaluation (child)
def evaluate_arm(option_file, output):
    """One test arm, in its own process: the test entry's preflight and parsing, then the model's validation on
    one image at a time, every image's metric values to ``output`` (JSON)."""
    import logging

    import torch
    from basicsr.data import build_dataset
    from basicsr.models import build_model
    from basicsr.utils import get_root_logger, get_time_str, make_exp_dirs
    from basicsr.utils.options import parse_options

    import basicsr_lmar  # noqa: F401  (registers the plugin)
    from basicsr_lmar import preflight as checks
    from basicsr_lmar.runtime import pipeline

    argv = ['-opt', option_file]
    checks.check_option_file(option_file, is_train=False)
    pipeline.install(argv)
    sys.argv = ['basicsr-lmar-test'] + argv
    opt, _ = parse_options(os.getcwd(), is_train=False)
    make_exp_dirs(opt)
    get_root_logger(logger_name='basicsr', log_level=logging.INFO,
                    log_file=osp.join(opt['path']['log'], f"test_{opt['name']}_{get_time_str()}.log"))
    model = build_model(opt)
    datasets = []
    for key, dataset_opt in opt['datasets'].items():
        dataset = build_dataset(dataset_opt)
        images = []
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(len(dataset)):
            sample = dataset[index]
            name = osp.splitext(osp.basename(sample.get('gt_path') or sample.get('lq_path')))[0]
            loader = torch.utils.data.DataLoader(dataset, batch_size=1, sampler=[index], num_workers=0)
            model.validation(loader, current_iter=opt['name'], tb_logger=None, save_img=opt['val'].get('save_img'))
            images.append({'name': name, **image_values(model)})
        datasets.append({'name': dataset_opt['name'], 'split': split_of(key, dataset_opt),
                         'folder': dataset_opt.get('dataroot_gt'), 'images': images,
                         'wall_seconds': round(time.perf_counter() - wall, 1),
                         'cpu_seconds': round(time.process_time() - cpu, 1)})
    parameters = {attr: sum(p.numel() for p in getattr(model, attr).parameters())
                  for attr in ('net_g', 'net_enhancer') if isinstance(getattr(model, attr, None), torch.nn.Module)}
    with open(output, 'w') as handle:
        json.dump({'metrics': opt['val'].get('metrics'), 'parameters': parameters, 'datasets': datasets}, handle,
                  indent=1)


def split_of(key, dataset_opt):
    """``validation`` / ``test`` for the embedded photos, ``heldout`` for ``--heldout DIR``, else the name."""
    if key == 'test_heldout':
        return 'heldout'
    split = dataset_opt.get('split') if dataset_opt.get('type') == 'SkimagePhotoDataset' else None
    return {'heldout': 'test'}.get(split, split) or dataset_opt['name']


def image_values(model):
    """The metric values of the model's last validation (one image): what each model keeps of it."""
    from basicsr_lmar.models.hcd_model import HCDModel
    from basicsr_lmar.models.lmar_model import LMARModel

    if isinstance(model, HCDModel):  # base rescaler, every N, gains, seconds
        return {key: value for key, value in model.per_image[-1].items() if key != 'name'}
    if isinstance(model, LMARModel):  # every working size x resizer, with and without LMAR
        table = model.validation_table
        return {f'{metric}_{size[0]}x{size[1]}_{kernel}_{"lmar" if use_lmar else "plain"}':
                table.value(size, kernel, use_lmar, metric)
                for metric in table.metrics for size in table.sizes for kernel in table.resizers
                for use_lmar in (False, True)}
    values = {key: float(value) for key, value in model.metric_results.items()}
    if hasattr(model, 'content_adaptivity'):  # CAR's kernel spread and offset length, measured by its arch
        values.update(model.content_adaptivity())
    return values


# ------------------------------------------------------------------------------------------ rendering
def figure_path(name):
    """Where ``--render`` writes the figure of reproduction ``name`` (docs/figures/NAME.png)."""
    return osp.join(REPO, 'docs', 'figures', f'{name}.png')


def load_results(folder):
    results = {}
    for name in REPRODUCTIONS:
        path = osp.join(folder, f'{name}.json')
        if osp.isfile(path):
            with open(path) as handle:
                results[name] = json.load(handle)
    return results


def render_page(page, results):
    """``page`` with every ``<!-- reproduce: NAME -->`` block rendered from ``results[NAME]``."""
    pattern = re.compile(r'(<!-- reproduce: (\w+) -->\n)(.*?)(<!-- end: \2 -->)', re.S)

    def block(match):
        name = match.group(2)
        if name not in REPRODUCTIONS:
            raise ReproductionError(f'docs/results.md names a reproduction {name!r} that scripts/reproduce.py '
                                    f'does not have; known: {", ".join(REPRODUCTIONS)}')
        if name not in results:
            raise ReproductionError(f'results/{name}.json is missing; run python scripts/reproduce.py {name}')
        result = results[name]
        if result.get('quick'):
            raise ReproductionError(f'results/{name}.json is a --quick run; the page renders full runs only')
        return match.group(1) + REPRODUCTIONS[name].render(result, results).rstrip('\n') + '\n' + match.group(4)

    return pattern.sub(block, page)


def arms(result, kind=None, option=None):
    return [arm for arm in result['arms'] if (kind is None or arm['kind'] == kind)
            and (option is None or arm['option_file'].endswith('/' + option))]


def arm(result, option):
    found = arms(result, option=option)
    if not found:
        raise ReproductionError(f"results/{result['reproduction']}.json has no arm {option}")
    return found[-1]


def split_images(test_arm, split):
    for dataset in test_arm['datasets']:
        if dataset['split'] == split:
            return dataset['images']
    raise ReproductionError(f"{test_arm['option_file']} has no {split} split in its recorded results")


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def signed(value, digits=2):
    return f'{value:+.{digits}f}'


def check_same_weights(result, results, needed):
    """A reproduction that loads another one's networks must have used the weights that run recorded."""
    if needed not in results:
        raise ReproductionError(f"results/{result['reproduction']}.json loads the networks of {needed}, whose "
                                f'results/{needed}.json is missing; run python scripts/reproduce.py {needed}')
    recorded = {train['weights']['path']: train['weights']['sha256'] for train in arms(results[needed], 'train')}
    for test in arms(result, 'test'):
        for entry in test['weights'].values():
            if entry['path'] in recorded and recorded[entry['path']] != entry['sha256']:
                raise ReproductionError(
                    f"results/{result['reproduction']}.json used other {entry['path']} than results/{needed}.json "
                    f"recorded; rerun python scripts/reproduce.py {result['reproduction']} after {needed}")


def border(test_arm):
    return test_arm['metrics']['psnr']['crop_border']


def command(name):
    return f'`python scripts/reproduce.py {name}`'


def row(claim, measured, name, status):
    return ('| paper | measured here | command | status |\n|---|---|---|---|\n'
            f'| {claim} | {measured} | {command(name)} | {status} |\n')


def commit_line(result):
    cpu = sum(arm['cpu_seconds'] for arm in result['arms'])
    revision = (result['commit'] or 'unknown')[:10]
    dirty = ' with uncommitted changes' if result['uncommitted_changes'] else ''
    return (f"Recorded at commit {revision}{dirty}, torch {result['torch']}, basicsr {result['basicsr']}, "
            f"{result['threads']} thread(s), {cpu / 60:.0f} CPU minutes in all ([results/{result['reproduction']}"
            f".json](../results/{result['reproduction']}.json)).\n")


def render_rescaler(network, option_train, option_test, paper_training):
    """The page block of a small rescaling network (IRN, HCFlow) next to bicubic down / up."""

    def render(result, results):
        train = arm(result, option_train)
        test, bicubic = arm(result, option_test), arm(result, 'bicubic_x4_test.yml')
        lines = []
        gains = {}
        for split in ('test', 'validation'):
            ours = split_images(test, split)
            base = {image['name']: image for image in split_images(bicubic, split)}
            gains[split] = [image['psnr'] - base[image['name']]['psnr_base'] for image in ours]
            for image in ours:
                other = base[image['name']]
                lines.append(f"| {split} | {image['name']} | {image['psnr']:.2f} / {image['ssim']:.4f} | "
                             f"{other['psnr_base']:.2f} / {other['ssim_base']:.4f} | "
                             f"{signed(image['psnr'] - other['psnr_base'])} |")
        ours = split_images(test, 'test')
        base = split_images(bicubic, 'test')
        parameters = test['parameters']['net_g']
        measured = (f"small {network} ×4 ({parameters:,} parameters), {train['iterations']:,} iterations of "
                    f"{train['batch']} crops of {train['crop']}×{train['crop']}, on the test split ({len(ours)} "
                    f"photos): Y-PSNR {mean(i['psnr'] for i in ours):.2f} dB / SSIM {mean(i['ssim'] for i in ours):.4f}"
                    f"; bicubic↓↑ {mean(i['psnr_base'] for i in base):.2f} dB / "
                    f"{mean(i['ssim_base'] for i in base):.4f}")
        if all(gain > 0 for gain in gains['test']):
            status = (f"partly: above bicubic↓↑ on every test photo ({signed(mean(gains['test']))} dB); the "
                      f"paper's figure needs {paper_training}, not run here")
        else:
            status = (f"not shown: not above bicubic↓↑ on every test photo (mean {signed(mean(gains['test']))} dB)")
        return (row(REPRODUCTIONS[result['reproduction']].claim, measured, result['reproduction'], status) + '\n'
                + f'Per photo, Y-PSNR (dB) / SSIM, crop border {border(test)}, reconstruction of the stored 8-bit '
                'LR:\n\n'
                f'| split | photo | {network} ×4 | bicubic↓↑ | {network} − bicubic (dB) |\n'
                '|---|---|---|---|---|\n' + '\n'.join(lines) + '\n\n' + commit_line(result))

    return render


def render_hcd(network, trained_by):

    def render(result, results):
        check_same_weights(result, results, trained_by)
        fixed, stop = arm(result, f'hcd_{trained_by}.yml'), arm(result, f'hcd_{trained_by}_stop.yml')
        n = fixed['hcd']['steps_hr']  # N_y = N_x: the setting the paper reports
        tag = f'hcd{n}'
        images = split_images(fixed, 'test')
        stopped = {image['name']: image for image in split_images(stop, 'test')}
        gains = [image[f'psnr_gain_{tag}'] for image in images]
        stop_gains = [stopped[image['name']][f'psnr_gain_{tag}'] for image in images]
        iterations = fixed['weights']['network_g']['iterations']
        measured = (f"HCD N = {n} on the small {network} ×4 of `{trained_by}` ({iterations:,} iterations), test split "
                    f"({len(images)} photos): mean Y-PSNR gain {signed(mean(gains), 3)} dB, {sum(g > 0 for g in gains)}"
                    f"/{len(gains)} improved; with the stopping rule {signed(mean(stop_gains), 3)} dB")
        if all(gain > 0 for gain in gains):
            status = ('partly: HCD improves every test photo of a small network trained for minutes; the paper\'s '
                      f'figure is for the authors\' {network} on Set5, not run here')
        else:
            status = f'not shown: HCD does not improve every test photo (mean {signed(mean(gains), 3)} dB)'
        steps = sorted({int(key[len('psnr_gain_hcd'):]) for key in images[0]
                        if re.fullmatch(r'psnr_gain_hcd\d+', key)})
        per_image = '\n'.join(
            f"| {image['name']} | {image['psnr_base']:.3f} | {image[f'psnr_{tag}']:.3f} | "
            f"{signed(image[f'psnr_gain_{tag}'], 3)} | {signed(stopped[image['name']][f'psnr_gain_{tag}'], 3)} | "
            f"{signed(image[f'ssim_gain_{tag}'], 4)} |" for image in images)
        curve = '\n'.join(f"| {k} | {signed(mean(image[f'psnr_gain_hcd{k}'] for image in images), 3)} | "
                          f"{signed(min(image[f'psnr_gain_hcd{k}'] for image in images), 3)} |" for k in steps)
        return (row(REPRODUCTIONS[result['reproduction']].claim, measured, result['reproduction'], status) + '\n'
                f'Per test photo, Y-PSNR (dB, crop border {border(fixed)}) of the reconstruction of the stored 8-bit '
                'LR:\n\n'
                f'| photo | base | HCD N = {n} | gain | gain, stopping rule | SSIM gain |\n|---|---|---|---|---|---|\n'
                + per_image + '\n\nGain against N (N_x = N_y = N; the paper\'s Table 3):\n\n'
                '| N | mean gain (dB) | smallest gain (dB) |\n|---|---|---|\n' + curve + '\n\n'
                + commit_line(result))

    return render


def lmar_gains(images, metric='psnr'):
    """Per working size (largest first): mean over resizers and images of plain and LMAR values; and the
    resizers."""
    table, kernels = {}, []
    for image in images:
        for key, value in image.items():
            if key == 'name' or not key.startswith(metric + '_'):
                continue
            size, kernel, mode = key[len(metric) + 1:].rsplit('_', 2)
            table.setdefault(size, {}).setdefault(mode, []).append(value)
            if kernel not in kernels:
                kernels.append(kernel)
    sizes = sorted(table, key=lambda s: -int(s.split('x')[0]) * int(s.split('x')[1]))
    return [(size, mean(table[size]['plain']), mean(table[size]['lmar'])) for size in sizes], kernels


def render_lmar(result, results):
    test, bottleneck = arm(result, 'lmar_test.yml'), arm(result, 'lmar_bottleneck_test.yml')
    images = split_images(test, 'test')
    rows, kernels = lmar_gains(images)
    full, downscaled = rows[0], rows[1:]
    gains = [lmar - plain for _, plain, lmar in downscaled]
    above = sum(gain > 0 for gain in gains)
    validation = {label: lmar_gains(split_images(found, 'validation'))[0]
                  for label, found in (('head', test), ('bottleneck', bottleneck))}
    chosen = {label: mean(lmar - plain for _, plain, lmar in rows_[1:]) for label, rows_ in validation.items()}
    full_size = full[0].replace('x', '×')
    measured = (f"tiny CNN-I enhancer ({test['parameters']['net_enhancer']:,} parameters, "
                f"{arm(result, 'lmar_enhancer.yml')['iterations']} iterations) and LMAR resampler "
                f"({arm(result, 'lmar.yml')['iterations']} iterations) on darkened photos at {full_size}, test "
                f"split ({len(images)} photos), mean of {len(kernels)} resizers: Y-PSNR gain over the plain pipeline "
                f"{signed(min(gains))} to {signed(max(gains))} dB at the {len(gains)} downscaled working sizes, "
                f"{signed(full[2] - full[1])} dB at full size")
    scope = "a tiny enhancer on darkened photos; the paper's enhancers and UHD data are not run here"
    full_gain = full[2] - full[1]
    if above == len(gains) and full_gain > 0:
        status = f'partly: above the plain pipeline at every working size, with {scope}'
    elif above == len(gains):
        status = (f'partly: above the plain pipeline at every downscaled size, below it at full size '
                  f'({signed(full_gain)} dB), with {scope}')
    else:
        status = f'not shown: above the plain pipeline at {above} of {len(gains)} downscaled sizes'
    lines = '\n'.join(f'| {size} | {plain:.2f} | {lmar:.2f} | {signed(lmar - plain)} |' for size, plain, lmar in rows)
    return (row(REPRODUCTIONS['lmar'].claim, measured, 'lmar', status) + '\n'
            f'Test split, Y-PSNR (dB) at full size, mean over the {len(kernels)} resizers ({", ".join(kernels)}) and '
            f'the photos, per working size (the paper\'s {len(rows)}, scaled to {full_size}):\n\n'
            '| working size | plain | with LMAR | gain |\n|---|---|---|---|\n' + lines + '\n\n'
            'The enhancer feature LMAR matches, chosen on the validation split (mean gain at the downscaled sizes): '
            f"its output (`feature_layer: head`, the shipped choice) {signed(chosen['head'])} dB, its bottleneck "
            f"(the paper's) {signed(chosen['bottleneck'])} dB.\n\n" + commit_line(result))


# ------------------------------------------------------------------------------------------ CAR
def car_values(test_arm, split):
    """``{photo: values}`` of a CARModel test arm on ``split``."""
    return {image['name']: image for image in split_images(test_arm, split)}


def car_summary(test_arm, base_arm, split):
    """Mean Y-PSNR / SSIM of an arm on ``split``, its per-photo gains over ``base_arm``, the mean adaptivity."""
    ours, base = car_values(test_arm, split), car_values(base_arm, split)
    gains = [ours[name]['psnr'] - base[name]['psnr'] for name in base]
    spread = [image['kernel_spread'] for image in ours.values() if 'kernel_spread' in image]
    length = [image['offset_length'] for image in ours.values() if 'offset_length' in image]
    return {'psnr': mean(image['psnr'] for image in ours.values()),
            'ssim': mean(image['ssim'] for image in ours.values()), 'gain': mean(gains),
            'improved': sum(gain > 0 for gain in gains), 'count': len(gains),
            'spread': mean(spread) if spread else None, 'offsets': mean(length) if length else None}


def car_maps_text(summary):
    if summary['spread'] is None:
        return '—', '—'
    return f"{summary['spread']:.3f}", f"{summary['offsets']:.3f}"


def splits_of(test_arm):
    return [dataset['split'] for dataset in test_arm['datasets']]


#: CAR's joint target: at x4, on the test split, at equal iterations
CAR_TARGET_DB = 0.5
#: the kernel spread (CARResamplerNet.adaptivity) above which kernels count as content-adaptive
CAR_ADAPTIVE_SPREAD = 0.05


def render_car_joint(scale):
    prefix = f'car_joint_x{scale}'
    joint_arms = (('(a) bicubic↓ + SR', '(a)', 'bicubic'), ('(b) CAR + SR', '(b)', 'car'),
                  ('(c) CAR‡: a fresh SR on the fixed CAR of (b)', '(c)', 'car_fixed'),
                  ('control: bicubic↓ + a learned residual, R, G, B free', 'rgb', 'control_rgb'),
                  ('control: one residual for R, G and B', 'luma', 'control_luma'))

    def render(result, results):
        tests = {key: arm(result, f'{prefix}_{key}_test.yml') for _, _, key in joint_arms}
        train = arm(result, f'{prefix}_car.yml')
        base = tests['bicubic']
        test = {key: car_summary(found, base, 'test') for key, found in tests.items()}
        car, control = test['car'], test['control_rgb']
        spread, offsets = car_maps_text(car)
        measured = (f"CAR 8/16/32/1 (signed, bicubic start) + EDSR 32×4 ×{scale}, {train['iterations']:,} iterations "
                    f"of {train['batch']} crops of {train['crop']}×{train['crop']} from one EDSR start, test split "
                    f"({car['count']} photos): CAR + SR {car['psnr']:.2f} dB against bicubic↓ + SR "
                    f"{test['bicubic']['psnr']:.2f} dB ({signed(car['gain'])} dB, {car['improved']}/{car['count']} "
                    f"improved; kernel spread {spread}, offsets {offsets} HR px); CAR‡ "
                    f"{signed(test['car_fixed']['gain'])} dB; the control downscaler (rgb) "
                    f"{signed(control['gain'])} dB")
        adaptive = car['spread'] is not None and car['spread'] > CAR_ADAPTIVE_SPREAD
        if scale == 4 and car['gain'] >= CAR_TARGET_DB and car['improved'] == car['count'] and adaptive:
            status = (f'partly: CAR + SR gains {signed(car["gain"])} dB over bicubic↓ + SR on every test photo at '
                      'equal iterations, with content-adaptive kernels; the paper\'s figure needs its full networks, '
                      'DIV2K and 37,500 iterations, not run here')
        else:
            status = (f'not shown: CAR + SR {signed(car["gain"])} dB against bicubic↓ + SR at equal iterations '
                      f'({car["improved"]}/{car["count"]} test photos improved), where the control downscaler that may '
                      f'colour the LR gains {signed(control["gain"])} dB; the ablation below says where the gain is '
                      'lost')
        rows = []
        for label, _, key in joint_arms:
            validation = car_summary(tests[key], base, 'validation')
            spread, offsets = car_maps_text(test[key])
            gain = '—' if key == 'bicubic' else signed(validation['gain'])
            test_gain = '—' if key == 'bicubic' else signed(test[key]['gain'])
            improved = '—' if key == 'bicubic' else f"{test[key]['improved']}/{test[key]['count']}"
            rows.append(f"| {label} | {validation['psnr']:.2f} | {gain} | {test[key]['psnr']:.2f} / "
                        f"{test[key]['ssim']:.4f} | {test_gain} | {improved} | {spread} | {offsets} |")
        photos = []
        for split in [split for split in splits_of(base) if split != 'validation']:
            values = {key: car_values(found, split) for key, found in tests.items()}
            for name in values['bicubic']:
                photos.append(f'| {split} | {name} | ' + ' | '.join(f"{values[key][name]['psnr']:.2f}"
                                                                    for _, _, key in joint_arms) + ' |')
        header = ' | '.join(short for _, short, _ in joint_arms)
        return (row(REPRODUCTIONS[prefix].claim, measured, prefix, status) + '\n'
                f'Per arm, mean Y-PSNR (dB, crop border {border(base)}) of the reconstruction of the stored 8-bit LR, '
                'all arms from the same EDSR initialisation at equal iterations; gains over (a); kernel spread and '
                'offset length on the test split (`CARResamplerNet.adaptivity`):\n\n'
                '| arm | validation | gain | test Y-PSNR / SSIM | gain | improved | kernel spread | offsets (HR px) |\n'
                '|---|---|---|---|---|---|---|---|\n' + '\n'.join(rows) + '\n\n'
                f'Per photo, Y-PSNR (dB):\n\n| split | photo | {header} |\n|---|---|' + '---|' * len(joint_arms)
                + '\n' + '\n'.join(photos) + '\n\n' + commit_line(result))

    return render


#: the ablation from the control to CAR, one change at a time: (key, test arm, change, the row it changes)
CAR_ABLATION = (
    ('bicubic', 'car_joint_x4_bicubic_test.yml', 'bicubic↓ + SR, the baseline (arm (a))', None),
    ('rgb', 'car_joint_x4_control_rgb_test.yml', 'control: bicubic↓ + a learned residual, R, G, B free', 'bicubic'),
    ('chroma', 'car_ablation_x4_control_chroma_test.yml', "the residual moves only the LR's colour (its Y stays "
     "bicubic's)", 'rgb'),
    ('luma', 'car_joint_x4_control_luma_test.yml', 'one residual for R, G and B', 'rgb'),
    ('car_plain', 'car_ablation_x4_car_plain_test.yml', 'CAR: one signed kernel for R, G and B, bicubic start, no '
     'offset or TV loss', 'luma'),
    ('car', 'car_joint_x4_car_test.yml', 'with the offset and TV losses (1e-5, 1e-3): arm (b)', 'car_plain'),
    ('car_ste', 'car_ablation_x4_car_ste_test.yml', 'straight-through rounding instead of soft_ste', 'car'),
    ('car_clamped', 'car_ablation_x4_car_clamped_test.yml', "the paper's clamped head from the box start", 'car'),
)
#: what each change does, said where the rendering finds that it loses the gain
CAR_ABLATION_MECHANISM = {
    'rgb': 'the residual starts at zero: this arm adds a learned downscaler to bicubic↓ + SR',
    'chroma': "the LR's Y is held at bicubic's, so whatever the pair gains, it carries in the LR's colour",
    'luma': ("it closes the colour side channel: with one residual (as with CAR's one kernel) for R, G and B a "
             "gray photo's LR stays gray, so the LR can no longer carry luminance detail in its colour, which the SR "
             'network decodes and Y-PSNR does not penalise. CAR is in this class; beating it needs a downscaler that '
             'may colour the LR (per-channel kernels, a chroma residual), beyond the paper'),
    'car_plain': 'a normalised weighted mean of HR samples replaces the free residual',
    'car': 'the offset penalty and the TV term pull the offsets towards zero',
    'car_ste': 'the rounding passes an identity gradient instead of soft rounding\'s',
    'car_clamped': 'the clamp passes no gradient outside its range and cannot hold negative lobes',
}


def render_car_ablation(result, results):
    check_same_weights(result, results, 'car_joint_x4')
    tests = {key: arm(result, option) for key, option, _, _ in CAR_ABLATION}
    base = tests['bicubic']
    validation = {key: car_summary(found, base, 'validation') for key, found in tests.items()}
    test = {key: car_summary(found, base, 'test') for key, found in tests.items()}
    drops = {key: validation[key]['gain'] - validation[parent]['gain'] for key, _, _, parent in CAR_ABLATION
             if parent not in (None, 'bicubic')}
    lost = min(drops, key=drops.get)
    rows = []
    for key, _, change, parent in CAR_ABLATION:
        spread, offsets = car_maps_text(validation[key])
        step = '—' if parent is None else f"{signed(validation[key]['gain'] - validation[parent]['gain'])}"
        gain = '—' if parent is None else signed(validation[key]['gain'])
        test_gain = ('—' if parent is None else
                     f"{signed(test[key]['gain'])} ({test[key]['improved']}/{test[key]['count']})")
        rows.append(f"| {key} | {change} | {parent or '—'} | {validation[key]['psnr']:.2f} | {gain} | {step} | "
                    f"{test_gain} | {spread} | {offsets} |")
    label = dict((key, change) for key, _, change, _ in CAR_ABLATION)[lost]
    iterations = arm(result, 'car_ablation_x4_car_plain.yml')['iterations']
    measured = (f"from the control to CAR one change at a time, {iterations:,} iterations each, validation split: the "
                f"gain over bicubic↓ + SR changes by {signed(drops[lost])} dB at "
                f"`{lost}` ({label})")
    status = (f"not shown: the step that loses the gain is `{lost}`: {CAR_ABLATION_MECHANISM[lost]}")
    return (row('Where CAR\'s joint gain comes from: the paper credits the content-adaptive kernels and offsets '
                '(Table 2, its ablations)', measured, 'car_ablation_x4', status) + '\n'
            f'Mean Y-PSNR (dB, crop border {border(base)}) on the validation split (camera, coins, brick: grayscale '
            'photos); each row changes one thing of the row it names; test-split gains (photos improved) beside. '
            'Kernel spread and offsets on the validation split:\n\n'
            '| row | change | from | validation | gain over bicubic↓ + SR | change of the gain | test gain | '
            'kernel spread | offsets (HR px) |\n|---|---|---|---|---|---|---|---|---|\n' + '\n'.join(rows) + '\n\n'
            + commit_line(result))


def render_car_bicubic(result, results):
    base = arm(result, 'car_bicubic_x4_baseline_test.yml')
    arms_ = (('bicubic↓ + bicubic↑', base), ("CAR, the paper's clamped head (box start)",
                                             arm(result, 'car_bicubic_x4_clamped_test.yml')),
             ('CAR, signed kernels (bicubic start; beyond the paper)', arm(result, 'car_bicubic_x4_signed_test.yml')))
    train = arm(result, 'car_bicubic_x4_clamped.yml')
    clamped = car_summary(arms_[1][1], base, 'test')
    signed_kernels = car_summary(arms_[2][1], base, 'test')
    measured = (f"CAR 8/16/32/1 under a fixed bicubic upscaler ×4, {train['iterations']:,} iterations of "
                f"{train['batch']} crops of {train['crop']}×{train['crop']}, test split ({clamped['count']} photos): "
                f"clamped {signed(clamped['gain'])} dB over bicubic↓ + bicubic↑ ({clamped['improved']}/"
                f"{clamped['count']} improved), signed {signed(signed_kernels['gain'])} dB "
                f"({signed_kernels['improved']}/{signed_kernels['count']})")
    if clamped['improved'] == clamped['count']:
        status = (f"partly: the paper's clamped CAR gains on every test photo ({signed(clamped['gain'])} dB); the "
                  "paper's +0.58 dB needs its full network and DIV2K, not run here")
    else:
        status = (f"not shown: the paper's clamped CAR gains {signed(clamped['gain'])} dB, "
                  f"{clamped['improved']}/{clamped['count']} test photos improved; the signed head "
                  f"{signed(signed_kernels['gain'])} dB")
    rows = []
    for label, found in arms_:
        lines = [label]
        for split in ('validation', 'test'):
            summary = car_summary(found, base, split)
            lines.append(f"{summary['psnr']:.2f}" + ('' if found is base else f" ({signed(summary['gain'])})"))
        spread, offsets = car_maps_text(car_summary(found, base, 'test'))
        rows.append('| ' + ' | '.join(lines + [spread, offsets]) + ' |')
    return (row(REPRODUCTIONS['car_bicubic_x4'].claim, measured, 'car_bicubic_x4', status) + '\n'
            f'Mean Y-PSNR (dB, crop border {border(base)}; gain over bicubic↓ + bicubic↑) of the reconstruction of '
            'the stored 8-bit LR; kernel spread and offsets on the test split:\n\n'
            '| downscaler | validation | test | kernel spread | offsets (HR px) |\n|---|---|---|---|---|\n'
            + '\n'.join(rows) + '\n\n' + commit_line(result))


CAR_PLATEAU_LABELS = {'car_plateau_x4_bicubic.yml': '(a) bicubic↓ + SR', 'car_plateau_x4_car.yml': '(b) CAR + SR',
                      'car_plateau_x4_control_rgb.yml': 'control (rgb)'}


def plateau_arms(result):
    return [(CAR_PLATEAU_LABELS.get(found['option_file'].split('/')[-1], found['name']), found)
            for found in arms(result, 'plateau')]


def render_car_plateau(result, results):
    found = plateau_arms(result)
    tolerance, cap = found[0][1]['tolerance'], found[0][1]['cap']
    rows, ends = [], []
    for label, record in found:
        previous = None
        for point in record['curve']:
            gain = '—' if previous is None else signed(point['mean_psnr'] - previous, 3)
            rows.append(f"| {label} | {point['iterations']:,} | {point['mean_psnr']:.3f} | {gain} |")
            previous = point['mean_psnr']
        last = record['curve'][-1]
        ends.append(f"{label}: {last['mean_psnr']:.2f} dB at {last['iterations']:,} iterations, "
                    + ('plateau reached' if record['reached'] else f'not reached by the cap ({cap:,})'))
    common = {}
    for label, record in found:
        for point in record['curve']:
            common.setdefault(point['iterations'], {})[label] = point['mean_psnr']
    bicubic_label = CAR_PLATEAU_LABELS['car_plateau_x4_bicubic.yml']
    car_label = CAR_PLATEAU_LABELS['car_plateau_x4_car.yml']
    gaps = [f"{iterations:,}: {signed(values[car_label] - values[bicubic_label])}" for iterations, values in
            sorted(common.items()) if car_label in values and bicubic_label in values]
    measured = ('each arm of car_joint_x4 (×4) trained on, its budget doubled from '
                f"{found[0][1]['curve'][0]['iterations']:,} iterations until the validation Y-PSNR gains less than "
                f"{tolerance} dB over a doubling or {cap:,} iterations: " + '; '.join(ends))
    unreached = [label for label, record in found if not record['reached']]
    car_gap = [values[car_label] - values[bicubic_label] for _, values in sorted(common.items())
               if car_label in values and bicubic_label in values]
    status = (('partly' if car_gap and car_gap[-1] > 0 else 'not shown') +
              (f': at the last common budget CAR + SR is {signed(car_gap[-1])} dB from bicubic↓ + SR on the '
               'validation split' if car_gap else '') +
              ('' if not unreached else '; no arm reached its plateau by the cap' if len(unreached) == len(found)
               else f"; {', '.join(unreached)} did not reach its plateau by the cap"))
    return (row('CAR + SR above EDSR on bicubic↓ after full training (Table 2; 37,500 iterations)', measured,
                'car_plateau_x4', status) + '\n'
            f'Mean Y-PSNR (dB, crop border {border_of_plateau(found)}) on the validation split at each budget; the '
            'learning rates halve at every doubling (the same run, resumed). (b) − (a) at each budget: '
            + ', '.join(gaps) + '.\n\n![plateau curves](figures/car_plateau_x4.png)\n\n'
            '| arm | iterations | validation Y-PSNR | gain over the previous budget |\n|---|---|---|---|\n'
            + '\n'.join(rows) + '\n\n' + commit_line(result))


def border_of_plateau(found):
    return found[0][1]['metrics']['psnr']['crop_border']


def figure_car_plateau(result, path):
    """The plateau curves: mean validation Y-PSNR against iterations (log scale), one line per arm."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, record in plateau_arms(result):
        curve = record['curve']
        axes.plot([p['iterations'] for p in curve], [p['mean_psnr'] for p in curve], marker='o', label=label)
    axes.set_xscale('log', base=2)
    axes.set_xlabel('iterations')
    axes.set_ylabel('validation Y-PSNR (dB)')
    axes.set_title('CAR x4: each arm to its plateau (scripts/reproduce.py car_plateau_x4)', fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    os.makedirs(osp.dirname(path), exist_ok=True)
    figure.savefig(path, metadata={'Software': None})
    plt.close(figure)


REPRODUCTIONS = {reproduction.name: reproduction for reproduction in (
    Reproduction(
        'lmar', 'LMAR', 'enhancer pre-training, LMAR resampler (and at the bottleneck), scored on validation and test',
        ('lmar_enhancer.yml', 'lmar.yml', 'lmar_bottleneck.yml', 'lmar_test.yml', 'lmar_bottleneck_test.yml'),
        'LMAR in front of a frozen UHD enhancer gains over the plain downscale → enhance → upscale pipeline '
        'across working sizes, resizers and enhancers (CNN-I, CNN-H, Restormer): up to +1.2 dB PSNR at ×1.8 '
        'resampling on UHD-LOL4K (abstract; Tables 1-3)', render_lmar),
    Reproduction(
        'irn_x4', 'IRN', 'a small IRN x4 trained for minutes, scored with bicubic down / up on validation and test',
        ('irn_x4.yml', 'irn_x4_test.yml', 'bicubic_x4_test.yml'),
        'IRN ×4 (block_num [8, 8]): 36.19 dB / 0.9451 on Set5 (Y, Table 1), far above bicubic↓↑; DIV2K, 500k '
        'iterations', render_rescaler('IRN', 'irn_x4.yml', 'irn_x4_test.yml', 'its full network, DIV2K and 500k '
                                      'iterations')),
    Reproduction(
        'hcflow_x4', 'HCFlow', 'a small HCFlow x4 trained for minutes, scored with bicubic down / up',
        ('hcflow_x4.yml', 'hcflow_x4_test.yml', 'bicubic_x4_test.yml'),
        'HCFlow ×4 rescaling: 36.29 dB on Set5 (Y; as listed in HCD\'s Table 1); DF2K, 500k iterations',
        render_rescaler('HCFlow', 'hcflow_x4.yml', 'hcflow_x4_test.yml', 'its full network, DF2K and 500k '
                        'iterations')),
    Reproduction(
        'hcd_irn_x4', 'HCD', 'HCD (fixed N, its N curve, the stopping rule) on the small IRN x4 of irn_x4',
        ('hcd_irn_x4.yml', 'hcd_irn_x4_stop.yml'),
        'HCD on the authors\' IRN ×4: +0.44 dB on Set5 (Y, Table 1); N_x = N_y = 15', render_hcd('IRN', 'irn_x4'),
        needs=('irn_x4', )),
    Reproduction(
        'hcd_hcflow_x4', 'HCD', 'HCD (fixed N, its N curve, the stopping rule) on the small HCFlow x4 of hcflow_x4',
        ('hcd_hcflow_x4.yml', 'hcd_hcflow_x4_stop.yml'),
        'HCD on the authors\' HCFlow ×4: 36.29 → 36.99 dB on Set5 (+0.70 dB, Y, Table 1); N_x = N_y = 15',
        render_hcd('HCFlow', 'hcflow_x4'), needs=('hcflow_x4', )),
    Reproduction(
        'car_joint_x4', 'CAR', 'CAR + EDSR x4 trained jointly, bicubic + EDSR, CAR‡ and two control downscalers, '
        'equal iterations from one EDSR start, scored on validation and test',
        tuple(f'car_joint_x4_{arm}{kind}.yml' for arm in ('bicubic', 'car', 'car_fixed', 'control_rgb', 'control_luma')
              for kind in ('', '_test')),
        'CAR trained jointly with EDSR ×4: 33.88 dB on Set5 against 32.46 dB for EDSR on bicubic↓ (+1.42 dB, Y, '
        'Table 2); DIV2K, 37,500 iterations', render_car_joint(4)),
    Reproduction(
        'car_joint_x2', 'CAR', 'the same at x2', tuple(f'car_joint_x2_{arm}{kind}.yml' for arm in (
            'bicubic', 'car', 'car_fixed', 'control_rgb', 'control_luma') for kind in ('', '_test')),
        'CAR trained jointly with EDSR ×2: 38.26 dB / 0.9599 on DIV2K validation (Y, Table 2), above EDSR on '
        'bicubic↓; DIV2K', render_car_joint(2)),
    Reproduction(
        'car_ablation_x4', 'CAR', 'from the control downscaler to CAR x4 one change at a time (with the networks of '
        'car_joint_x4), scored on validation and test',
        ('car_joint_x4_bicubic_test.yml', 'car_joint_x4_control_rgb_test.yml', 'car_joint_x4_control_luma_test.yml',
         'car_joint_x4_car_test.yml') + tuple(f'car_ablation_x4_{arm}{kind}.yml' for arm in (
             'control_chroma', 'car_plain', 'car_ste', 'car_clamped') for kind in ('', '_test')),
        'the paper credits the content-adaptive kernels and offsets', render_car_ablation, needs=('car_joint_x4', )),
    Reproduction(
        'car_plateau_x4', 'CAR', 'bicubic + EDSR, CAR + EDSR and the rgb control x4, each resumed with its budget '
        'doubled until the validation Y-PSNR gains less than 0.02 dB (at most 12,000 iterations)',
        tuple(f'car_plateau_x4_{arm}{kind}.yml' for arm in ('bicubic', 'car', 'control_rgb')
              for kind in ('', '_test')),
        'CAR + SR above EDSR on bicubic↓ after full training (Table 2)', render_car_plateau,
        plateau=Plateau(tolerance=0.02, doublings=3), figure=figure_car_plateau),
    Reproduction(
        'car_bicubic_x4', 'CAR', 'CAR x4 under a fixed bicubic upscaler, clamped and signed, with bicubic down / up',
        ('car_bicubic_x4_clamped.yml', 'car_bicubic_x4_clamped_test.yml', 'car_bicubic_x4_signed.yml',
         'car_bicubic_x4_signed_test.yml', 'car_bicubic_x4_baseline_test.yml'),
        'CAR under a fixed bicubic upscaler ×4: +0.58 dB over bicubic↓ on Set5 (Y, Table 1); DIV2K',
        render_car_bicubic),
)}


# ------------------------------------------------------------------------------------------ command line
def list_reproductions():
    lines = []
    for reproduction in REPRODUCTIONS.values():
        needs = f" (loads the networks of {', '.join(reproduction.needs)})" if reproduction.needs else ''
        lines.append(f'{reproduction.name} ({reproduction.method}): {reproduction.what}{needs}')
        for name in reproduction.arms:
            opt = load_options(option_path(name))
            kind = f"train, {opt['train']['total_iter']} iterations" if is_training(opt) else 'test'
            lines.append(f'    {relative(option_path(name))} ({opt["model_type"]}, {kind})')
    return '\n'.join(lines)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('names', nargs='*', metavar='NAME', help='reproductions to run, in order (see --list)')
    parser.add_argument('--list', action='store_true', help='name every reproduction and its option files')
    parser.add_argument('--quick', action='store_true',
                        help=f'every arm {QUICK_ITERATIONS} iterations on {QUICK_CROP}x{QUICK_CROP} crops, evaluated '
                        f'on photos resized to {QUICK_IMAGE[0]}x{QUICK_IMAGE[1]} (results/quick/NAME.json)')
    parser.add_argument('--heldout', metavar='DIR', help='also evaluate every test arm on the images of DIR')
    parser.add_argument('--output-root', metavar='DIR', default=REPO,
                        help='where experiments/, results/ and the logs go (default: this repository)')
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads of every arm (default 1: exact '
                        'reruns of the seeded runs)')
    parser.add_argument('--render', action='store_true', help='rewrite the tables of docs/results.md from '
                        'results/*.json')
    parser.add_argument('--check', action='store_true', help='with --render: do not write, exit 1 when the page '
                        'differs from its rendering')
    parser.add_argument('--evaluate-arm', metavar='FILE', help=argparse.SUPPRESS)
    parser.add_argument('--arm-json', metavar='FILE', help=argparse.SUPPRESS)
    parser.add_argument('--debug', action='store_true', help='show the traceback of input errors too')
    return parser, parser.parse_args(argv)


def main(argv=None):
    parser, args = parse_arguments(sys.argv[1:] if argv is None else argv)
    if args.evaluate_arm:
        return evaluate_arm(args.evaluate_arm, args.arm_json)
    if args.list:
        print(list_reproductions())
        return 0
    if args.render:
        with open(PAGE) as handle:
            page = handle.read()
        results = load_results(osp.join(REPO, 'results'))
        rendered = render_page(page, results)
        figures = {name: figure_path(name) for name in results if REPRODUCTIONS[name].figure}
        if args.check:
            missing = [relative(path) for path in figures.values() if not osp.isfile(path)]
            if rendered != page or missing:
                print('docs/results.md differs from the rendering of results/*.json' + (
                    f' ({", ".join(missing)} missing)' if missing else '') + '; run python scripts/reproduce.py '
                    '--render', file=sys.stderr)
                return 1
            return 0
        with open(PAGE, 'w') as handle:
            handle.write(rendered)
        for name, path in figures.items():
            REPRODUCTIONS[name].figure(results[name], path)
        print(f'rendered {relative(PAGE)}' + ''.join(f', {relative(path)}' for path in figures.values()))
        return 0
    if not args.names:
        parser.error('name at least one reproduction (--list names them), or give --list or --render')
    unknown = [name for name in args.names if name not in REPRODUCTIONS]
    if unknown:
        raise ReproductionError(f'unknown reproduction {unknown[0]!r}; choose from {", ".join(REPRODUCTIONS)}')
    if args.threads < 1:
        raise ReproductionError(f'--threads {args.threads}: give 1 or more')
    root = osp.abspath(args.output_root)
    for name in args.names:  # every arm's options checked before the first one runs
        preflight(plan(REPRODUCTIONS[name], args, root)[1], root)
    os.makedirs(root, exist_ok=True)
    for name in args.names:
        run_reproduction(REPRODUCTIONS[name], args, root)
    return 0


if __name__ == '__main__':
    from basicsr_lmar.cli.errors import run_main

    sys.exit(run_main(main))
