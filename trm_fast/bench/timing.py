"""Wall time of a unit of work: CUDA events on a GPU (synchronised before each timer), a
monotonic clock on a CPU."""

import statistics
import time

import torch


def time_unit(fn, device: torch.device, reps: int):
    """Run `fn` `reps` times; return the list of milliseconds per call."""
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def summary(times):
    return dict(ms=statistics.median(times), ms_min=min(times), ms_max=max(times))


def iqr(times):
    """Interquartile range: the spread of the middle half of the repeats, robust to one slow outlier."""
    if len(times) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q3 - q1
