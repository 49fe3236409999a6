"""Timing and peak-memory helpers shared by the GPU benchmarks (CUDA events on a GPU, wall clock on CPU)."""
import statistics
import time

import torch


def median_seconds(fn, repeat, device, warmup=1):
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == 'cuda':
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        else:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mib(fn, device):
    """``torch.cuda.max_memory_allocated`` above what was allocated before one call of ``fn`` (MiB); None on
    CPU (the CPU benchmarks measure peak RSS in fresh processes instead)."""
    if device.type != 'cuda':
        fn()
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def mib_text(value):
    return '-' if value is None else f'{value:.0f}'
