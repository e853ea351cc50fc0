"""`trm-fast profile --ncu REGEX`: Nsight Compute on the kernels whose names match REGEX, launched inside the
profiled units (an NVTX range), summarised per kernel: time, achieved occupancy, DRAM throughput and
tensor-pipe utilisation as percentages of the hardware's peak.

ncu re-runs the same `trm-fast profile` command as a child with `--ncu-child`; the child skips
torch.profiler (both would claim the GPU's counters) and wraps its units in the range `trm:profiled`.
"""

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

RANGE = "profiled"
TIME = "gpu__time_duration.sum"
METRICS = {  # metric -> column of the summary
    TIME: "us",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "occupancy %",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed": "DRAM %",
    "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed": "tensor %",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": "SM %",
}
# older Nsight Compute versions name the tensor pipe by its HMMA instructions
FALLBACK = {"sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed":
            "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"}
_TIME_UNITS = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}


class NcuUnavailable(RuntimeError):
    """ncu is missing or cannot read the GPU's counters here; the message says why and what to do."""


def find_ncu() -> str:
    path = shutil.which("ncu")
    if path is None:
        raise NcuUnavailable("Nsight Compute (`ncu`) is not on PATH: install it (it ships with the CUDA toolkit, "
                             "e.g. /usr/local/cuda/bin/ncu or /opt/nvidia/nsight-compute/<version>/ncu) and put "
                             "its folder on PATH")
    return path


def _explain_failure(output: str) -> str:
    if "ERR_NVGPUCTRPERM" in output:
        return ("ncu may not read the GPU's performance counters as this user (ERR_NVGPUCTRPERM): run as root, "
                "or load the driver with NVreg_RestrictProfilingToAdminUsers=0")
    if "LibraryNotLoaded" in output or "Failed to initialize the profiler" in output:
        return ("ncu could not start its profiler on this machine (its GPU counters are not reachable, as under "
                "some virtualised GPUs); the torch.profiler table above does not need them")
    if "No kernels were profiled" in output:
        return ("ncu profiled no kernel: the regex matched none launched inside the profiled units; pick a name "
                "from the table (e.g. --ncu 'gemm|swiglu')")
    return "ncu failed:\n" + "\n".join(output.strip().splitlines()[-15:])


def parse_csv(text: str):
    """Rows of `ncu --csv --page raw` as dicts of floats (the time in microseconds), with 'Kernel Name'."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        return []
    reader = list(csv.reader(io.StringIO("\n".join(lines[start:]))))
    header, body = reader[0], reader[1:]
    units = {}
    if body and body[0] and body[0][0] == "":  # the units row
        units = dict(zip(header, body[0]))
        body = body[1:]
    rows = []
    for values in body:
        if len(values) != len(header):
            continue
        raw = dict(zip(header, values))
        row = {"Kernel Name": raw.get("Kernel Name", "?")}
        for metric in header:
            if "__" not in metric:
                continue
            try:
                value = float(raw[metric].replace(",", ""))
            except ValueError:
                continue
            if metric == TIME:
                value *= _TIME_UNITS.get(units.get(metric, "nsecond"), 1e-3)
            row[metric] = value
        rows.append(row)
    return rows


def summarise(rows, short_name) -> str:
    """One line per kernel name: calls and the mean of each metric."""
    by_name = defaultdict(list)
    for row in rows:
        by_name[short_name(row["Kernel Name"])].append(row)
    metrics = [m for m in METRICS if any(m in r for r in rows)] + \
        [m for m in FALLBACK.values() if any(m in r for r in rows)]
    label = {**METRICS, **{v: METRICS[k] for k, v in FALLBACK.items()}}
    lines = [f"{'kernel':<58} {'calls':>5} " + " ".join(f"{label[m]:>12}" for m in metrics)]
    order = sorted(by_name.items(), key=lambda kv: -sum(r.get(TIME, 0) for r in kv[1]))
    for name, group in order:
        cells = []
        for m in metrics:
            values = [r[m] for r in group if m in r]
            cells.append(f"{sum(values) / len(values):>12.1f}" if values else f"{'n/a':>12}")
        lines.append(f"{name:<58} {len(group):>5} " + " ".join(cells))
    return "\n".join(lines)


def run(regex: str, child_args, count: int, out_dir: str, short_name, log=print) -> str:
    """Run the child under ncu; returns the summary text (also written to ncu.txt, the raw CSV to ncu.csv)."""
    ncu = find_ncu()
    metrics = list(METRICS)
    for _ in range(len(FALLBACK) + 2):
        cmd = [ncu, "--nvtx", "--nvtx-include", f"trm:{RANGE}/", "-k", f"regex:{regex}", "-c", str(count),
               "--csv", "--page", "raw", "--metrics", ",".join(metrics),
               sys.executable, "-m", "trm_fast.cli.main", "profile", *child_args, "--ncu-child"]
        log(f"running Nsight Compute on kernels matching {regex!r} (up to {count}); this replays each one")
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        output = done.stdout + done.stderr
        missing = set(re.findall(r"Failed to find metrics?:?\s+([\w.]+)", output)) & set(metrics)
        if done.returncode != 0 and missing:  # drop what this ncu does not know, or take its older name
            metrics = [FALLBACK.get(m, m) if m in missing else m for m in metrics]
            metrics = [m for m in metrics if m not in missing]
            continue
        break
    rows = parse_csv(done.stdout)
    with open(os.path.join(out_dir, "ncu.csv"), "w", encoding="utf-8") as f:
        f.write(done.stdout)
    if not rows:
        raise NcuUnavailable(_explain_failure(output))
    text = summarise(rows, short_name)
    with open(os.path.join(out_dir, "ncu.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return text
