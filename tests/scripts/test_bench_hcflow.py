"""scripts/benchmarks/bench_hcflow.py --quick: trains, saves, reloads and runs HCD at both heats (seconds)."""

import torch

from tests.scripts.tool_runs import load_benchmark

def load_script():
    return load_benchmark('bench_hcflow')


def test_quick_run_saves_reusable_weights(tmp_path, capsys):
    bench = load_script()
    path = tmp_path / 'mini.pth'
    results = bench.main(['--quick', '--save-weights', str(path)])
    assert set(results) == {0.0, 1.0} and all(len(gains) == 2 for gains in results.values())
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint['iterations'] == 3 and checkpoint['network_g']['type'] == 'HCFlowNet'
    again = bench.main(['--quick', '--load-weights', str(path), '--heats', '0', '--split', 'validation'])
    assert list(again) == [0.0] and len(again[0.0]) == 2
    assert results[0.0] != again[0.0]  # validation crops, not the test crops
    assert 'validation split' in capsys.readouterr().out
