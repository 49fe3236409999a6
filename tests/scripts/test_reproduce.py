"""scripts/reproduce.py: every option file of options/repro/ belongs to a reproduction and passes the preflight,
``--quick`` runs each reproduction through the plugin's entries into a temporary folder, and docs/results.md is
the rendering of the recorded results/*.json."""
import argparse
import copy
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from basicsr_lmar.data.skimage_photos import load_photo, photo_names
from tests.conftest import REPO_ROOT
from tests.scripts.tool_runs import load_script, refused, run_script

OPTION_FILES = sorted(path.name for path in (REPO_ROOT / 'options' / 'repro').glob('*.yml'))


@pytest.fixture(scope='module')
def reproduce():
    return load_script('reproduce')


def no_flags(**kwargs):
    return argparse.Namespace(**{'quick': False, 'heldout': None, **kwargs})


def test_every_option_file_is_an_arm_and_every_arm_a_file(reproduce):
    arms = {arm for reproduction in reproduce.REPRODUCTIONS.values() for arm in reproduction.arms}
    assert arms == set(OPTION_FILES)
    listing = reproduce.list_reproductions()
    for name, reproduction in reproduce.REPRODUCTIONS.items():
        assert f'{name} ({reproduction.method}): ' in listing
        for needed in reproduction.needs:
            assert list(reproduce.REPRODUCTIONS).index(needed) < list(reproduce.REPRODUCTIONS).index(name)
    for arm in OPTION_FILES:
        assert f'options/repro/{arm} (' in listing
    assert 'iterations' in listing


@pytest.mark.parametrize('name', ['lmar', 'irn_x4', 'hcflow_x4', 'hcd_irn_x4', 'hcd_hcflow_x4', 'car_joint_x4',
                                  'car_joint_x2', 'car_ablation_x4', 'car_plateau_x4', 'car_bicubic_x4'])
def test_every_arm_passes_the_preflight(reproduce, name, tmp_path):
    """The shipped files as they run (the weights an earlier arm writes stand in), and as --quick runs them."""
    for flags in (no_flags(), no_flags(quick=True)):
        every, steps = reproduce.plan(reproduce.REPRODUCTIONS[name], flags, str(tmp_path))
        assert [step.arm for step in steps if step.reproduction == name] == list(reproduce.REPRODUCTIONS[name].arms)
        reproduce.preflight(steps, str(tmp_path))
    assert not any(tmp_path.iterdir())  # the preflight builds nothing and creates no folder


def test_training_arms_have_iteration_budgets_and_test_arms_the_y_metrics(reproduce):
    for arm in OPTION_FILES:
        opt = reproduce.load_options(reproduce.option_path(arm))
        if reproduce.is_training(opt):
            assert isinstance(opt['train']['total_iter'], int) and opt['train']['total_iter'] >= 100, arm
            assert opt['logger']['save_checkpoint_freq'] == opt['train']['total_iter'], arm
            assert all(key.split('_')[0] == 'train' for key in opt['datasets']), arm  # scored by the test arms
            continue
        border = 0 if opt['scale'] == 1 else opt['scale']
        assert opt['val']['metrics'] == {
            name: {'type': f'calculate_{name}', 'crop_border': border, 'test_y_channel': True}
            for name in ('psnr', 'ssim')}, arm
        splits = {dataset.get('split') for dataset in opt['datasets'].values()}
        assert splits <= {'validation', 'test'} and splits, arm


def test_quick_options(reproduce):
    opt = reproduce.load_options(reproduce.option_path('irn_x4.yml'))
    quick = reproduce.quick_options(opt)
    assert quick['name'] == 'repro_irn_x4_quick' and quick['train']['total_iter'] == reproduce.QUICK_ITERATIONS
    assert quick['datasets']['train']['gt_size'] == reproduce.QUICK_CROP
    assert opt['train']['total_iter'] == 4000  # the shipped options are left as they are
    hcd = reproduce.quick_options(reproduce.load_options(reproduce.option_path('hcd_irn_x4.yml')))
    assert hcd['hcd']['steps_hr'] == hcd['hcd']['steps_lr'] == reproduce.QUICK_HCD_STEPS
    assert hcd['datasets']['test_1']['resize_to'] == reproduce.QUICK_IMAGE
    every, _ = reproduce.plan(reproduce.REPRODUCTIONS['hcd_irn_x4'], no_flags(quick=True), '/nonexistent')
    test = next(step for step in every if step.arm == 'hcd_irn_x4.yml')
    assert test.opt['path']['pretrain_network_g'] == 'experiments/repro_irn_x4_quick/models/net_g_latest.pth'


def heldout_folder(tmp_path):
    folder = tmp_path / 'heldout'
    folder.mkdir()
    for name, photo in (('cat', 'chelsea'), ('cup', 'coffee')):
        image = load_photo(photo)[100:130, 150:190]  # 30x40: cropped to 28x40 for x4
        cv2.imwrite(str(folder / f'{name}.png'), (image[..., ::-1] * 255).round().astype(np.uint8))
    return folder


def run_quick(tmp_path, *names, extra=()):
    root = tmp_path / 'out'
    process = run_script('reproduce', *names, '--quick', '--output-root', root, *extra)
    assert process.returncode == 0, process.stdout + process.stderr
    results = {}
    for name in names:
        with open(root / 'results' / 'quick' / f'{name}.json') as handle:
            results[name] = json.load(handle)
    return root, results


def check_record(reproduce, result, root):
    assert result['quick'] is True and result['torch'] and result['threads'] == 1 and result['commit']
    for arm in result['arms']:
        assert arm['wall_seconds'] > 0 and arm['cpu_seconds'] > 0
        if arm['kind'] == 'train':
            assert arm['iterations'] == reproduce.QUICK_ITERATIONS
            assert (root / arm['weights']['path']).is_file()
            continue
        for entry in arm['weights'].values():
            assert entry['iterations'] == reproduce.QUICK_ITERATIONS and (root / entry['path']).is_file()
        for dataset in arm['datasets']:
            if dataset['split'] in ('validation', 'test'):
                assert [image['name'] for image in dataset['images']] == list(photo_names(dataset['split']))
            for image in dataset['images']:
                values = [value for key, value in image.items() if key != 'name']
                assert values and all(np.isfinite(values))


def render_quick(reproduce, results):
    """The page block of a --quick record (the renderer refuses quick records: a copy marked full)."""
    full = {name: dict(copy.deepcopy(result), quick=False) for name, result in results.items()}
    return {name: reproduce.REPRODUCTIONS[name].render(result, full) for name, result in full.items()}


@pytest.mark.slow
def test_quick_rescalers_with_a_heldout_folder(reproduce, tmp_path):
    root, results = run_quick(tmp_path, 'irn_x4', 'hcd_irn_x4', extra=('--heldout', heldout_folder(tmp_path)))
    for result in results.values():
        check_record(reproduce, result, root)
    irn = results['irn_x4']
    assert [arm['option_file'] for arm in irn['arms']] == [f'options/repro/{arm}' for arm in
                                                          reproduce.REPRODUCTIONS['irn_x4'].arms]
    test = irn['arms'][1]
    assert [d['split'] for d in test['datasets']] == ['validation', 'test', 'heldout']
    assert [image['name'] for image in test['datasets'][2]['images']] == ['cat', 'cup']
    assert test['metrics']['psnr'] == {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True}
    assert test['parameters']['net_g'] == 191496  # InvRescaleNet x4, block_num [1, 1], growth 16
    # HCD loaded the weights that irn_x4 recorded (no training arm of its own), and improves on its base
    hcd = results['hcd_irn_x4']
    assert [arm['kind'] for arm in hcd['arms']] == ['test', 'test']
    assert hcd['arms'][0]['weights']['network_g']['sha256'] == irn['arms'][0]['weights']['sha256']
    base = {image['name']: image['psnr'] for image in test['datasets'][1]['images']}
    for image in hcd['arms'][0]['datasets'][0]['images']:
        assert image['psnr_base'] == pytest.approx(base[image['name']], abs=1e-9)  # the same reconstruction
        assert set(image) >= {'psnr_hcd1', 'psnr_gain_hcd2', 'ssim_gain_hcd2', 'seconds_hcd2'}
    blocks = render_quick(reproduce, results)
    assert '| paper | measured here | command | status |' in blocks['irn_x4']
    assert '`python scripts/reproduce.py hcd_irn_x4`' in blocks['hcd_irn_x4']
    # the logs and the option files as run stay under the output root
    assert (root / 'experiments' / 'reproduce' / 'irn_x4_quick' / 'repro_irn_x4_quick.yml').is_file()


@pytest.mark.slow
def test_quick_hcd_trains_the_network_it_needs(reproduce, tmp_path):
    root, results = run_quick(tmp_path, 'hcd_hcflow_x4')
    result = results['hcd_hcflow_x4']
    check_record(reproduce, result, root)
    assert [(arm['kind'], arm.get('for')) for arm in result['arms']] == [('train', 'hcflow_x4'), ('test', None),
                                                                        ('test', None)]


@pytest.mark.slow
def test_quick_hcflow(reproduce, tmp_path):
    root, results = run_quick(tmp_path, 'hcflow_x4')
    check_record(reproduce, results['hcflow_x4'], root)
    assert results['hcflow_x4']['arms'][1]['parameters']['net_g'] == 363810
    assert 'small HCFlow ×4' in render_quick(reproduce, results)['hcflow_x4']


@pytest.mark.slow
def test_quick_lmar(reproduce, tmp_path):
    root, results = run_quick(tmp_path, 'lmar')
    result = results['lmar']
    check_record(reproduce, result, root)
    test = next(arm for arm in result['arms'] if arm['option_file'].endswith('/lmar_test.yml'))
    image = test['datasets'][1]['images'][0]
    # 7 working sizes x 5 resizers x with/without LMAR x 2 metrics
    assert len(image) - 1 == 7 * 5 * 2 * 2 and 'psnr_48x64_bicubic_lmar' in image
    block = render_quick(reproduce, results)['lmar']
    assert '| 48x64 |' in block and 'validation split' in block


def car_arm(result, option):
    return next(arm for arm in result['arms'] if arm['option_file'] == f'options/repro/{option}')


@pytest.mark.slow
def test_quick_car_joint_and_ablation_with_a_heldout_folder(reproduce, tmp_path):
    root, results = run_quick(tmp_path, 'car_joint_x4', 'car_ablation_x4',
                              extra=('--heldout', heldout_folder(tmp_path)))
    for result in results.values():
        check_record(reproduce, result, root)
    joint, ablation = results['car_joint_x4'], results['car_ablation_x4']
    assert [arm['option_file'] for arm in joint['arms']] == [f'options/repro/{arm}' for arm in
                                                            reproduce.REPRODUCTIONS['car_joint_x4'].arms]
    for key in ('bicubic', 'car', 'car_fixed', 'control_rgb', 'control_luma'):
        test = car_arm(joint, f'car_joint_x4_{key}_test.yml')
        assert [d['split'] for d in test['datasets']] == ['validation', 'test', 'heldout']
        assert [image['name'] for image in test['datasets'][2]['images']] == ['cat', 'cup']
        image = test['datasets'][1]['images'][0]
        # CAR's kernel spread and offset length come with every image of a CAR arm, none for the baselines
        assert ({'kernel_spread', 'offset_length'} <= set(image)) is key.startswith('car'), key
        assert set(test['weights']) == ({'network_sr'} if key == 'bicubic' else {'network_g', 'network_sr'})
    car, fixed = (car_arm(joint, f'car_joint_x4_{key}_test.yml') for key in ('car', 'car_fixed'))
    assert fixed['weights']['network_g']['sha256'] == car['weights']['network_g']['sha256']  # (c) kept (b)'s CAR
    assert fixed['weights']['network_sr']['sha256'] != car['weights']['network_sr']['sha256']
    # the ablation trained only its own arms and scored the joint reproduction's networks as that run recorded them
    assert [arm['name'] for arm in ablation['arms'] if arm['kind'] == 'train'] == [
        f'repro_car_ablation_x4_{key}_quick' for key in ('control_chroma', 'car_plain', 'car_ste', 'car_clamped')]
    recorded = {arm['option_file']: arm for arm in joint['arms']}
    for option in ('car_joint_x4_car_test.yml', 'car_joint_x4_bicubic_test.yml'):
        assert car_arm(ablation, option)['weights'] == recorded[f'options/repro/{option}']['weights']
    blocks = render_quick(reproduce, results)
    assert '| (b) CAR + SR |' in blocks['car_joint_x4'] and '| heldout | cat |' in blocks['car_joint_x4']
    assert 'the step that loses the gain is `' in blocks['car_ablation_x4']
    assert '| car_clamped | the paper\'s clamped head from the box start | car |' in blocks['car_ablation_x4']


@pytest.mark.slow
def test_quick_car_x2_and_under_the_bicubic_upscaler(reproduce, tmp_path):
    root, results = run_quick(tmp_path, 'car_joint_x2', 'car_bicubic_x4')
    for result in results.values():
        check_record(reproduce, result, root)
    test = car_arm(results['car_joint_x2'], 'car_joint_x2_car_test.yml')
    assert test['metrics']['psnr'] == {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}
    baseline = car_arm(results['car_bicubic_x4'], 'car_bicubic_x4_baseline_test.yml')
    assert baseline['weights'] == {} and baseline['parameters'] == {'net_g': 0}  # bicubic down, bicubic up
    blocks = render_quick(reproduce, results)
    assert '×2' in blocks['car_joint_x2'] and 'bicubic↓ + bicubic↑' in blocks['car_bicubic_x4']


def test_plateau_curve_doubles_the_budget_until_a_doubling_gains_less_than_the_tolerance(reproduce):
    def segments(means):
        calls = []

        def run_segment(budget, previous):
            calls.append((budget, previous))
            return {'iterations': budget, 'mean_psnr': means[len(calls) - 1]}

        return calls, run_segment

    calls, run_segment = segments([20.0, 20.5, 20.51, 21.0])
    curve, reached = reproduce.plateau_curve(1500, 12000, 0.02, run_segment)
    assert reached and calls == [(1500, None), (3000, 1500), (6000, 3000)]  # +0.01 dB at 6,000: the plateau
    calls, run_segment = segments([20.0, 20.5, 21.0, 21.5, 22.0])
    curve, reached = reproduce.plateau_curve(1500, 12000, 0.02, run_segment)
    assert not reached and [point['iterations'] for point in curve] == [1500, 3000, 6000, 12000]  # the cap
    calls, run_segment = segments([20.0, 19.9])
    assert reproduce.plateau_curve(2, 8, 0.02, run_segment)[1]  # a loss is no gain either
    assert not reproduce.plateau_reached([20.0], 0.02) and reproduce.plateau_reached([20.0, 20.019], 0.02)


@pytest.mark.slow
def test_quick_plateau_resumes_each_doubling_as_the_run_trained_straight(reproduce, tmp_path):
    root, results = run_quick(tmp_path, 'car_plateau_x4')
    result = results['car_plateau_x4']
    assert [arm['option_file'] for arm in result['arms']] == [
        f'options/repro/car_plateau_x4_{key}.yml' for key in ('bicubic', 'car', 'control_rgb')]
    for record in result['arms']:
        assert record['kind'] == 'plateau' and record['cap'] == 2 * reproduce.QUICK_ITERATIONS
        curve = record['curve']
        assert [point['iterations'] for point in curve] == [2, 4] and record['iterations'] == 4
        assert record['reached'] == reproduce.plateau_reached([point['mean_psnr'] for point in curve], 0.02)
        for point in curve:
            assert [image['name'] for image in point['images']] == list(photo_names('validation'))
            assert point['mean_psnr'] == pytest.approx(np.mean([image['psnr'] for image in point['images']]))
    # the run resumed from its state at 2 iterations to 4 is the run trained to 4 from the start
    logs = root / 'experiments' / 'reproduce' / 'car_plateau_x4_quick'
    opt = reproduce.load_options(logs / 'repro_car_plateau_x4_car_quick_4.yml')
    assert opt['path']['resume_state'] == 'experiments/repro_car_plateau_x4_car_quick/training_states/2.state'
    opt.update(name='straight')
    opt['path']['resume_state'] = None
    straight = tmp_path / 'straight.yml'
    straight.write_text(yaml.safe_dump(opt))
    process = subprocess.run([sys.executable, '-c', reproduce.TRAIN_ENTRY, '-opt', str(straight)], cwd=root,
                             env=reproduce.child_environment(1), capture_output=True, text=True)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    for network in ('g', 'sr'):
        resumed, trained = (torch.load(root / 'experiments' / name / 'models' / f'net_{network}_latest.pth',
                                       weights_only=True)['params']
                            for name in ('repro_car_plateau_x4_car_quick', 'straight'))
        assert resumed.keys() == trained.keys() and all(torch.equal(resumed[k], trained[k]) for k in resumed)
    block = render_quick(reproduce, results)['car_plateau_x4']
    assert '| (b) CAR + SR | 4 |' in block and 'figures/car_plateau_x4.png' in block
    figure = tmp_path / 'plateau.png'
    reproduce.REPRODUCTIONS['car_plateau_x4'].figure(dict(result, quick=False), str(figure))
    assert figure.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_lmar_heldout_needs_pairs_and_nothing_runs(tmp_path, capsys, reproduce):
    message = refused(reproduce, ['lmar', '--heldout', str(heldout_folder(tmp_path)), '--output-root',
                                  str(tmp_path / 'out')], capsys)
    assert 'input' in message and 'gt' in message and '--heldout' in message
    assert not (tmp_path / 'out').exists()


def test_user_mistakes_are_named_before_anything_runs(tmp_path, capsys, reproduce):
    message = refused(reproduce, ['irn', '--output-root', str(tmp_path / 'out')], capsys)
    assert "'irn'" in message and 'irn_x4' in message
    message = refused(reproduce, ['irn_x4', '--heldout', str(tmp_path / 'missing'), '--output-root',
                                  str(tmp_path / 'out')], capsys)
    assert 'missing' in message
    assert not (tmp_path / 'out' / 'experiments').exists()


def test_results_page_is_the_rendering_of_the_recorded_results(reproduce):
    page = (REPO_ROOT / 'docs' / 'results.md').read_text()
    results = reproduce.load_results(REPO_ROOT / 'results')
    names = set(reproduce.REPRODUCTIONS)
    assert set(results) == names  # every reproduction is recorded
    for name in names:
        assert f'<!-- reproduce: {name} -->' in page  # and on the page
        assert results[name]['quick'] is False and not results[name]['uncommitted_changes']
    assert reproduce.render_page(page, results) == page
    process = subprocess.run([sys.executable, str(REPO_ROOT / 'scripts' / 'reproduce.py'), '--render', '--check'],
                             capture_output=True, text=True)
    assert process.returncode == 0, process.stderr


def test_rendering_refuses_records_it_cannot_trust(reproduce):
    page = (REPO_ROOT / 'docs' / 'results.md').read_text()
    results = reproduce.load_results(REPO_ROOT / 'results')
    quick = dict(results, irn_x4=dict(results['irn_x4'], quick=True))
    with pytest.raises(reproduce.ReproductionError, match='--quick'):
        reproduce.render_page(page, quick)
    with pytest.raises(reproduce.ReproductionError, match='results/hcflow_x4.json is missing'):
        reproduce.render_page(page, {k: v for k, v in results.items() if k != 'hcflow_x4'})
    other = copy.deepcopy(results)
    other['hcd_irn_x4']['arms'][0]['weights']['network_g']['sha256'] = '0' * 64
    with pytest.raises(reproduce.ReproductionError, match='used other'):
        reproduce.render_page(page, other)
    changed = copy.deepcopy(results)
    changed['irn_x4']['arms'][1]['datasets'][1]['images'][0]['psnr'] += 1.0
    assert reproduce.render_page(page, changed) != page  # the figures come from the records


def test_demo_runs_the_lmar_reproductions_arms(reproduce):
    demo = load_script('lmar_demo')
    arms = reproduce.REPRODUCTIONS['lmar'].arms
    for path in (demo.ENHANCER_OPT, demo.LMAR_OPT, demo.TEST_OPT):
        assert path.startswith(reproduce.OPTIONS) and path.split('/')[-1] in arms
    assert demo.ENHANCER_CKPT.endswith(reproduce.weights_path(reproduce.load_options(demo.ENHANCER_OPT)))
    assert demo.LMAR_CKPT.endswith(reproduce.weights_path(reproduce.load_options(demo.LMAR_OPT)))
