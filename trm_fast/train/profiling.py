"""`trm-fast train ... --profile-steps N`: torch.profiler over N training steps of the real run (its
sampler, optimizers, EMA and logging included, which the bench's step lacks), after the first
WARMUP_STEPS steps, which compile. Writes into RUN_DIR/profile/:

    trace.json.gz   the timeline (chrome://tracing, Perfetto): where the GPU waits on the host
    steps.txt       the ops by device time, then by host time, and the summary line

The summary line is wall ms per step, device (kernel) ms per step and their ratio: near 100% the GPU is
the bottleneck, well below it the GPU idles between kernels while the host prepares the next ones.
"""

import os
import time
import warnings

import torch

from .logger import WARMUP_STEPS


def _kernel_us(averages) -> float:
    """Microseconds of device kernels: the events that run on the device (each kernel is also credited to
    the op that launched it, and annotations span kernels, so summing every row would count them twice)."""
    from torch.autograd import DeviceType

    return sum(e.self_device_time_total for e in averages
               if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False))


class StepProfiler:
    """Call `step_done()` after each training step is queued; profiles `count` of them, then writes."""

    def __init__(self, run_dir: str, count: int, device: torch.device, log=print):
        if count < 0:
            raise ValueError(f"--profile-steps must be >= 0, got {count}")
        self.out_dir, self.count, self.device, self.log = os.path.join(run_dir, "profile"), count, device, log
        self.seen, self.prof, self.start = 0, None, None

    def step_done(self):
        """After each step: a profiler that fails warns and stops profiling; the run goes on."""
        if self.count == 0:
            return
        try:
            self._step_done()
        except Exception as err:  # noqa: BLE001 - the profile is a report, not the run
            warnings.warn(f"--profile-steps: the profiler failed ({type(err).__name__}: {err}); training goes on "
                          "without it", stacklevel=2)
            self.count, self.prof = 0, None

    def _step_done(self):
        self.seen += 1
        if self.seen == WARMUP_STEPS:
            self._sync()
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()
            self.start = time.perf_counter()
        elif self.prof is not None and self.seen == WARMUP_STEPS + self.count:
            self.finish()

    def finish(self):
        """Stop and write (at the window's end, or earlier when the run ends first)."""
        if self.prof is None:
            return
        self._sync()
        wall_ms = (time.perf_counter() - self.start) * 1e3
        steps = self.seen - WARMUP_STEPS
        prof, self.prof = self.prof, None
        prof.__exit__(None, None, None)
        os.makedirs(self.out_dir, exist_ok=True)
        prof.export_chrome_trace(os.path.join(self.out_dir, "trace.json.gz"))
        averages = prof.key_averages()
        device_ms = _kernel_us(averages) / 1e3 if self.device.type == "cuda" else 0.0
        summary = f"{steps} steps profiled: {wall_ms / max(steps, 1):.2f} ms wall per step (the profiler's own cost included)"
        if self.device.type == "cuda":
            summary += f", {device_ms / max(steps, 1):.2f} ms of device kernels per step ({device_ms / wall_ms:.0%} busy)"
        sort_device = "self_device_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        with open(os.path.join(self.out_dir, "steps.txt"), "w") as f:
            f.write(summary + "\n\n")
            f.write(averages.table(sort_by=sort_device, row_limit=40) + "\n\n")
            f.write(averages.table(sort_by="self_cpu_time_total", row_limit=40) + "\n")
        self.log(f"profile: {summary}; {self.out_dir}/steps.txt and trace.json.gz")

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
