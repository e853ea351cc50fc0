"""The SM clock a bench row records while it is timed (trm_fast/bench/clocks.py), on a stand-in for nvidia-smi,
and the warning about a row timed under a slowdown."""

import sys
import time

import torch
from trm_fast.bench import clocks, report

# nvidia-smi's CSV lines, as `--format=csv,noheader,nounits` prints them: one at the power cap, one braked hard
FAKE_SMI = """
import sys, time
for line in ("1755, 1980, 0x0000000000000004", "not a sample", "1410, 1980, 0x0000000000000044",
             "1980, 1980, 0x0000000000000001"):
    print(line, flush=True)
    time.sleep(0.01)
time.sleep(60)
"""


def _sampled(command, wait_for: int):
    with clocks.ClockSampler(torch.device("cpu"), command=command) as sampled:
        deadline = time.monotonic() + 10
        while len(sampled.samples) < wait_for and time.monotonic() < deadline:
            time.sleep(0.01)
    return sampled


def test_a_row_records_the_clocks_and_the_reasons_nvidia_smi_gives():
    started = time.monotonic()
    fields = _sampled([sys.executable, "-c", FAKE_SMI], 3).fields()
    assert time.monotonic() - started < 8  # the sampler is stopped with the row, not left to run
    assert fields == dict(sm_clock_mhz=1755, sm_clock_min_mhz=1410, sm_clock_max_mhz=1980,
                          clock_events=["SW power cap", "HW thermal slowdown"])


def test_no_clock_fields_without_nvidia_smi():
    assert _sampled(None, 0).fields() == {}  # a CPU device: nothing is started
    assert _sampled(["/nonexistent/nvidia-smi"], 0).fields() == {}  # a command that cannot start
    assert _sampled([sys.executable, "-c", "print('garbage')"], 0).fields() == {}


def test_reason_bits_are_nvmls():
    assert clocks.reasons(0x4 | 0x8 | 0x80) == ["SW power cap", "HW slowdown", "HW power brake"]
    assert clocks.parse("1980, 1980, 0x0000000000000000") == (1980.0, 1980.0, 0)
    assert clocks.parse("[N/A], 1980, 0x0") is None and clocks.parse("1980, 1980") is None


def test_the_bench_warns_about_a_row_timed_under_a_slowdown():
    row = dict(config="sudoku_attn", mode="train", batch=768, backend="engine", sm_clock_mhz=1410.0,
               sm_clock_min_mhz=1395.0, sm_clock_max_mhz=1980.0, clock_events=["SW power cap", "HW slowdown"])
    capped = dict(row, backend="reference-compile", clock_events=["SW power cap"])  # every long GEMM reaches it
    unsampled = dict(row, backend="reference-eager", clock_events=None)
    [line] = report.clock_warnings([row, capped, unsampled])
    assert line == ("sudoku_attn train b768 engine: timed while the GPU named HW slowdown (SM clock 1410 MHz median, "
                    "1395 at least, of 1980): rerun on a cool, idle GPU")
