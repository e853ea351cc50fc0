"""The GPU's SM clock while a bench row is timed, and the reasons the GPU gives for holding it down.

A GPU that slows itself (a thermal or power brake, a hardware slowdown) makes a row read slow with a small spread,
which neither the row's IQR nor its floor shows: on 2026-12-08 an H100's `engine` train row took 118.6 ms with an
IQR of 1.1 ms where the same code had taken 94.9 ms, and the same step timed in rounds in that call spread from 94
to 119 ms (bench/NOTES.md, "The middle mode measured"). So a row timed on a GPU records the SM clock that
nvidia-smi reports twice a second while the row's repeats run, with the reasons it names, and the bench warns about
a row timed under a slowdown. The power cap is not one: long GEMMs reach it on Hopper cards in every run, the
floors' ceilings included. Where nvidia-smi is missing or fails, rows simply carry no clock fields.
"""

import shutil
import statistics
import subprocess
import threading
from typing import List, Optional

import torch

# NVML's clock event reasons (nvml.h, nvmlClocksEventReason*): the bits of nvidia-smi's clocks_event_reasons.active
REASONS = {0x1: "idle", 0x2: "applications clocks setting", 0x4: "SW power cap", 0x8: "HW slowdown",
           0x10: "sync boost", 0x20: "SW thermal slowdown", 0x40: "HW thermal slowdown", 0x80: "HW power brake",
           0x100: "display clock setting"}
SLOWDOWNS = ("HW slowdown", "SW thermal slowdown", "HW thermal slowdown", "HW power brake")
FIELDS = "clocks.sm,clocks.max.sm,clocks_event_reasons.active"
PERIOD_MS = 500


def reasons(mask: int) -> List[str]:
    """The names of the reasons set in an event-reason bit mask, in NVML's order."""
    return [name for bit, name in REASONS.items() if mask & bit]


def _gpu_id(device: torch.device) -> str:
    """nvidia-smi's -i for a torch device: its UUID, which CUDA_VISIBLE_DEVICES does not renumber."""
    props = torch.cuda.get_device_properties(device)
    uuid = getattr(props, "uuid", None)
    return f"GPU-{uuid}" if uuid is not None else str(device.index or 0)


def parse(line: str) -> Optional[tuple]:
    """(sm MHz, max sm MHz, reason mask) from one line of the query's CSV, or None for a line that is not one."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 3:
        return None
    try:
        return float(parts[0]), float(parts[1]), int(parts[2], 16)
    except ValueError:
        return None


class ClockSampler:
    """`with ClockSampler(device) as clocks: ...` samples the SM clock every PERIOD_MS while the block runs;
    `clocks.fields()` is what the row records. `command` replaces the nvidia-smi command line (tests)."""

    def __init__(self, device: torch.device, command: Optional[List[str]] = None):
        self.samples: List[tuple] = []
        self._proc = None
        self._reader = None
        if command is None and device.type == "cuda" and shutil.which("nvidia-smi"):
            command = ["nvidia-smi", f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits", "-i", _gpu_id(device),
                       f"--loop-ms={PERIOD_MS}"]
        self._command = command

    def __enter__(self):
        if self._command is not None:
            try:
                self._proc = subprocess.Popen(self._command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                              text=True)
            except OSError:
                return self
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            sample = parse(line)
            if sample is not None:
                self.samples.append(sample)

    def __exit__(self, *exc):
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._reader.join(timeout=5)
        return False

    def fields(self) -> dict:
        """sm_clock_mhz (the median of the samples), sm_clock_min_mhz, sm_clock_max_mhz (the card's rated
        maximum) and clock_events (every reason named while the row ran, idle aside); empty without samples."""
        if not self.samples:
            return {}
        mask = 0
        for _, _, m in self.samples:
            mask |= m
        clocks = [s[0] for s in self.samples]
        return dict(sm_clock_mhz=statistics.median(clocks), sm_clock_min_mhz=min(clocks),
                    sm_clock_max_mhz=max(s[1] for s in self.samples),
                    clock_events=[r for r in reasons(mask) if r != "idle"])


def slowdowns(row) -> List[str]:
    """The slowdowns the GPU named while `row` was timed."""
    return [r for r in row.get("clock_events") or () if r in SLOWDOWNS]
